"""``dynoscope alerts run`` competes for the store's lease, or, with ``ALERT_LEASE_SECONDS=0``,
runs alone without one (so a store outage never silences it) and refuses a second engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine.standalone import standalone_lease
from alerts.errors import AlertsError
from alerts.settings import AlertSettings
from alerts.store.lease import HostLease


def test_by_default_engines_compete_for_the_stores_lease() -> None:
    assert standalone_lease(AlertSettings.from_env({})) == (None, None)


def test_without_a_lease_one_engine_per_store_on_a_host(tmp_path: Path) -> None:
    settings = AlertSettings.from_env(
        {"ALERT_LEASE_SECONDS": "0", "ALERT_STORE_URL": f"sqlite:///{tmp_path}/alerts.db"}
    )
    lease, lock = standalone_lease(settings)
    assert isinstance(lease, HostLease) and lock is not None
    with pytest.raises(AlertsError, match="ALERT_LEASE_SECONDS=0"):
        standalone_lease(settings)
    lock.release()  # the engine stopped: another may start
    _, again = standalone_lease(settings)
    assert again is not None
    again.release()
