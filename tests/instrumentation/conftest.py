from __future__ import annotations

from tests.instrumentation.support import metrics_only, traced

__all__ = ["metrics_only", "traced"]
