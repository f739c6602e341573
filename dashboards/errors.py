"""Errors of the dashboards package.

DashboardsError
 ├── StaleDashboards    a checked-in JSON file differs from what the code builds
 └── PushError          Grafana refused or could not be reached (never carries the token)
"""

from __future__ import annotations

from pathlib import Path


class DashboardsError(Exception):
    """Base of every error this package raises."""


class StaleDashboards(DashboardsError):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        names = ", ".join(str(path) for path in paths)
        super().__init__(f"out of date (run `dynoscope dashboards build`): {names}")


class PushError(DashboardsError):
    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        where = f"{url} answered HTTP {status}" if status is not None else url
        super().__init__(f"{where}: {message}")
