"""Alertmanager-style grouping through the outbox, on a fixed clock: group_wait collects the
alerts that start together, group_interval spaces later changes, repeat_interval reminds;
silences and acknowledgements inside groups; the receivers file's grouping fields; parked
notifications surviving a restart; webhook and Slack bodies of a group."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.grouping import GroupSettings
from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.notifiers.console import ConsoleNotifier
from alerts.delivery.notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from alerts.delivery.notifiers.slack import LISTED, group_message
from alerts.delivery.notifiers.webhook import alertmanager_payload
from alerts.delivery.outbox import Outbox
from alerts.delivery.receivers import load_receivers
from alerts.delivery.routing import Route, Router
from alerts.engine.ledger import Ledger
from alerts.engine.state import Alert, AlertState, Notification
from alerts.errors import ReceiverFileError
from alerts.silences.matchers import Matcher
from alerts.silences.silence import Silence, Silences
from alerts.store.store import Store
from tests.alerts.receiving import recording_server

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
GROUPED = GroupSettings(
    by=("alertname",),
    wait=timedelta(seconds=30),
    interval=timedelta(minutes=5),
    repeat=timedelta(hours=4),
)


@dataclass
class Inbox:
    """A notifier (our interface) keeping every message it got."""

    groups = True
    resend_every = None

    name: str
    got: list[Delivery] = field(default_factory=list)

    async def send(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    def listed(self) -> list[list[tuple[str, str]]]:
        """Per message, its alerts as (instance, status)."""
        return [
            [(one.payload["labels"]["instance"], one.status) for one in alerts_of(message)]
            for message in self.got
        ]


def alert(name: str, instance: str, *, state: AlertState = AlertState.FIRING,
          at: datetime = T0, **labels: str) -> Alert:  # fmt: skip
    return Alert(
        rule=name,
        labels=tuple(sorted({"alertname": name, "instance": instance, **labels}.items())),
        state=state,
        value=1.0,
        active_at=at,
        fired_at=at,
        resolved_at=at if state is AlertState.RESOLVED else None,
        annotations=(("summary", f"{name} on {instance}"),),
    )


def fire(outbox: Outbox, *alerts: Alert, at: datetime) -> None:
    outbox.notify([Notification(a, at) for a in alerts], now=at)


def resolve(outbox: Outbox, *alerts: Alert, at: datetime) -> None:
    ended = [Notification(_resolved(a, at=at), at) for a in alerts]
    outbox.notify(ended, now=at)


def _resolved(firing: Alert, *, at: datetime) -> Alert:
    return Alert(**{**firing.__dict__, "state": AlertState.RESOLVED, "resolved_at": at})


def setup(
    router: Router | None = None, *, silences: Silences | None = None
) -> tuple[Outbox, Inbox, Ledger]:
    inbox = Inbox("hook")
    ledger = Ledger()
    router = router or Router(default=("hook",), always=(), group=GROUPED,
                              repeat_interval=GROUPED.repeat)  # fmt: skip
    outbox = Outbox(notifiers={"hook": inbox}, ledger=ledger, router=router, silences=silences)
    return outbox, inbox, ledger


async def step(outbox: Outbox, inbox: Inbox, seconds: float) -> int:
    """Deliver at T0 + ``seconds``; how many messages arrived."""
    before = len(inbox.got)
    await outbox.deliver(now=T0 + timedelta(seconds=seconds))
    return len(inbox.got) - before


async def test_alerts_starting_within_group_wait_arrive_as_one_message() -> None:
    outbox, inbox, _ = setup()
    fire(outbox, alert("DiskFull", "db-1"), at=T0)
    assert await step(outbox, inbox, 0) == 0
    fire(outbox, alert("DiskFull", "db-2"), at=T0 + timedelta(seconds=10))
    assert await step(outbox, inbox, 10) == 0
    assert outbox.pending() == 2  # waiting in their group
    assert await step(outbox, inbox, 29) == 0
    assert await step(outbox, inbox, 30) == 1
    assert inbox.listed() == [[("db-1", "firing"), ("db-2", "firing")]]
    assert inbox.got[0].status == "firing"
    assert outbox.pending() == 0


async def test_later_changes_wait_for_group_interval_and_resolves_are_sent_in_group() -> None:
    outbox, inbox, _ = setup()
    first, second, third = (alert("DiskFull", f"db-{n}") for n in (1, 2, 3))
    fire(outbox, first, second, at=T0)
    assert await step(outbox, inbox, 30) == 1
    fire(outbox, third, at=T0 + timedelta(seconds=60))
    assert await step(outbox, inbox, 60) == 0
    assert await step(outbox, inbox, 329) == 0  # not before group_interval after the last
    assert await step(outbox, inbox, 330) == 1
    assert inbox.listed()[1] == [("db-1", "firing"), ("db-2", "firing"), ("db-3", "firing")]
    resolve(outbox, first, at=T0 + timedelta(seconds=400))
    assert await step(outbox, inbox, 400) == 0
    assert await step(outbox, inbox, 630) == 1
    assert inbox.listed()[2] == [("db-2", "firing"), ("db-3", "firing"), ("db-1", "resolved")]
    assert inbox.got[2].status == "firing"  # something in the group still fires
    resolve(outbox, second, third, at=T0 + timedelta(seconds=700))
    assert await step(outbox, inbox, 930) == 1
    assert inbox.listed()[3] == [("db-2", "resolved"), ("db-3", "resolved")]
    assert inbox.got[3].status == "resolved"
    assert await step(outbox, inbox, 4 * 3600 + 930) == 0  # the group is over: no reminders


async def test_a_group_still_firing_is_reminded_after_repeat_interval() -> None:
    outbox, inbox, _ = setup()
    fire(outbox, alert("DiskFull", "db-1"), alert("DiskFull", "db-2"), at=T0)
    assert await step(outbox, inbox, 30) == 1
    # Looked at every group_interval; reminded at the first look 4 h after the last message.
    assert await step(outbox, inbox, 4 * 3600) == 0
    assert await step(outbox, inbox, 4 * 3600 + 299) == 0
    assert await step(outbox, inbox, 4 * 3600 + 300) == 1
    assert inbox.listed()[1] == [("db-1", "firing"), ("db-2", "firing")]
    assert await step(outbox, inbox, 8 * 3600) == 0
    assert await step(outbox, inbox, 8 * 3600 + 300) == 1


async def test_different_group_by_values_are_separate_messages() -> None:
    outbox, inbox, _ = setup()
    fire(outbox, alert("DiskFull", "db-1"), alert("HighLoad", "db-1"),
         alert("DiskFull", "db-2"), at=T0)  # fmt: skip
    assert await step(outbox, inbox, 30) == 2
    one, two = [("db-1", "firing")], [("db-1", "firing"), ("db-2", "firing")]
    assert sorted(inbox.listed()) == [one, two]
    keys = {message.payload["groupKey"] for message in inbox.got}
    assert len(keys) == 2 and {m.dedup_key for m in inbox.got} == keys


async def test_a_silenced_alert_is_left_out_and_a_group_with_nothing_to_say_says_nothing() -> None:
    silences = Silences()
    silences.add(Silence.new(['instance="db-2"'], starts_at=T0, ends_at=T0 + timedelta(hours=1),
                             author="ana", comment="maintenance"))  # fmt: skip
    outbox, inbox, _ = setup(silences=silences)
    fire(outbox, alert("DiskFull", "db-1"), alert("DiskFull", "db-2"), at=T0)
    assert await step(outbox, inbox, 30) == 1
    assert inbox.listed() == [[("db-1", "firing")]]
    fire(outbox, alert("DiskFull", "db-2", at=T0 + timedelta(minutes=10)),
         at=T0 + timedelta(minutes=10))  # fmt: skip
    assert await step(outbox, inbox, 11 * 60) == 0  # only the silenced alert changed
    # Silence over: the next reminder lists it with the others.
    assert await step(outbox, inbox, 4 * 3600 + 30) == 1
    assert inbox.listed()[1] == [("db-1", "firing"), ("db-2", "firing")]


async def test_an_acknowledged_alert_is_left_out_of_reminders_only() -> None:
    silences = Silences()
    outbox, inbox, _ = setup(silences=silences)
    acked = alert("DiskFull", "db-1")
    fire(outbox, acked, alert("DiskFull", "db-2"), at=T0)
    assert await step(outbox, inbox, 30) == 1
    silences.add(Silence.acknowledge(acked, now=T0 + timedelta(minutes=1), author="ana",
                                     comment="on it"))  # fmt: skip
    assert await step(outbox, inbox, 4 * 3600 + 30) == 1
    assert inbox.listed()[1] == [("db-2", "firing")]
    resolve(outbox, acked, at=T0 + timedelta(hours=5))
    assert await step(outbox, inbox, 5 * 3600 + 300) == 1  # its resolve is still announced
    assert inbox.listed()[2] == [("db-2", "firing"), ("db-1", "resolved")]


async def test_route_level_overrides_and_alertmanager_style_receivers_bypass() -> None:
    fast = Route((Matcher("severity", "page"),), ("hook",), group_by=("instance",),
                 group_wait=timedelta(seconds=5))  # fmt: skip
    outbox, inbox, _ = setup(Router(routes=(fast,), default=("hook",), always=(), group=GROUPED))
    fire(outbox, alert("DiskFull", "db-1", severity="page"),
         alert("HighLoad", "db-1", severity="page"), alert("DiskFull", "db-2"), at=T0)  # fmt: skip
    assert await step(outbox, inbox, 4) == 0
    assert await step(outbox, inbox, 5) == 1  # the route's own wait, grouped by instance
    assert inbox.got[0].payload["groupLabels"] == {"instance": "db-1"}
    assert inbox.got[0].payload["route"] == "routes.0"
    assert await step(outbox, inbox, 30) == 1  # the tree's wait for the rest
    assert inbox.got[1].payload["groupLabels"] == {"alertname": "DiskFull"}


async def test_a_receiver_that_does_not_group_gets_each_alert_at_once() -> None:
    class Push(Inbox):
        groups = False

    push = Push("am")
    router = Router(default=("am",), always=(), group=GROUPED)
    outbox = Outbox(notifiers={"am": push}, ledger=Ledger(), router=router)
    fire(outbox, alert("DiskFull", "db-1"), alert("DiskFull", "db-2"), at=T0)
    await outbox.deliver(now=T0)
    assert push.listed() == [[("db-1", "firing")], [("db-2", "firing")]]


async def test_waiting_notifications_survive_a_restart_in_their_group(
    sqlite_store: AsyncEngine,
) -> None:
    store = Store(sqlite_store)
    outbox, _, ledger = setup()
    fire(outbox, alert("DiskFull", "db-1"), alert("DiskFull", "db-2"), at=T0)
    await store.write(ledger.take())  # the engine dies here, inside group_wait
    successor, inbox, successor_ledger = setup()
    snapshot = await store.load()
    assert successor.restore(snapshot.deliveries, now=T0 + timedelta(seconds=40)) == 2
    assert await step(successor, inbox, 69) == 0  # a new group_wait from the restart
    assert await step(successor, inbox, 70) == 1
    assert inbox.listed() == [[("db-1", "firing"), ("db-2", "firing")]]
    await store.write(successor_ledger.take())
    assert (await store.load()).deliveries == ()  # parked rows ended with the message


async def test_a_group_message_in_the_webhook_format() -> None:
    message = await grouped_delivery()
    body = alertmanager_payload(message, receiver="hook", external_url="http://dynoscope")
    assert body["version"] == "4" and body["groupKey"] == message.dedup_key
    assert body["groupLabels"] == {"alertname": "DiskFull"}
    assert body["commonLabels"] == {"alertname": "DiskFull", "severity": "page"}
    assert body["commonAnnotations"] == {}
    assert body["status"] == "firing"
    assert [(a["labels"]["instance"], a["status"]) for a in body["alerts"]] == [
        ("db-1", "firing"),
        ("db-2", "resolved"),
    ]
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    resolved = alert("DiskFull", "db-2", severity="page")
    assert body["alerts"][1]["fingerprint"] == resolved.fingerprint


async def test_a_group_message_on_slack_lists_its_alerts() -> None:
    body = group_message(await grouped_delivery())
    assert body["text"] == "[FIRING] alertname=DiskFull: 1 firing, 1 resolved"
    header = body["blocks"][0]["text"]["text"]
    assert header == "FIRING: alertname=DiskFull"
    summaries = [
        b["text"]["text"] for b in body["blocks"] if "text" in b and b["type"] == "section"
    ]
    assert summaries == ["DiskFull on db-1", "DiskFull on db-2"]  # each alert's own blocks
    many = await grouped_delivery(count=LISTED + 3)
    blocks = group_message(many)["blocks"]
    assert len(blocks) <= 50 and blocks[-1]["elements"][0]["text"] == "and 3 more"


async def grouped_delivery(*, count: int = 2) -> Delivery:
    outbox, inbox, _ = setup()
    alerts = [alert("DiskFull", f"db-{n}", severity="page") for n in range(1, count + 1)]
    fire(outbox, *alerts[:1], *alerts[2:], at=T0)
    fire(outbox, alerts[1], at=T0)
    resolve(outbox, alerts[1], at=T0 + timedelta(seconds=5))
    assert await step(outbox, inbox, 30) == 1
    return inbox.got[0]


GOOD = """
receivers:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
route:
  receivers: [hook]
  group_by: [alertname, instance]
  group_wait: 10s
  routes:
    - match: {severity: page}
      receivers: [hook]
      group_by: ["..."]
      group_interval: 1m
      repeat_interval: 1h
"""


def test_grouping_fields_in_the_receivers_file(tmp_path: Path) -> None:
    path = tmp_path / "receivers.yml"
    path.write_text(GOOD, encoding="utf-8")
    router = load_receivers(path, environ={}).router
    (tree,) = router.destinations({"alertname": "X"})[1:]
    assert tree.settings == GroupSettings(("alertname", "instance"), timedelta(seconds=10),
                                          timedelta(minutes=5), None)  # fmt: skip
    paged = router.destinations({"alertname": "X", "severity": "page"})[1]
    assert paged.route == "routes.0"
    assert paged.settings == GroupSettings(("...",), timedelta(seconds=10), timedelta(minutes=1),
                                           timedelta(hours=1))  # fmt: skip
    assert paged.settings.labels_of({"a": "1", "b": "2"}) == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ("      group_wait: soon\n", "route.routes.0.group_wait", "invalid duration"),
        ("      group_interval: 0s\n", "route.routes.0.group_interval", "longer than 0s"),
        ("      group_by: [instance, '...']\n", "route.routes.0.group_by", "must stand alone"),
        ("      group_by: [bad-name]\n", "route.routes.0.group_by", "not a label name"),
    ],
)
def test_bad_grouping_says_file_route_and_field(
    tmp_path: Path, change: str, field: str, message: str
) -> None:
    path = tmp_path / "receivers.yml"
    path.write_text(GOOD.replace("      group_interval: 1m\n", "") + change, encoding="utf-8")
    with pytest.raises(ReceiverFileError) as caught:
        load_receivers(path, environ={})
    text = str(caught.value)
    assert str(path) in text and field in text and message in text


def test_without_a_receivers_file_nothing_waits() -> None:
    assert Router().destinations({"alertname": "X"})[0].settings == GroupSettings.ungrouped()


async def test_pagerduty_gets_one_event_per_alert_of_a_group_at_its_flush() -> None:
    async with recording_server() as server, httpx.AsyncClient() as client:
        config = PagerDutyConfig(name="pager", routing_key=SecretStr("k" * 32),
                                 url=f"{server.base}/v2/enqueue")  # fmt: skip
        pager = PagerDutyNotifier(config, client=client)
        router = Router(default=("pager",), always=(), group=GROUPED)
        outbox = Outbox(notifiers={"pager": pager}, ledger=Ledger(), router=router)
        first, second = alert("DiskFull", "db-1"), alert("DiskFull", "db-2")
        fire(outbox, first, second, at=T0)
        assert await outbox.deliver(now=T0 + timedelta(seconds=29)) == 0
        assert server.posts == []
        assert await outbox.deliver(now=T0 + timedelta(seconds=30)) == 1
        events = [body for _, body in server.posts]
        assert [(e["event_action"], e["dedup_key"]) for e in events] == [
            ("trigger", first.fingerprint),
            ("trigger", second.fingerprint),
        ]
        resolve(outbox, first, at=T0 + timedelta(minutes=1))
        await outbox.deliver(now=T0 + timedelta(seconds=330))
        actions = [(b["event_action"], b["dedup_key"]) for _, b in server.posts[2:]]
        # The message lists what still fires too: PagerDuty folds the repeated trigger.
        assert actions == [("trigger", second.fingerprint), ("resolve", first.fingerprint)]


async def test_the_console_logs_one_line_per_alert_with_the_group_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router(default=(), group=GROUPED)
    outbox = Outbox(notifiers={"console": ConsoleNotifier()}, ledger=Ledger(), router=router)
    fire(outbox, alert("DiskFull", "db-1"), alert("DiskFull", "db-2"), at=T0)
    with caplog.at_level(logging.INFO, logger="dynoscope.alerts"):
        await outbox.deliver(now=T0 + timedelta(seconds=30))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dynoscope.alerts"]
    assert [line["labels"]["instance"] for line in lines] == ["db-1", "db-2"]
    assert len({line["groupKey"] for line in lines}) == 1
