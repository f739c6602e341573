"""Service-level objectives: OpenSLO ``SLO`` documents (``model``), compiled to
multi-window, multi-burn-rate Prometheus rules and their promtool tests (``rules``).
The shipped objectives are in ``default.yml``; docs/slos.md explains them."""

from pathlib import Path

DEFAULT_SLOS = Path(__file__).parent / "default.yml"
