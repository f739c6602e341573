"""``dynoscope alerts run``: the engine in a process of its own, until SIGINT or SIGTERM.

It competes for the store's lease with every other engine on the store, or, with
``ALERT_LEASE_SECONDS=0``, runs alone behind a lock file on this host; its metrics are served
on ``METRICS_PORT`` when set, and pages for people (the console) by ``pages`` when the
command line gives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from prometheus_client import CollectorRegistry

from alerts.engine.monitor import Monitor, open_store
from alerts.errors import AlertsError
from alerts.http.peer import answers
from alerts.settings import AlertSettings
from alerts.store.lease import HostLease, Lease
from alerts.store.lock import EngineLock, lock_path
from instrumentation.catalogue import Catalogue
from instrumentation.settings import TelemetrySettings

log = logging.getLogger("dynoscope.alerts")

Pages = Callable[[Monitor], AbstractAsyncContextManager[object]]
"""Serves pages on the running engine while its block runs (the console, given by the
composition root: this package does not know it)."""


async def run_standalone(
    alerts: AlertSettings, telemetry: TelemetrySettings, *, pages: Pages | None = None
) -> None:
    """``dynoscope alerts run``: evaluate until SIGINT/SIGTERM, exposing metrics if asked."""
    from instrumentation.process import default_instance_id

    lease, lock = standalone_lease(alerts)
    store = open_store(alerts)
    registry = CollectorRegistry()
    metrics = Catalogue(registry)
    server = None
    try:
        monitor = Monitor.build(
            alerts,
            store=store,
            metrics=metrics,
            instance=telemetry.instance_id or default_instance_id(),
            job="alerts",
            lease=lease,
        )
        if alerts.peer_urls and telemetry.metrics_port is None:
            log.warning("ALERT_PEERS is set but METRICS_PORT is not: no peer can ask this engine")
        if telemetry.metrics_port is not None:
            from exporters.server import MetricsServer

            token = telemetry.metrics_token
            server = MetricsServer(
                registry,
                host=telemetry.host,
                port=telemetry.metrics_port,
                token=token.get_secret_value() if token is not None else None,
                status=answers(monitor),
            )
            server.start()
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stopped.set)
        await monitor.start()
        try:
            async with pages(monitor) if pages is not None else contextlib.nullcontext():
                await stopped.wait()
        finally:
            await monitor.stop()
    finally:
        if server is not None:
            server.stop()
        if lock is not None:
            lock.release()
        await store.dispose()


def standalone_lease(alerts: AlertSettings) -> tuple[Lease | None, EngineLock | None]:
    """The lease ``dynoscope alerts run`` competes for (``None``: the store's), or, with
    ``ALERT_LEASE_SECONDS=0``, none: one engine per store, guarded on this host by a lock file.

    Without a lease nothing can fence a second engine on another host, but a store outage
    never silences this one: it goes on from memory, as the in-process engine does.
    """
    if alerts.lease_seconds > 0:
        return None, None
    lock = EngineLock(lock_path(alerts.store_url))
    if not lock.acquire():
        raise AlertsError(
            "another engine on this host already runs on this ALERT_STORE_URL "
            "(ALERT_LEASE_SECONDS=0 allows one; set a lease to run standbys)"
        )
    return HostLease(), lock
