"""Console and webhook notifiers, and the outbox that retries them."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from alerts.delivery.notification import Delivery, deliveries
from alerts.delivery.notifiers import ConsoleNotifier, WebhookConfig, WebhookNotifier
from alerts.delivery.outbox import Outbox
from alerts.delivery.retry import RetryPolicy
from alerts.engine.ledger import Ledger
from alerts.engine.query import Sample, Vector
from alerts.engine.state import evaluate
from alerts.errors import NotificationError
from alerts.rules.rule import Op, RawQuery, Rule

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SECRET_URL = "https://hooks.example.com/services/T0KEN-s3cret"


def delivery(status: str = "firing", attempts: int = 0) -> Delivery:
    return Delivery(
        id="1",
        receiver="webhook",
        dedup_key="abc123",
        status=status,
        payload={
            "status": status,
            "labels": {"alertname": "DatabaseSlowQuery", "instance": "a:8000"},
            "annotations": {"summary": "slow"},
            "startsAt": "2026-11-26T09:00:00Z",
            "endsAt": None if status == "firing" else "2026-11-26T09:05:00Z",
            "fingerprint": "abc123",
            "value": 4.0,
        },
        attempts=attempts,
        created_at=T0,
    )


def webhook(handler: httpx.MockTransport) -> WebhookNotifier:
    client = httpx.AsyncClient(transport=handler)
    return WebhookNotifier(
        WebhookConfig(url=SecretStr(SECRET_URL), timeout_seconds=0.5), client=client
    )


async def test_webhook_posts_alertmanager_v4_json() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    await webhook(httpx.MockTransport(handle)).send(delivery())
    (request,) = seen
    assert str(request.url) == SECRET_URL and request.method == "POST"
    body = json.loads(request.content)
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["groupKey"] == "abc123" and body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {"alertname": "DatabaseSlowQuery"}
    (alert,) = body["alerts"]
    assert alert["labels"]["instance"] == "a:8000"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"  # still firing, as Alertmanager writes it
    assert alert["fingerprint"] == "abc123"
    assert set(body) >= {"receiver", "commonLabels", "commonAnnotations", "externalURL"}


@pytest.mark.parametrize(
    ("response", "retryable"),
    [(httpx.Response(503), True), (httpx.Response(429), True), (httpx.Response(400), False)],
)
async def test_webhook_errors_say_whether_to_retry_and_never_show_the_url(
    response: httpx.Response, retryable: bool
) -> None:
    with pytest.raises(NotificationError) as caught:
        await webhook(httpx.MockTransport(lambda _: response)).send(delivery())
    assert caught.value.retryable is retryable
    assert "s3cret" not in str(caught.value) and "hooks.example" not in str(caught.value)


async def test_the_webhook_url_never_reaches_a_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        await webhook(httpx.MockTransport(lambda _: httpx.Response(200))).send(delivery())
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


async def test_webhook_timeouts_are_retryable_errors() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(NotificationError, match="timed out") as caught:
        await webhook(httpx.MockTransport(hang)).send(delivery())
    assert caught.value.retryable and "s3cret" not in str(caught.value)


async def test_console_writes_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dynoscope.alerts"):
        await ConsoleNotifier().send(delivery("resolved"))
    (record,) = caplog.records
    line = json.loads(record.getMessage())
    assert line["event"] == "alert" and line["status"] == "resolved"
    assert line["alertname"] == "DatabaseSlowQuery" and line["endsAt"] == "2026-11-26T09:05:00Z"


class Flaky:
    """A notifier (our interface) that fails ``failures`` times, then accepts."""

    groups = True
    resend_every = None

    name = "webhook"

    def __init__(self, failures: int, *, retryable: bool = True) -> None:
        self.failures = failures
        self.retryable = retryable
        self.accepted: list[str] = []

    async def send(self, delivery: Delivery) -> None:
        if self.failures:
            self.failures -= 1
            raise NotificationError(
                "answered HTTP 503", receiver=self.name, retryable=self.retryable
            )
        self.accepted.append(delivery.dedup_key)


def queue_one(outbox: Outbox) -> None:
    rule = Rule(name="Hot", group="g", query=RawQuery("x"), op=Op.GT, threshold=0)
    outcome = evaluate(rule, (), result=Vector((Sample((), 1.0),)), now=T0)
    outbox.enqueue(deliveries(outcome.notifications, receivers=outbox.receivers, now=T0))


async def test_failed_deliveries_are_retried_with_backoff() -> None:
    notifier = Flaky(failures=2)
    outbox = Outbox(
        notifiers={"webhook": notifier},
        ledger=Ledger(),
        retry=RetryPolicy(backoff=timedelta(seconds=2)),
    )
    queue_one(outbox)
    assert await outbox.deliver(now=T0) == 0  # attempt 1 fails: next after 2 s
    assert await outbox.deliver(now=T0 + timedelta(seconds=1)) == 0  # not due yet
    assert await outbox.deliver(now=T0 + timedelta(seconds=2)) == 0  # attempt 2 fails: +4 s
    assert await outbox.deliver(now=T0 + timedelta(seconds=5)) == 0
    assert await outbox.deliver(now=T0 + timedelta(seconds=6)) == 1
    assert len(notifier.accepted) == 1
    assert await outbox.deliver(now=T0 + timedelta(hours=1)) == 0  # delivered exactly once
    assert outbox.pending() == 0


async def test_hopeless_deliveries_are_abandoned() -> None:
    ledger = Ledger()
    outbox = Outbox(notifiers={"webhook": Flaky(failures=1, retryable=False)}, ledger=ledger)
    queue_one(outbox)
    await outbox.deliver(now=T0)
    assert outbox.pending() == 0
    (abandoned,) = ledger.take().deliveries.values()  # recorded for the store as abandoned
    assert abandoned.abandoned_at == T0 and abandoned.attempts == 1


async def test_console_warns_on_firing_but_not_for_the_watchdog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watchdog = delivery("firing")
    watchdog.payload["labels"] = {"alertname": "Watchdog", "severity": "none"}
    with caplog.at_level(logging.INFO, logger="dynoscope.alerts"):
        await ConsoleNotifier().send(delivery("firing"))
        await ConsoleNotifier().send(watchdog)
        await ConsoleNotifier().send(delivery("resolved"))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO, logging.INFO]
