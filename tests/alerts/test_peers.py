"""What engines tell each other: merging a peer's transitions once, not sending again what a
peer delivered, the peer paths on the metrics port (behind its token, 400 on a bad ``since``),
and ``ALERT_PEERS`` checked at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alerts.delivery.notification import Delivery
from alerts.delivery.outbox import Outbox
from alerts.engine.ledger import Ledger
from alerts.engine.monitor import Monitor, open_store
from alerts.engine.peers import DECISIONS_PATH, PEER_PATH, Peers, decisions_json
from alerts.engine.query import Sample, Vector
from alerts.engine.state import AlertState, evaluate
from alerts.http.peer import answers
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.settings import AlertSettings
from alerts.store.lease import HostLease
from alerts.store.store import HistoryEntry
from exporters.server import MetricsServer
from instrumentation.settings import SettingsError
from tests.alerts.conftest import Recorder
from tests.alerts.harness import rules_file
from tests.support.stack import free_port

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def entry(id: str, state: AlertState, at: datetime, fingerprint: str = "f1") -> HistoryEntry:
    return HistoryEntry(
        id=id,
        rule="InstanceDown",
        fingerprint=fingerprint,
        labels={"alertname": "InstanceDown"},
        state=state,
        value=0.0,
        at=at,
        annotations={},
    )


def test_a_peers_transitions_are_merged_once() -> None:
    ledger = Ledger()
    ledger.merge_history([entry("mine", AlertState.FIRING, T0)], tolerance=3 * SECOND)
    theirs = [
        entry("a", AlertState.FIRING, T0 + 2 * SECOND),  # the same transition, seen later
        entry("b", AlertState.RESOLVED, T0 + 10 * SECOND),  # one this engine never saw
        entry("c", AlertState.FIRING, T0 + 60 * SECOND),  # the same alert, a later episode
        entry("d", AlertState.FIRING, T0, fingerprint="f2"),  # another alert
    ]
    assert ledger.merge_history(theirs, tolerance=3 * SECOND) == 3
    assert ledger.merge_history(theirs, tolerance=3 * SECOND) == 0  # a second merge: nothing
    assert [e.id for e in ledger.take().history] == ["mine", "d", "b", "c"]


def test_a_transition_a_peer_reached_first_is_not_recorded_twice() -> None:
    ledger = Ledger()
    rule = Rule(name="InstanceDown", group="g", query=RawQuery("up"), op=Op.LT, threshold=1)
    down = Vector((Sample((("instance", "a"),), 0.0),))
    fired = evaluate(rule, (), result=down, now=T0)
    ledger.record({"InstanceDown": fired}, now=T0)
    fingerprint = fired.alerts[0].fingerprint
    theirs = entry("p", AlertState.RESOLVED, T0 + 10 * SECOND, fingerprint=fingerprint)
    ledger.merge_history([theirs], tolerance=3 * SECOND)
    # This engine resolves it too, a second later: the peer's row stands for both.
    resolved = evaluate(rule, fired.alerts, result=Vector(()), now=T0 + 11 * SECOND)
    ledger.record({"InstanceDown": resolved}, now=T0 + 11 * SECOND)
    states = [(e.id == "p", e.state) for e in ledger.take().history]
    assert states == [(False, AlertState.FIRING), (True, AlertState.RESOLVED)]
    # A later episode is recorded as usual.
    again = evaluate(rule, resolved.alerts, result=down, now=T0 + 60 * SECOND)
    ledger.record({"InstanceDown": again}, now=T0 + 60 * SECOND)
    assert [e.state for e in ledger.take().history] == [AlertState.FIRING]


def delivery(id: str, status: str, dedup_key: str = "k") -> Delivery:
    return Delivery(
        id=id,
        receiver="hook",
        dedup_key=dedup_key,
        status=status,
        payload={},
        created_at=T0,
        next_attempt_at=T0,
    )


async def test_what_a_peer_delivered_is_not_sent_again() -> None:
    hook = Recorder("hook")
    ledger = Ledger()
    outbox = Outbox(notifiers={"hook": hook}, ledger=ledger)
    outbox.enqueue(
        [delivery("1", "firing"), delivery("2", "resolved"), delivery("3", "firing", "x")]
    )
    done = {("hook", "k", "firing"), ("other", "x", "firing")}
    assert outbox.settle(done, now=T0, keep=3 * SECOND) == 1
    await outbox.deliver(now=T0)
    assert sorted(hook.accepted) == ["firing", "resolved"]  # k resolved and x firing only
    settled = ledger.take().deliveries["1"]
    assert settled.delivered_at == T0 and settled.last_error == "delivered by a peer"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Monitor, str]]:
    settings = AlertSettings.from_env(
        {
            "ALERT_STORE_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
            "ALERT_RULES_PATH": str(rules_file(tmp_path, {"Watchdog": {}})),
        }
    )
    store = open_store(settings)
    monitor = Monitor.build(settings, store=store, lease=HostLease())
    port = free_port()
    server = MetricsServer(
        monitor.metrics.registry,
        host="127.0.0.1",
        port=port,
        token="peer-token",
        status=answers(monitor),
    )
    # Connected to its store, nothing scheduled: no evaluation or store write is in flight
    # when the fixture stops it (a cancelled aiosqlite call leaves a closing task behind).
    assert await monitor.writer.connect(now=datetime.now(UTC))
    assert server.start()
    try:
        yield monitor, f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await monitor.stop()
        await store.dispose()


async def test_peer_paths_answer_behind_the_metrics_token(served: tuple[Monitor, str]) -> None:
    monitor, url = served
    monitor.ledger.merge_history([entry("x", AlertState.FIRING, T0)], tolerance=SECOND)
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get(PEER_PATH)).status_code == 401
        auth = {"Authorization": "Bearer peer-token"}
        status = (await client.get(PEER_PATH, headers=auth)).json()
        assert status == {"mode": "leader", "store_reachable": True, "token": None}
        bad = await client.get(DECISIONS_PATH, params={"since": "yesterday"}, headers=auth)
        assert bad.status_code == 400 and "since" in bad.json()["detail"]
        naive = await client.get(DECISIONS_PATH, params={"since": "2026-12-07T09:00"}, headers=auth)
        assert naive.status_code == 400

        peers = Peers([url], client=client, timeout=2, token="peer-token")
        assert await peers.see_store()
        history, delivered = await peers.decisions(T0 - SECOND)
        assert ("x", AlertState.FIRING, T0) in [(h.id, h.state, h.at) for h in history]
        assert all(h.at >= T0 - SECOND for h in history)  # nothing from before ``since``
        later, _ = await peers.decisions(T0 + SECOND)
        assert "x" not in {h.id for h in later}
        assert delivered == set()
        assert not await Peers([url], client=client, timeout=2).see_store()  # no token
        nobody = Peers([f"http://127.0.0.1:{free_port()}"], client=client, timeout=1)
        assert not await nobody.see_store()


def test_decisions_round_trip_through_json() -> None:
    done = Delivery(
        id="9", receiver="hook", dedup_key="k", status="firing", payload={},
        created_at=T0, delivered_at=T0,
    )  # fmt: skip
    body = decisions_json([entry("x", AlertState.RESOLVED, T0)], [done])
    assert body["delivered"] == [["hook", "k", "firing"]]
    assert body["history"][0]["at"] == "2026-12-07T09:00:00Z"


def test_alert_peers_must_be_urls() -> None:
    with pytest.raises(SettingsError, match="ALERT_PEERS: entry 2 is not") as raised:
        AlertSettings.from_env({"ALERT_PEERS": "http://engine-a:9464, engine-b:9464"})
    assert "engine-b" not in str(raised.value)
    settings = AlertSettings.from_env({"ALERT_PEERS": "http://a:1, https://b:2/ ,"})
    assert settings.peer_urls == ("http://a:1", "https://b:2/")
