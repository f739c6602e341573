"""Process identity and resources: ``dynoscope_instance_info``, ``dynoscope_instance_cores``
and per-worker memory and CPU.

In single-process mode the client library's ``ProcessCollector`` reads ``/proc`` at scrape
time. In multiprocess mode that would describe only the worker answering the scrape, so each
worker samples itself with psutil into its own metric file instead (``ProcessMetrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Mapping
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, ProcessCollector, values

from instrumentation.catalogue import Catalogue, ProcessMetrics

log = logging.getLogger("dynoscope.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKERS_ENV = "WEB_CONCURRENCY"
"""The instance's worker processes: set by ``dynoscope serve --workers N`` for its workers
(uvicorn reads the same variable as its default worker count); 1 when unset."""
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def default_instance_id() -> str:
    """The host name: what tells instances apart when ``INSTANCE_ID`` is not set."""
    return socket.gethostname()


def enable_multiprocess(directory: str) -> None:
    """Make metrics created from now on live in ``directory`` (one file per worker).

    The client library picks its value class from the environment when it is first imported;
    settings built from a mapping may name the directory later, so the environment and the
    value class are brought in line here, before the catalogue is created.
    """
    os.makedirs(directory, exist_ok=True)
    if os.environ.get(MULTIPROC_ENV) != directory:
        os.environ[MULTIPROC_ENV] = directory
    if getattr(values.ValueClass, "__name__", "") != "MmapedValue":
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def register_process_collector(registry: CollectorRegistry) -> None:
    """Single-process mode: the standard ``process_*`` metrics, read at scrape time."""
    ProcessCollector(registry=registry)


class ProcessSampler:
    """Writes this worker's memory, CPU and start time into its metric file (multiprocess)."""

    def __init__(self, metrics: ProcessMetrics, *, interval: float = 5.0) -> None:
        self._metrics = metrics
        self._interval = interval
        self._process = psutil.Process()
        self._cpu_reported = 0.0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Take one sample now."""
        process = self._process
        with process.oneshot():
            memory = process.memory_info()
            cpu = process.cpu_times()
            self._metrics.resident_memory.set(memory.rss)
            self._metrics.virtual_memory.set(memory.vms)
            self._metrics.start_time.set(process.create_time())
            with contextlib.suppress(psutil.Error, AttributeError):
                self._metrics.open_fds.set(process.num_fds())
        used = cpu.user + cpu.system
        if used > self._cpu_reported:
            self._metrics.cpu_seconds.inc(used - self._cpu_reported)
            self._cpu_reported = used

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except psutil.Error as exc:  # pragma: no cover - the process is going away
                log.debug("process sample failed: %s", exc)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Sample now and then every ``interval`` seconds on the running loop."""
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def set_instance_info(catalogue: Catalogue, *, instance_id: str, version: str) -> None:
    """``dynoscope_instance_info{instance_id, version} 1``."""
    catalogue.instance_info.labels(instance_id=instance_id, version=version).set(1)


def configured_workers(environ: Mapping[str, str]) -> int:
    """The worker count ``WEB_CONCURRENCY`` names; 1 when unset or not a positive number."""
    try:
        workers = int(environ.get(WORKERS_ENV, "1"))
    except ValueError:
        return 1
    return max(1, workers)


def cpu_quota(cpu_max: Path = CPU_MAX) -> float | None:
    """Cores the cgroup's CPU quota allows (``cpu.max``: ``quota period``), ``None`` without
    a quota (``max``) or outside a cgroup v2.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".max") as f:
    ...     _ = f.write("150000 100000\\n"); f.flush(); cpu_quota(Path(f.name))
    1.5
    """
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cores(workers: int, *, cpu_max: Path = CPU_MAX) -> float:
    """Cores ``workers`` processes can keep busy: at most one each, at most the CPUs this
    process may run on (its affinity, as ``taskset`` or a cpuset sets it) and the cgroup's
    CPU quota (a container's CPU limit)."""
    try:
        allowed = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        allowed = float(os.cpu_count() or 1)
    quota = cpu_quota(cpu_max)
    cores = min(float(workers), allowed, quota if quota is not None else math.inf)
    return max(cores, 0.01)


def set_instance_cores(catalogue: Catalogue, *, workers: int, cores: float) -> None:
    """``dynoscope_instance_cores{workers} cores``: what utilisation is measured against."""
    catalogue.instance_cores.labels(workers=str(workers)).set(cores)
