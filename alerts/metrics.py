"""The alert engine's own metrics, registered by the engine beside the app's telemetry.

The engine counts into the registry of the process's metric catalogue
(``instrumentation.Catalogue``), so one scrape holds both; it also counts the lookups it
degrades around in the catalogue's ``dynoscope_dependency_errors_total``. Names are
``instrumentation.names``; the contract is ``docs/metrics.md``.

    >>> from prometheus_client import CollectorRegistry
    >>> metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    >>> metrics.notifications.labels(receiver="console", outcome="sent").inc()
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from instrumentation import names
from instrumentation.catalogue import Catalogue

# Per-process telemetry state (a registry's engine metrics), as the registries themselves are.
_REGISTERED: WeakKeyDictionary[CollectorRegistry, EngineMetrics] = WeakKeyDictionary()

RULE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EngineMetrics:
    """Evaluation, alerts, delivery, leadership and the engine's store, on the registry of
    ``telemetry``."""

    @classmethod
    def of(cls, telemetry: Catalogue) -> EngineMetrics:
        """The engine's metrics on ``telemetry``'s registry, registered there on first use: an
        app whose engine is built again (a second lifespan) counts into the same series."""
        found = _REGISTERED.get(telemetry.registry)
        if found is None:
            found = _REGISTERED[telemetry.registry] = cls(telemetry)
        return found

    def __init__(self, telemetry: Catalogue) -> None:
        self.telemetry = telemetry
        self.registry = registry = telemetry.registry
        self.dependency_errors = telemetry.dependency_errors
        self.rule_evaluations = Counter(
            names.RULE_EVALUATIONS,
            "Rule evaluations.",
            ["rule"],
            registry=registry,
        )
        self.rule_evaluation_failures = Counter(
            names.RULE_EVALUATION_FAILURES,
            "Rule evaluations whose query failed.",
            ["rule"],
            registry=registry,
        )
        self.rule_evaluation_duration = Histogram(
            names.RULE_EVALUATION_DURATION,
            "Duration of one evaluation of a rule group.",
            ["group"],
            buckets=RULE_BUCKETS,
            registry=registry,
        )
        self.alerts = Gauge(
            names.ALERTS,
            "Alerts by name and state (pending, firing).",
            ["alertname", "state"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.notifications = Counter(
            names.NOTIFICATIONS,
            "Notification deliveries, by receiver and outcome (sent, failed, retried).",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.scheduler_leader = Gauge(
            names.SCHEDULER_LEADER,
            "1 while this process is the scheduler leader.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.alert_store_up = Gauge(
            names.ALERT_STORE_UP,
            "1 while the alert engine's own store answers, 0 while it runs from memory alone.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.alert_store_failures = Counter(
            names.ALERT_STORE_FAILURES,
            "Failed or timed-out calls to the alert engine's store, by operation.",
            ["operation"],
            registry=registry,
        )
        self.alert_store_backlog = Gauge(
            names.ALERT_STORE_BACKLOG,
            "Changes (alert states, transitions, deliveries) not yet written to the store.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.scheduler_skipped_runs = Counter(
            names.SCHEDULER_SKIPPED_RUNS,
            "Group evaluations skipped because the previous one was still running.",
            ["group"],
            registry=registry,
        )
