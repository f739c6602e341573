"""Silences: matchers, time windows on a fixed clock, muting without losing state, the store,
the admin HTTP API (422 on bad input) and ``dynoscope silence add|list|expire``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.outbox import Outbox
from alerts.delivery.resend import Resender
from alerts.delivery.routing import Router
from alerts.engine.ledger import Ledger
from alerts.engine.monitor import open_store
from alerts.engine.query import Sample, Vector
from alerts.engine.state import AlertState, evaluate
from alerts.http.state import engine_state
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.settings import AlertSettings
from alerts.silences.matchers import Matcher, parse_matcher
from alerts.silences.silence import Silence, Silences
from alerts.silences.store import SilenceStore
from alerts.store.migrate import upgrade
from alerts.store.store import Store
from instrumentation.catalogue import Catalogue
from tests.alerts.conftest import Recorder
from tests.support.stack import running_app

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
TOKEN = "admin-token-" + "z" * 20
RULE = Rule(
    name="CacheHitRateLow",
    group="g",
    query=RawQuery("x"),
    op=Op.GT,
    threshold=0,
    labels=(("severity", "warning"),),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('severity="page"', Matcher("severity", "page")),
        ("severity=page", Matcher("severity", "page")),
        ('route=~"/admin.*"', Matcher("route", "/admin.*", regex=True)),
        ('summary="say \\"hi\\""', Matcher("summary", 'say "hi"')),
        ('instance=""', Matcher("instance", "")),
    ],
)
def test_matchers_parse(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected
    assert parse_matcher(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("severity", "is not a matcher"),
        ('severity=="page"', "is not a matcher"),
        ('1abc="x"', "is not a matcher"),
        ('route=~"("', "bad regular expression"),
    ],
)
def test_bad_matchers_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_matcher(text)


def test_a_silence_is_in_force_from_its_start_until_its_end() -> None:
    silence = Silence.new(
        ['alertname="CacheHitRateLow"', 'route=~"/properties.*"'],
        starts_at=T0 + timedelta(minutes=1),
        ends_at=T0 + timedelta(minutes=10),
        author="ana",
        comment="cache warm-up",
    )
    labels = {"alertname": "CacheHitRateLow", "route": "/properties/{id}"}
    assert not silence.mutes(labels, now=T0)
    assert silence.mutes(labels, now=T0 + timedelta(minutes=1))
    assert silence.mutes(labels, now=T0 + timedelta(minutes=9, seconds=59))
    assert not silence.mutes(labels, now=T0 + timedelta(minutes=10))
    assert not silence.mutes({**labels, "route": "/admin"}, now=T0 + timedelta(minutes=5))
    with pytest.raises(ValueError, match="ends_at must be after starts_at"):
        Silence.new(["a=b"], starts_at=T0, ends_at=T0, author="ana", comment="")
    with pytest.raises(ValueError, match="at least one matcher"):
        Silence.new([], starts_at=T0, ends_at=T0 + timedelta(1), author="ana", comment="")


def test_a_silenced_alert_changes_state_and_is_recorded_but_sends_nothing() -> None:
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    ledger = Ledger()
    silences = Silences()
    silences.add(
        Silence.new(
            ['alertname="CacheHitRateLow"'],
            starts_at=T0,
            ends_at=T0 + timedelta(minutes=10),
            author="ana",
            comment="known",
        )
    )
    console = Recorder("console")
    outbox = Outbox(
        notifiers={"console": console}, ledger=ledger, silences=silences, metrics=metrics
    )
    fired = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=T0 + timedelta(minutes=1))
    ledger.record({RULE.name: fired}, now=T0 + timedelta(minutes=1))
    outbox.notify(fired.notifications, now=T0 + timedelta(minutes=1))
    assert [a.state for a in ledger.active()] == [AlertState.FIRING]
    assert [e.state for e in ledger.recent] == [AlertState.FIRING]
    assert outbox.pending() == 0
    sample = metrics.registry.get_sample_value
    assert (
        sample("dynoscope_notifications_total", {"receiver": "console", "outcome": "silenced"}) == 1
    )
    later = T0 + timedelta(minutes=11)  # the silence has ended: the resolution is announced
    ended = evaluate(RULE, fired.alerts, result=Vector(()), now=later)
    ledger.record({RULE.name: ended}, now=later)
    outbox.notify(ended.notifications, now=later)
    assert outbox.pending() == 1


async def test_silences_in_the_store(store_engine: AsyncEngine) -> None:
    store = SilenceStore(store_engine)
    now = datetime.now(UTC).replace(microsecond=0)
    silence = Silence.new(
        ['route=~"/admin.*"', "severity=page"],
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        author="ana",
        comment="maintenance",
    )
    await store.add(silence)
    (found,) = await store.current(now)
    assert found == silence
    books = Silences(store.current)
    assert await books.refresh(now=now)
    assert books.muting({"route": "/admin/x", "severity": "page"}, now=now) == silence
    assert await store.expire(silence.id, now=now + timedelta(minutes=1))
    assert not await store.expire(silence.id, now=now + timedelta(minutes=2))
    assert await store.current(now + timedelta(minutes=1)) == []


async def test_silence_http_api_is_admin_only_and_validated(environ: dict[str, str]) -> None:
    async with running_app({**environ, "ADMIN_TOKEN": TOKEN}) as api:
        if (
            engine_state(api.app).monitor is None
        ):  # the engine runs elsewhere: the store, as deployed
            await upgrade(engine_state(api.app).store.engine)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        good = {"matchers": ['alertname="Watchdog"'], "ends_at": ends, "author": "ana"}
        assert (await api.client.post("/alerts/silences", json=good)).status_code == 401
        made = await api.client.post("/alerts/silences", json=good, headers=auth)
        assert made.status_code == 201, made.text
        silence = made.json()
        assert silence["matchers"] == ['alertname="Watchdog"'] and silence["author"] == "ana"
        bad = await api.client.post(
            "/alerts/silences", json={**good, "matchers": ['route=~"("']}, headers=auth
        )
        assert bad.status_code == 422 and "bad regular expression" in bad.text
        backwards = {**good, "starts_at": ends, "ends_at": datetime.now(UTC).isoformat()}
        reversed_ = await api.client.post("/alerts/silences", json=backwards, headers=auth)
        assert reversed_.status_code == 422 and "ends_at must be after starts_at" in reversed_.text
        listed = (await api.client.get("/alerts/silences", headers=auth)).json()["silences"]
        assert [s["id"] for s in listed] == [silence["id"]]
        url = f"/alerts/silences/{silence['id']}"
        assert (await api.client.delete(url, headers=auth)).status_code == 200
        assert (await api.client.delete(url, headers=auth)).status_code == 404
        assert (await api.client.get("/alerts/silences", headers=auth)).json()["silences"] == []


def _cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynoscope", "silence", *args],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_silence_command_adds_lists_and_expires(sqlite_environ: dict[str, str]) -> None:
    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(_cli, sqlite_environ, *args)

    added = await cli("add", 'alertname="CacheHitRateLow"', "--duration", "30m",
                      "--author", "ana", "--comment", "warm-up")  # fmt: skip
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.strip()
    listed = await cli("list")
    assert silence_id in listed.stdout and 'alertname="CacheHitRateLow"' in listed.stdout
    assert "active" in listed.stdout and "ana: warm-up" in listed.stdout
    bad = await cli("add", "severity", "--author", "ana")
    assert bad.returncode == 2 and "is not a matcher" in bad.stderr
    assert (await cli("expire", silence_id)).returncode == 0
    assert (await cli("expire", silence_id)).returncode == 1
    assert silence_id not in (await cli("list")).stdout


def reminders_setup(*, repeat: timedelta) -> tuple[Ledger, Outbox, Silences, Resender, Recorder]:
    ledger = Ledger()
    silences = Silences()
    router = Router(default=(), repeat_interval=repeat)
    console = Recorder("console")
    outbox = Outbox(notifiers={"console": console}, ledger=ledger, router=router,
                    silences=silences)  # fmt: skip
    fired = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=T0)
    ledger.record({RULE.name: fired}, now=T0)
    resender = Resender(ledger=ledger, outbox=outbox, notifiers={"console": console})
    return ledger, outbox, silences, resender, console


async def sent(outbox: Outbox, resender: Resender, console: Recorder, *, at: datetime) -> int:
    """Run the resend and delivery jobs at ``at``: how many messages the console got."""
    before = len(console.accepted)
    resender.run(now=at)
    await outbox.deliver(now=at)
    return len(console.accepted) - before


async def test_reminders_follow_repeat_interval_on_a_fixed_clock() -> None:
    _, outbox, _, resender, console = reminders_setup(repeat=timedelta(hours=1))
    assert await sent(outbox, resender, console, at=T0) == 0  # the notification was the first
    assert await sent(outbox, resender, console, at=T0 + timedelta(minutes=59)) == 0
    assert await sent(outbox, resender, console, at=T0 + timedelta(hours=1)) == 1
    assert await sent(outbox, resender, console, at=T0 + timedelta(hours=1, minutes=30)) == 0
    assert await sent(outbox, resender, console, at=T0 + timedelta(hours=2)) == 1


async def test_an_acknowledged_alert_gets_no_reminders_until_it_resolves() -> None:
    ledger, outbox, silences, resender, console = reminders_setup(repeat=timedelta(hours=1))
    (alert,) = ledger.active()
    silences.add(Silence.acknowledge(alert, now=T0 + timedelta(minutes=5), author="ana",
                                     comment="on it"))  # fmt: skip
    assert await sent(outbox, resender, console, at=T0) == 0
    assert await sent(outbox, resender, console, at=T0 + timedelta(hours=3)) == 0  # quiet
    ended = evaluate(RULE, tuple(ledger.active()), result=Vector(()), now=T0 + timedelta(hours=4))
    ledger.record({RULE.name: ended}, now=T0 + timedelta(hours=4))
    outbox.notify(ended.notifications, now=T0 + timedelta(hours=4))
    assert outbox.pending() == 1  # the resolution is still announced
    await outbox.deliver(now=T0 + timedelta(hours=4))
    assert console.accepted == ["resolved"]
    again = T0 + timedelta(hours=5)
    refired = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=again)
    ledger.record({RULE.name: refired}, now=again)
    assert await sent(outbox, resender, console, at=again) == 0
    assert await sent(outbox, resender, console, at=again + timedelta(hours=1)) == 1  # new episode


async def test_a_silenced_alert_gets_no_reminders() -> None:
    _, outbox, silences, resender, console = reminders_setup(repeat=timedelta(hours=1))
    silences.add(Silence.new(["severity=warning"], starts_at=T0, ends_at=T0 + timedelta(hours=2),
                             author="ana", comment=""))  # fmt: skip
    assert await sent(outbox, resender, console, at=T0) == 0
    assert await sent(outbox, resender, console, at=T0 + timedelta(hours=1)) == 0
    assert await sent(outbox, resender, console, at=T0 + timedelta(hours=2)) == 1  # silence over


async def test_acknowledge_over_http(sqlite_environ: dict[str, str]) -> None:
    async with running_app({**sqlite_environ, "ADMIN_TOKEN": TOKEN}) as api:
        monitor = engine_state(api.app).monitor
        assert monitor is not None  # embedded mode: the engine runs in the API
        now = datetime.now(UTC)
        fired = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=now)
        monitor.ledger.record({RULE.name: fired}, now=now)
        (alert,) = fired.alerts
        auth = {"Authorization": f"Bearer {TOKEN}"}
        url = f"/alerts/{alert.fingerprint}/ack"
        assert (await api.client.post(url, json={"author": "ana"})).status_code == 401
        made = await api.client.post(url, json={"author": "ana", "comment": "on it"}, headers=auth)
        assert made.status_code == 201, made.text
        assert made.json()["fingerprint"] == alert.fingerprint
        assert monitor.silences.acknowledged(alert, now=datetime.now(UTC))
        missing = await api.client.post("/alerts/0000000000000000/ack", json={"author": "a"},
                                        headers=auth)  # fmt: skip
        assert missing.status_code == 404
        nobody = await api.client.post(url, json={"author": ""}, headers=auth)
        assert nobody.status_code == 422


async def test_acknowledge_from_the_command_line(sqlite_environ: dict[str, str]) -> None:
    environ = {**sqlite_environ, "ALERT_STORE_URL": f"{sqlite_environ['DATABASE_URL']}.alerts"}
    store_engine = open_store(AlertSettings.from_env(environ))
    try:
        await upgrade(store_engine)
        now = datetime.now(UTC)
        ledger = Ledger()
        fired = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=now)
        ledger.record({RULE.name: fired}, now=now)
        await Store(store_engine).write(ledger.take())
        (alert,) = fired.alerts

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return _cli(environ, "ack", *args)

        made = await asyncio.to_thread(cli, alert.fingerprint[:8], "--author", "ana")
        assert made.returncode == 0, made.stderr
        assert f"acknowledges CacheHitRateLow {alert.fingerprint}" in made.stdout
        (ack,) = await SilenceStore(store_engine).current(datetime.now(UTC))
        assert ack.fingerprint == alert.fingerprint and ack.author == "ana"
        assert ack.acknowledges(alert, now=datetime.now(UTC))
        missing = await asyncio.to_thread(cli, "ffffffffffff")
        assert missing.returncode == 1 and "no firing alert" in missing.stderr
    finally:
        await store_engine.dispose()


class Keeper:
    """A notifier (our interface) keeping each delivery's payload; like the Alertmanager
    push it takes alerts one by one (no groups) and wants firing ones sent again hourly."""

    name = "console"
    groups = False
    resend_every = timedelta(hours=1)

    def __init__(self) -> None:
        self.payloads: list[dict[str, object]] = []

    async def send(self, delivery: Delivery) -> None:
        self.payloads.extend(one.payload for one in alerts_of(delivery))


async def test_a_resent_alert_carries_the_links_the_first_notification_had() -> None:
    rule = replace(RULE, annotations=(("runbook_url", "docs/runbook.md#cachehitratelow"),))
    keeper = Keeper()
    ledger = Ledger()
    outbox = Outbox(
        notifiers={"console": keeper},
        ledger=ledger,
        router=Router(default=()),
        links=Links(runbook_base="https://wiki.example/ops/"),
    )
    fired = evaluate(rule, (), result=Vector((Sample((), 1.0),)), now=T0)
    ledger.record({rule.name: fired}, now=T0)
    outbox.notify(fired.notifications, now=T0)
    resender = Resender(ledger=ledger, outbox=outbox, notifiers={"console": keeper})
    await outbox.deliver(now=T0)
    resender.run(now=T0)  # the refresh is timed from here
    later = T0 + timedelta(hours=1)
    assert resender.run(now=later) == 1
    await outbox.deliver(now=later)
    first, reminder = keeper.payloads
    runbook = "https://wiki.example/ops/docs/runbook.md#cachehitratelow"
    assert first["links"] == {"runbook": runbook}
    assert reminder["links"] == first["links"]


def test_the_silence_commands_say_in_one_line_when_the_store_cannot_be_opened(
    tmp_path: Path,
) -> None:
    # A relative SQLite store, run from a directory where it does not exist.
    environ = {**os.environ, "ALERT_STORE_URL": "sqlite:///./missing/alerts.db"}
    result = subprocess.run(
        [sys.executable, "-m", "dynoscope", "silence", "list"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot use the alert store" in lines[0]
    assert f"relative to {tmp_path}" in lines[0]
    assert not (tmp_path / "missing").exists()  # no empty store made where it is not


def test_an_empty_silence_list_says_so(tmp_path: Path) -> None:
    environ = {**os.environ, "ALERT_STORE_URL": f"sqlite:///{tmp_path / 'alerts.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "dynoscope", "silence", "list"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no silences in force or waiting\n"
    assert "alembic" not in result.stderr  # migrations run quietly
