"""Where rules get their numbers: Prometheus's HTTP API, or the process's own registries."""

from alerts.sources.local import LocalSource
from alerts.sources.prometheus import PrometheusSource
from alerts.sources.source import Source

__all__ = ["LocalSource", "PrometheusSource", "Source"]
