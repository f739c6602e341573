"""Recurring maintenance windows, on a fixed clock, through the store, HTTP and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.outbox import Outbox
from alerts.engine.ledger import Ledger
from alerts.engine.query import Sample, Vector
from alerts.engine.state import evaluate
from alerts.http.state import engine_state
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.silences.recurrence import Recurrence
from alerts.silences.silence import Silence, Silences
from alerts.silences.store import SilenceStore
from alerts.store.migrate import upgrade
from tests.alerts.conftest import Recorder
from tests.support.stack import running_app

SUNDAY = datetime(2026, 11, 29, tzinfo=UTC)  # a Sunday
TOKEN = "admin-token-" + "m" * 20
RULE = Rule(name="InstanceDown", group="g", query=RawQuery("x"), op=Op.GT, threshold=0,
            labels=(("severity", "page"), ("job", "api")))  # fmt: skip


@pytest.mark.parametrize(
    ("at", "covered"),
    [
        (SUNDAY + timedelta(hours=1, minutes=59), False),
        (SUNDAY + timedelta(hours=2), True),
        (SUNDAY + timedelta(hours=2, minutes=59, seconds=59), True),
        (SUNDAY + timedelta(hours=3), False),
        (SUNDAY + timedelta(days=7, hours=2, minutes=30), True),  # next Sunday
        (SUNDAY + timedelta(days=1, hours=2, minutes=30), False),  # Monday
    ],
)
def test_every_sunday_from_two_to_three(at: datetime, covered: bool) -> None:
    assert Recurrence.parse(days="sun", at="02:00", length="1h").covers(at) is covered


def test_a_window_may_run_past_midnight() -> None:
    late = Recurrence.parse(days="sat", at="23:00", length="2h")
    assert late.covers(SUNDAY + timedelta(minutes=30))
    assert not late.covers(SUNDAY + timedelta(hours=1))
    daily = Recurrence.parse(days="daily", at="12:00", length="30m")
    assert all(daily.covers(SUNDAY + timedelta(days=d, hours=12, minutes=10)) for d in range(7))


@pytest.mark.parametrize(
    ("days", "at", "length", "message"),
    [
        ("sunday", "02:00", "1h", "days 'sunday'"),
        ("sun", "2 am", "1h", "at '2 am': use HH:MM"),
        ("sun", "02:00", "0", "length '0'"),
        ("sun", "02:00", "2d", "at most 24h"),
        ("sun", "02:00", "an hour", "invalid duration"),
    ],
)
def test_bad_windows_say_what_is_wrong(days: str, at: str, length: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recurrence.parse(days=days, at=at, length=length)


def test_notifications_inside_the_window_are_held_back_and_outside_sent() -> None:
    silences = Silences()
    silences.add(
        Silence.new(
            ['job="api"'],
            starts_at=SUNDAY - timedelta(days=30),
            ends_at=SUNDAY + timedelta(days=300),
            author="ops",
            comment="weekly backups",
            recurrence=Recurrence.parse(days="sun", at="02:00", length="1h"),
        )
    )
    ledger = Ledger()
    outbox = Outbox(notifiers={"console": Recorder("console")}, ledger=ledger, silences=silences)
    during = SUNDAY + timedelta(hours=2, minutes=10)
    fired = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=during)
    outbox.notify(fired.notifications, now=during)
    assert outbox.pending() == 0
    after = SUNDAY + timedelta(hours=3, minutes=10)
    outbox.notify(fired.notifications, now=after)
    assert outbox.pending() == 1


async def test_windows_are_kept_in_the_store(store_engine: AsyncEngine) -> None:
    store = SilenceStore(store_engine)
    now = datetime.now(UTC).replace(microsecond=0)
    window = Silence.new(
        ["job=api"],
        starts_at=now,
        ends_at=now + timedelta(days=365),
        author="ops",
        comment="",
        recurrence=Recurrence.parse(days="mon,sun", at="02:00", length="90m"),
    )
    await store.add(window)
    assert await store.current(now) == [window]


async def test_windows_over_http(sqlite_environ: dict[str, str]) -> None:
    async with running_app({**sqlite_environ, "ADMIN_TOKEN": TOKEN}) as api:
        if engine_state(api.app).monitor is None:
            await upgrade(engine_state(api.app).store.engine)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {
            "matchers": ['job="api"'],
            "author": "ops",
            "every": {"days": "sun", "at": "02:00", "length": "1h"},
        }
        made = await api.client.post("/alerts/silences", json=body, headers=auth)
        assert made.status_code == 201, made.text
        assert made.json()["every"] == {"days": "sun", "at": "02:00", "length": "1h"}
        bad = {**body, "every": {"days": "someday", "at": "02:00", "length": "1h"}}
        refused = await api.client.post("/alerts/silences", json=bad, headers=auth)
        assert refused.status_code == 422 and "days 'someday'" in refused.text
        endless = {"matchers": ['job="api"'], "author": "ops"}
        refused = await api.client.post("/alerts/silences", json=endless, headers=auth)
        assert refused.status_code == 422 and "ends_at is required" in refused.text


def _cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynoscope", "silence", *args],
        env={**os.environ, **environ}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_window_from_the_command_line(sqlite_environ: dict[str, str]) -> None:
    added = await asyncio.to_thread(
        _cli, sqlite_environ, "add", 'job="api"', "--every", "sun", "--at", "02:00",
        "--length", "1h", "--author", "ops", "--comment", "backups",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = await asyncio.to_thread(_cli, sqlite_environ, "list")
    assert "every sun at 02:00 UTC for 1h" in listed.stdout
    bad = await asyncio.to_thread(
        _cli, sqlite_environ, "add", "job=api", "--every", "someday", "--author", "ops"
    )
    assert bad.returncode == 2 and "days 'someday'" in bad.stderr
