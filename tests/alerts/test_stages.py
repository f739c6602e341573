"""Each delivery stage alone, on a fixed clock: route, silence, render, fence, retry, count;
``run`` stops at the first stage that stops an item, and ``send`` turns whatever a notifier
raises into a failure."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery
from alerts.delivery.pipeline import compose
from alerts.delivery.retry import RetryPolicy
from alerts.delivery.routing import Route as RouteRule
from alerts.delivery.routing import Router
from alerts.delivery.stages import (
    Attempt,
    Count,
    Dedup,
    Failure,
    Fence,
    Intake,
    PeerLog,
    Render,
    Retry,
    Route,
    Silence,
    run,
    send,
)
from alerts.engine.query import Sample, Vector
from alerts.engine.state import Notification, evaluate
from alerts.errors import NotificationError
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.silences.matchers import Matcher
from alerts.silences.silence import Silence as SilenceRule
from alerts.silences.silence import Silences
from instrumentation.catalogue import Catalogue

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
RULE = Rule(
    name="Hot",
    group="g",
    query=RawQuery("x"),
    op=Op.GT,
    threshold=0,
    labels=(("severity", "page"),),
    annotations=(("runbook_url", "docs/runbook.md#hot"),),
)


def notification() -> Notification:
    evaluation = evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=T0)
    return evaluation.notifications[0]


def delivery(*, attempts: int = 0) -> Delivery:
    return Delivery(
        id="1",
        receiver="hook",
        dedup_key="k",
        status="firing",
        payload={},
        created_at=T0,
        next_attempt_at=T0,
        attempts=attempts,
    )


class Counted:
    def __init__(self) -> None:
        self.counts: list[tuple[str, str]] = []

    def __call__(self, receiver: str, outcome: str) -> None:
        self.counts.append((receiver, outcome))


class HeldFor:
    """A lease with ``seconds`` left."""

    holder = "me"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def remaining(self) -> float:
        return self.seconds

    def fence(self) -> None:
        return None

    def drop(self) -> None:
        self.seconds = 0


# --- on the way in ------------------------------------------------------------------------


def test_route_sends_to_every_receiver_without_a_router_and_to_the_matching_ones_with_one() -> None:
    everyone = Route(("hook", "pager"))(Intake(notification()), now=T0)
    assert {d.receiver for d in everyone.destinations} == {"hook", "pager"}

    router = Router(
        routes=(RouteRule((Matcher("severity", "page"),), ("pager",)),),
        default=("hook",),
        always=(),
    )
    routed = Route(("hook", "pager"), router)(Intake(notification()), now=T0)
    assert [d.receiver for d in routed.destinations] == ["pager"]
    # A receiver the router names but the deployment does not configure is left out.
    unknown = Route(("hook",), router)(Intake(notification()), now=T0)
    assert unknown.destinations == ()


def test_silence_marks_a_matching_notification_and_counts_it_per_receiver() -> None:
    silences = Silences()
    silence = SilenceRule(
        id="s1",
        matchers=(Matcher("alertname", "Hot"),),
        starts_at=T0 - timedelta(minutes=1),
        ends_at=T0 + timedelta(hours=1),
        author="ops",
        comment="deploy",
        created_at=T0,
    )
    silences.add(silence)
    counted = Counted()
    routed = Route(("hook", "pager"))(Intake(notification()), now=T0)

    muted = Silence(silences, counted)(routed, now=T0)
    assert muted is not None and muted.muted_by == "s1"
    assert sorted(counted.counts) == [("hook", "silenced"), ("pager", "silenced")]

    after = Silence(silences, counted)(routed, now=T0 + timedelta(hours=2))
    assert after is not None and after.muted_by is None  # the silence has ended
    assert Silence(None, counted)(routed, now=T0) == routed


def test_dedup_leaves_out_receivers_a_peer_already_told_for_a_while() -> None:
    log = PeerLog()
    item = Route(("hook", "pager"))(Intake(notification()), now=T0)
    key = item.notification.dedup_key
    log.remember({("hook", key, "firing"), ("pager", key, "resolved")}, until=T0 + SECOND)
    kept = Dedup(log)(item, now=T0)
    assert [d.receiver for d in kept.destinations] == ["pager"]  # pager heard "resolved" only
    later = Dedup(log)(item, now=T0 + 2 * SECOND)
    assert [d.receiver for d in later.destinations] == ["hook", "pager"]  # forgotten


def test_render_makes_the_payload_with_its_links() -> None:
    plain = Render()(Intake(notification()), now=T0)
    assert plain.payload["labels"]["alertname"] == "Hot"
    assert "links" not in plain.payload or "grafana" not in plain.payload["links"]

    linked = Render(Links(grafana="https://grafana/d?alert={{ labels.alertname }}"))(
        Intake(notification()), now=T0
    )
    assert linked.payload["links"]["grafana"] == "https://grafana/d?alert=Hot"


def test_run_stops_at_the_first_stage_that_stops_the_item() -> None:
    seen: list[str] = []

    def stop(item: Attempt, *, now: datetime) -> Attempt | None:
        seen.append("stop")
        return None

    def after(item: Attempt, *, now: datetime) -> Attempt | None:
        seen.append("after")
        return item

    assert run((stop, after), Attempt(delivery()), now=T0) is None
    assert seen == ["stop"]
    assert run((after,), Attempt(delivery()), now=T0) == Attempt(delivery())


# --- on the way out -----------------------------------------------------------------------


def test_fence_stops_a_send_without_the_lease_and_bounds_it_by_what_is_left() -> None:
    assert Fence(HeldFor(0), timeout=10)(Attempt(delivery()), now=T0) is None
    bounded = Fence(HeldFor(3.5), timeout=10)(Attempt(delivery()), now=T0)
    assert bounded is not None and bounded.timeout == 3.5
    free = Fence(None, timeout=10)(Attempt(delivery()), now=T0)
    assert free is not None and free.timeout == 10
    assert Fence(None, timeout=10).held() == math.inf


def test_retry_turns_each_outcome_into_the_deliverys_next_state() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=timedelta(seconds=2))
    retry = Retry(policy)

    sent = retry(Attempt(delivery()), now=T0)
    assert sent.result == "sent"
    assert sent.changes == {"attempts": 1, "delivered_at": T0, "last_error": None}

    again = retry(Attempt(delivery(attempts=1), failure=Failure("HTTP 503")), now=T0)
    assert again.result == "retried"
    assert again.changes["next_attempt_at"] == T0 + timedelta(seconds=4)
    assert again.changes["last_error"] == "hook: HTTP 503"  # the receiver named once

    refused = Failure("hook: HTTP 400", retryable=False)
    failed = retry(Attempt(delivery(), failure=refused), now=T0)
    assert failed.result == "failed"
    assert failed.changes == {"attempts": 1, "last_error": "hook: HTTP 400", "abandoned_at": T0}

    waited = retry(Attempt(delivery(), failure=Failure("429", retry_after=60)), now=T0)
    assert waited.changes["next_attempt_at"] == T0 + timedelta(seconds=60)

    old = Retry(RetryPolicy(max_age=timedelta(minutes=5)))
    expired = old(Attempt(delivery(), failure=Failure("down")), now=T0 + timedelta(minutes=5))
    assert expired.result == "expired" and "abandoned_at" in expired.changes


def test_count_counts_each_result_per_receiver() -> None:
    metrics = EngineMetrics.of(Catalogue(registry=CollectorRegistry()))
    counter = Count(metrics)
    counter(Attempt(delivery(), result="sent"), now=T0)
    counter(Attempt(delivery(), result="sent"), now=T0)
    counter(Attempt(delivery(), result="retried"), now=T0)
    counter(Attempt(delivery()), now=T0)  # no result yet: nothing counted

    def value(outcome: str) -> float:
        return metrics.notifications.labels(receiver="hook", outcome=outcome)._value.get()

    assert (value("sent"), value("retried")) == (2, 1)


class Raising:
    name = "hook"
    groups = True
    resend_every = None

    def __init__(self, error: BaseException | None = None, *, hang: bool = False) -> None:
        self.error = error
        self.hang = hang

    async def send(self, delivery: Delivery) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error


async def test_send_turns_what_a_notifier_raises_into_a_failure() -> None:
    attempt = Attempt(delivery(), timeout=5)
    assert await send(Raising(), attempt) is None

    refused = NotificationError("HTTP 400", receiver="hook", retryable=False)
    assert await send(Raising(refused), attempt) == Failure("hook: HTTP 400", retryable=False)

    assert await send(Raising(KeyError("bug")), attempt) == Failure("KeyError")
    hung = await send(Raising(hang=True), Attempt(delivery(), timeout=0.01))
    assert hung == Failure("timed out")


def test_compose_puts_the_stages_in_the_order_they_run() -> None:
    pipeline = compose(receivers=("hook",), lease=HeldFor(1.0))
    intake = [type(s).__name__ for s in pipeline.intake]
    assert intake == ["Route", "Dedup", "Silence", "Inhibit", "Render"]
    assert [type(s).__name__ for s in pipeline.before_send] == ["Fence"]
    assert [type(s).__name__ for s in pipeline.after_send] == ["Retry", "Count"]
    assert pipeline.intake[0] is pipeline.route and pipeline.before_send[0] is pipeline.fence


@pytest.mark.parametrize("held", [0.0, 1.0])
def test_the_composed_fence_follows_the_lease(held: float) -> None:
    pipeline = compose(receivers=("hook",), lease=HeldFor(held))
    passed = run(pipeline.before_send, Attempt(delivery()), now=T0)
    assert (passed is not None) == (held > 0)
