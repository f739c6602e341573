"""Prometheus-family servers for the tests: ``deploy.native.prometheus``, with a missing binary
skipping the test locally and failing it in CI, like the other services."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

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
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    evaluation_interval: str = "1s",
    scrape_configs: Sequence[Mapping[str, object]] = (),
    features: Sequence[str] = (),
) -> Iterator[Prometheus]:
    """``deploy.native.prometheus.running_prometheus``, skipped or failed without Prometheus."""
    binary("prometheus")
    with native.running_prometheus(
        targets,
        scrape_interval=scrape_interval,
        rule_files=rule_files,
        evaluation_interval=evaluation_interval,
        scrape_configs=scrape_configs,
        features=features,
    ) as prometheus:
        yield prometheus
