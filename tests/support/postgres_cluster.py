"""A private PostgreSQL cluster for tests that stop the server hard.

The cluster itself is ``deploy/native/postgres.py``, the one ``make stack`` runs; this adds
what tests need: a temporary directory, and a skip (locally) or failure (in CI) when
PostgreSQL is not installed. The machine's shared PostgreSQL and other tests never notice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from deploy.native.postgres import Cluster, MissingBinary
from tests.support.stack import free_port

__all__ = ["Cluster", "private_cluster"]


def missing(exc: MissingBinary) -> NoReturn:
    """Skip the test locally, fail it in CI."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(str(exc))
    pytest.skip(str(exc))


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A new cluster, started; stopped and deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="dynoscope-pg-"))
    cluster = Cluster(directory=directory, port=free_port())
    try:
        try:
            cluster.create()
        except MissingBinary as exc:
            missing(exc)
        cluster.start()
        yield cluster
    finally:
        if cluster.up:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
