"""Where rules get their numbers: Prometheus's HTTP API, or the process's own registries."""

from alerts.engine.sources.local import LocalSource
from alerts.engine.sources.prometheus import PrometheusSource
from alerts.engine.sources.source import Source

__all__ = ["LocalSource", "PrometheusSource", "Source"]
