"""Prometheus-family servers for the tests: ``deploy.native.prometheus``, with a missing binary
skipping the test locally and failing it in CI, like the other services."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from deploy.native import prometheus as native
from deploy.native.postgres import MissingBinary
from deploy.native.prometheus import Prometheus, ready_server
from tests.support.postgres_cluster import missing

__all__ = ["Prometheus", "binary", "ready_server", "running_prometheus"]


def binary(name: str) -> str:
    """Path of a Prometheus binary, or skip (locally) / fail (in CI) the test."""
    try:
        return native.binary(name)
    except MissingBinary as exc:
        missing(exc)


@contextlib.contextmanager
def running_prometheus(
    targets: Mapping[str, Sequence[str]], **options: Any
) -> Iterator[Prometheus]:
    """``deploy.native.prometheus.running_prometheus``, skipped or failed without Prometheus."""
    binary("prometheus")
    with native.running_prometheus(targets, **options) as prometheus:
        yield prometheus
