"""The metric directory several worker processes share, so that every scrape sees them all.

With one worker the process's own registry is the truth. With several, each scrape is answered
by whichever worker accepts it, so their metrics must be merged from files in one directory
(``PROMETHEUS_MULTIPROC_DIR``). ``serve --workers N`` always has one: the directory the
variable names, or a private one created empty at start and removed at exit::

    with metrics_directory(workers=2, configured=None, environ=os.environ) as directory:
        uvicorn.run(..., workers=2)   # the workers find it in their environment
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from instrumentation.process import WORKERS_ENV

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class WorkersError(ValueError):
    """``serve`` cannot honour its settings; the message names the option or variable."""


def check_writable(directory: str) -> None:
    """Create ``directory`` if needed; raise ``WorkersError`` unless workers can write there."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise WorkersError(
            f"{MULTIPROC_ENV}: {directory} is not a directory the workers can write their "
            f"metrics to ({exc.strerror or exc}); name a writable one, or unset it to use a "
            "private one"
        ) from None


@contextlib.contextmanager
def metrics_directory(
    *,
    workers: int,
    configured: str | None,
    environ: MutableMapping[str, str],
    metrics_enabled: bool = True,
) -> Iterator[str | None]:
    """The directory the workers aggregate their metrics in, set in ``environ`` for them.

    None with one worker and no configured directory (or metrics off): nothing to share.

    >>> environ = {}
    >>> with metrics_directory(workers=2, configured=None, environ=environ) as directory:
    ...     environ["PROMETHEUS_MULTIPROC_DIR"] == directory and Path(directory).is_dir()
    True
    >>> Path(directory).exists(), "PROMETHEUS_MULTIPROC_DIR" in environ
    (False, False)
    """
    if workers < 1:
        raise WorkersError(f"--workers: must be at least 1, not {workers}")
    if configured is not None:
        if metrics_enabled:
            check_writable(configured)
        yield configured
        return
    if workers == 1 or not metrics_enabled:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="dynoscope-metrics-")
    environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def check_port_free(host: str, port: int) -> None:
    """Raise ``WorkersError`` when ``METRICS_PORT`` is taken on ``host``.

    Checked once before the workers start: a worker that cannot bind it would otherwise
    serve without metrics and only log it, and Prometheus would see the instance as down.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise WorkersError(
                f"METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "free it or choose another port"
            ) from None


@contextlib.contextmanager
def workers_environ(workers: int, environ: MutableMapping[str, str]) -> Iterator[None]:
    """``WEB_CONCURRENCY`` set to ``workers`` in ``environ`` while the server runs, so each
    worker reports the instance's worker count (``dynoscope_instance_cores``); the previous
    value is put back after.

    >>> environ = {}
    >>> with workers_environ(2, environ):
    ...     environ["WEB_CONCURRENCY"]
    '2'
    >>> environ
    {}
    """
    before = environ.get(WORKERS_ENV)
    environ[WORKERS_ENV] = str(workers)
    try:
        yield
    finally:
        if before is None:
            environ.pop(WORKERS_ENV, None)
        else:
            environ[WORKERS_ENV] = before
