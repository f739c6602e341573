"""The fault injector's metric: dashboards show when trouble was made on purpose."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from instrumentation import names


class FaultMetrics:
    """``dynoscope_fault_active{fault}``, registered by the API when faults are mounted."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fault_active = Gauge(
            names.FAULT_ACTIVE,
            "1 while the named fault is switched on in this process, else 0.",
            ["fault"],
            multiprocess_mode="livemax",
            registry=registry,
        )
