"""Slack, PagerDuty and webhook payloads as a real HTTP receiver gets them, field by field,
through the outbox (so retries, Retry-After and give-up are the real ones)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from starlette.responses import Response

from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery, deliveries
from alerts.delivery.notifiers.console import ConsoleNotifier
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from alerts.delivery.notifiers.slack import SlackConfig, SlackNotifier
from alerts.delivery.notifiers.webhook import WebhookConfig, WebhookNotifier
from alerts.delivery.outbox import Outbox
from alerts.delivery.retry import RetryPolicy
from alerts.engine.ledger import Ledger
from alerts.engine.query import Examples, SlowQuery
from alerts.engine.state import Alert, AlertState, Notification
from alerts.metrics import EngineMetrics
from instrumentation.catalogue import Catalogue
from tests.alerts.receiving import recording_server

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
LABELS = (
    ("alertname", "ApiLatencyP95High"),
    ("instance", "api-1:8000"),
    ("route", "/properties"),
    ("severity", "page"),
)
ANNOTATIONS = (
    ("runbook_url", "https://runbooks.example/latency"),
    ("summary", "p95 0.812s on /properties"),
)


def alert(state: AlertState, *, at: datetime) -> Alert:
    return Alert(
        rule="ApiLatencyP95High",
        labels=LABELS,
        state=state,
        value=0.812,
        active_at=T0,
        fired_at=T0 + timedelta(minutes=5),
        resolved_at=at if state is AlertState.RESOLVED else None,
        annotations=ANNOTATIONS,
        op=">",
        threshold=0.5,
    )


def firing_and_resolved(receiver: str) -> list[Delivery]:
    fired = T0 + timedelta(minutes=5)
    ended = T0 + timedelta(minutes=9)
    return [
        *deliveries(
            (Notification(alert(AlertState.FIRING, at=fired), fired),),
            receivers=(receiver,),
            now=fired,
        ),
        *deliveries(
            (Notification(alert(AlertState.RESOLVED, at=ended), ended),),
            receivers=(receiver,),
            now=ended,
        ),
    ]


async def drain(outbox: Outbox, *, start: datetime, seconds: int = 30) -> None:
    for step in range(seconds):
        await outbox.deliver(now=start + timedelta(seconds=step))


async def test_slack_text_and_blocks_firing_then_resolved() -> None:
    async with recording_server() as server, httpx.AsyncClient() as client:
        config = SlackConfig(name="oncall-slack", url=SecretStr(f"{server.base}/services/T/B/x"))
        outbox = Outbox(
            notifiers={"oncall-slack": SlackNotifier(config, client=client)}, ledger=Ledger()
        )
        outbox.enqueue(firing_and_resolved("oncall-slack"))
        await drain(outbox, start=T0 + timedelta(minutes=9))
    firing, resolved = server.bodies("/services/T/B/x")
    assert firing["text"] == "[FIRING] ApiLatencyP95High: p95 0.812s on /properties"
    header, section, fields, context, runbook = firing["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "FIRING: ApiLatencyP95High"},
    }
    assert section == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "p95 0.812s on /properties"},
    }
    assert fields == {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Value*\n0.812 > 0.5"},
            {"type": "mrkdwn", "text": "*Since*\n2026-11-29T02:05:00Z"},
            {"type": "mrkdwn", "text": "*Where*\nroute /properties, instance api-1:8000"},
        ],
    }
    assert context["type"] == "context"
    text = context["elements"][0]["text"]
    assert "instance=api-1:8000" in text and "route=/properties" in text
    assert "dedup key" in text
    assert runbook["text"]["text"] == "<https://runbooks.example/latency|Runbook>"
    assert resolved["text"].startswith("[RESOLVED] ApiLatencyP95High")
    assert "resolved 2026-11-29T02:09:00Z" in resolved["blocks"][3]["elements"][0]["text"]


async def test_slack_429_waits_for_retry_after_and_a_400_is_not_retried() -> None:
    async with recording_server() as server, httpx.AsyncClient() as client:
        server.answers.append(
            Response("rate_limited", status_code=429, headers={"Retry-After": "7"})
        )
        config = SlackConfig(url=SecretStr(f"{server.base}/hook"))
        outbox = Outbox(
            notifiers={"slack": SlackNotifier(config, client=client)},
            ledger=Ledger(),
            retry=RetryPolicy(jitter=0),
        )
        first, _ = firing_and_resolved("slack")
        start = first.created_at
        outbox.enqueue([first])
        await outbox.deliver(now=start)
        assert len(server.posts) == 1
        for second in range(1, 7):  # backoff alone would retry after 1 s; Slack asked for 7
            await outbox.deliver(now=start + timedelta(seconds=second))
        assert len(server.posts) == 1
        await outbox.deliver(now=start + timedelta(seconds=7))
        assert len(server.posts) == 2 and outbox.pending() == 0
        server.answers.append(Response("invalid_payload", status_code=400))
        outbox.enqueue(firing_and_resolved("slack")[1:])
        await drain(outbox, start=T0 + timedelta(minutes=10))
    assert len(server.posts) == 3 and outbox.pending() == 0  # abandoned, not retried


async def test_pagerduty_trigger_then_resolve_with_the_same_dedup_key() -> None:
    async with recording_server(status=202) as server, httpx.AsyncClient() as client:
        config = PagerDutyConfig(
            routing_key=SecretStr("R0UTINGKEY"), url=f"{server.base}/v2/enqueue"
        )
        outbox = Outbox(
            notifiers={"pagerduty": PagerDutyNotifier(config, client=client)}, ledger=Ledger()
        )
        outbox.enqueue(firing_and_resolved("pagerduty"))
        await drain(outbox, start=T0 + timedelta(minutes=9))
    trigger, resolve = server.bodies("/v2/enqueue")
    fingerprint = alert(AlertState.FIRING, at=T0).fingerprint
    assert trigger == {
        "routing_key": "R0UTINGKEY",
        "event_action": "trigger",
        "dedup_key": fingerprint,
        "client": "dynoscope",
        "links": [{"href": "https://runbooks.example/latency", "text": "Runbook"}],
        "payload": {
            "summary": "p95 0.812s on /properties",
            "source": "api-1:8000",
            "severity": "critical",  # severity=page
            "timestamp": "2026-11-29T02:05:00Z",
            "component": "/properties",
            "class": "ApiLatencyP95High",
            "custom_details": {
                "labels": dict(LABELS),
                "annotations": dict(ANNOTATIONS),
                "value": 0.812,
                "threshold": 0.5,
                "condition": "0.812 > 0.5",
                "since": "2026-11-29T02:05:00Z",
                "where": "route /properties, instance api-1:8000",
            },
        },
    }
    assert resolve == {
        "routing_key": "R0UTINGKEY",
        "event_action": "resolve",
        "dedup_key": fingerprint,
    }


async def test_pagerduty_retries_429_and_5xx_but_not_400() -> None:
    async with recording_server(status=202) as server, httpx.AsyncClient() as client:
        server.answers.extend([Response(status_code=429), Response(status_code=502)])
        config = PagerDutyConfig(routing_key=SecretStr("k"), url=f"{server.base}/v2/enqueue")
        outbox = Outbox(
            notifiers={"pagerduty": PagerDutyNotifier(config, client=client)}, ledger=Ledger()
        )
        outbox.enqueue(firing_and_resolved("pagerduty")[:1])
        await drain(outbox, start=T0 + timedelta(minutes=5))
        assert len(server.posts) == 3 and outbox.pending() == 0
        server.answers.append(Response(status_code=400))
        outbox.enqueue(firing_and_resolved("pagerduty")[1:])
        await drain(outbox, start=T0 + timedelta(minutes=10))
    assert len(server.posts) == 4 and outbox.pending() == 0


async def test_webhook_resolve_carries_the_same_group_key() -> None:
    async with recording_server() as server, httpx.AsyncClient() as client:
        config = WebhookConfig(name="hook", url=SecretStr(f"{server.base}/hook"))
        outbox = Outbox(notifiers={"hook": WebhookNotifier(config, client=client)}, ledger=Ledger())
        outbox.enqueue(firing_and_resolved("hook"))
        await drain(outbox, start=T0 + timedelta(minutes=9))
    firing, resolved = server.bodies("/hook")
    fingerprint = alert(AlertState.FIRING, at=T0).fingerprint
    for body, status in ((firing, "firing"), (resolved, "resolved")):
        assert body["version"] == "4" and body["receiver"] == "hook"
        assert body["groupKey"] == fingerprint and body["status"] == status
        assert body["commonLabels"] == dict(LABELS)
        (one,) = body["alerts"]
        assert one["fingerprint"] == fingerprint and one["startsAt"] == "2026-11-29T02:05:00Z"
    assert firing["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["alerts"][0]["endsAt"] == "2026-11-29T02:09:00Z"


async def test_jitter_spreads_retries_within_its_bound() -> None:
    async with recording_server(status=503) as server, httpx.AsyncClient() as client:
        config = WebhookConfig(url=SecretStr(f"{server.base}/hook"))
        delays = set()
        for _ in range(20):
            ledger = Ledger()
            outbox = Outbox(
                notifiers={"webhook": WebhookNotifier(config, client=client)},
                ledger=ledger,
                retry=RetryPolicy(jitter=0.5),
            )
            first, _ = firing_and_resolved("webhook")
            outbox.enqueue([first])
            await outbox.deliver(now=first.created_at)
            (retried,) = ledger.take().deliveries.values()
            assert retried.next_attempt_at is not None
            delay = (retried.next_attempt_at - first.created_at).total_seconds()
            assert 1.0 <= delay <= 1.5
            delays.add(delay)
    assert len(delays) > 1


async def test_a_receiver_down_gets_everything_once_back_and_too_old_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    async with recording_server(status=503) as server, httpx.AsyncClient() as client:
        config = WebhookConfig(url=SecretStr(f"{server.base}/hook"))
        outbox = Outbox(
            notifiers={"webhook": WebhookNotifier(config, client=client)},
            ledger=Ledger(),
            metrics=metrics,
            retry=RetryPolicy(
                max_attempts=None, max_age=timedelta(minutes=10), max_backoff=timedelta(minutes=1)
            ),
        )
        firing, resolved = firing_and_resolved("webhook")
        outbox.enqueue([firing, resolved])
        start = firing.created_at
        for second in range(0, 9 * 60, 5):  # down for nine minutes: retried, never dropped
            await outbox.deliver(now=start + timedelta(seconds=second))
        assert outbox.pending() == 2 and len(server.posts) > 5
        server.status = 200
        for second in range(9 * 60, 11 * 60, 5):
            await outbox.deliver(now=start + timedelta(seconds=second))
        statuses = [body["status"] for _, body in server.posts]
        assert statuses[-2:] == ["firing", "resolved"] and outbox.pending() == 0
        server.status = 503
        late, _ = firing_and_resolved("webhook")
        outbox.enqueue([late])
        with caplog.at_level(logging.ERROR, logger="dynoscope.alerts"):
            for second in range(0, 12 * 60, 5):
                await outbox.deliver(now=late.created_at + timedelta(seconds=second))
    assert outbox.pending() == 0
    sample = metrics.registry.get_sample_value
    assert (
        sample("dynoscope_notifications_total", {"receiver": "webhook", "outcome": "expired"}) == 1
    )
    assert "given up after" in caplog.text and "0:10:" in caplog.text


async def test_a_grafana_link_reaches_every_receiver() -> None:
    template = "https://grafana.example/d/scaling?var-route={{ labels.route | urlencode }}"
    link = "https://grafana.example/d/scaling?var-route=/properties"
    async with recording_server(status=202) as server, httpx.AsyncClient() as client:
        notifiers = {
            "slack": SlackNotifier(
                SlackConfig(url=SecretStr(f"{server.base}/slack")), client=client
            ),
            "pagerduty": PagerDutyNotifier(
                PagerDutyConfig(routing_key=SecretStr("k"), url=f"{server.base}/pd"), client=client
            ),
            "webhook": WebhookNotifier(
                WebhookConfig(url=SecretStr(f"{server.base}/hook")), client=client
            ),
        }
        outbox = Outbox(notifiers=notifiers, ledger=Ledger(), links=Links(grafana=template))
        fired = T0 + timedelta(minutes=5)
        outbox.notify([Notification(alert(AlertState.FIRING, at=fired), fired)], now=fired)
        await drain(outbox, start=fired, seconds=2)
    (slack,) = server.bodies("/slack")
    (pd,) = server.bodies("/pd")
    (hook,) = server.bodies("/hook")
    assert f"<{link}|Dashboard>" in slack["blocks"][-1]["text"]["text"]
    assert {"href": link, "text": "Dashboard"} in pd["links"]
    assert hook["alerts"][0]["generatorURL"] == link


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EXAMPLES = Examples(
    trace_ids=(TRACE,),
    queries=(SlowQuery("9f2c1a0b3d4e5f60", "SELECT", "properties", 1.234, TRACE),),
)


async def test_context_and_links_reach_slack_pagerduty_webhook_and_console(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace_url = f"http://jaeger:16686/trace/{TRACE}"
    async with recording_server(status=202) as server, httpx.AsyncClient() as client:
        notifiers: dict[str, Notifier] = {
            "slack": SlackNotifier(
                SlackConfig(url=SecretStr(f"{server.base}/slack")), client=client
            ),
            "pagerduty": PagerDutyNotifier(
                PagerDutyConfig(routing_key=SecretStr("k"), url=f"{server.base}/pd"), client=client
            ),
            "webhook": WebhookNotifier(
                WebhookConfig(url=SecretStr(f"{server.base}/hook")), client=client
            ),
            "console": ConsoleNotifier(),
        }
        outbox = Outbox(
            notifiers=notifiers,
            ledger=Ledger(),
            links=Links(
                grafana="https://grafana.example/d/scaling",
                trace="http://jaeger:16686/trace/{{ trace_id }}",
            ),
        )
        fired = T0 + timedelta(minutes=5)
        firing = Notification(alert(AlertState.FIRING, at=fired), fired, context=EXAMPLES)
        with caplog.at_level(logging.WARNING, logger="dynoscope.alerts"):
            outbox.notify([firing], now=fired)
            await drain(outbox, start=fired, seconds=2)
    (slack,) = server.bodies("/slack")
    (pd,) = server.bodies("/pd")
    (hook,) = server.bodies("/hook")
    texts = [block["text"]["text"] for block in slack["blocks"] if "text" in block]
    assert "<https://runbooks.example/latency|Runbook> · " in texts[-3]
    assert texts[-2] == f"*Example slow traces*\n<{trace_url}|{TRACE}>"
    assert texts[-1] == (
        "*Slowest statements*\n```1.234s SELECT properties fingerprint 9f2c1a0b3d4e5f60"
        f" trace {TRACE}```"
    )
    assert pd["links"] == [
        {"href": "https://runbooks.example/latency", "text": "Runbook"},
        {"href": "https://grafana.example/d/scaling", "text": "Dashboard"},
        {"href": trace_url, "text": f"Trace {TRACE}"},
    ]
    details = pd["payload"]["custom_details"]
    assert details["condition"] == "0.812 > 0.5" and details["threshold"] == 0.5
    assert details["example_traces"] == [trace_url]
    assert details["slowest_queries"] == [
        f"1.234s SELECT properties fingerprint 9f2c1a0b3d4e5f60 trace {TRACE}"
    ]
    (one,) = hook["alerts"]
    assert one["generatorURL"] == "https://grafana.example/d/scaling"
    assert one["context"]["trace_ids"] == [TRACE]
    assert one["context"]["queries"][0]["fingerprint"] == "9f2c1a0b3d4e5f60"
    assert one["links"]["traces"] == {TRACE: trace_url}
    assert one["links"]["runbook"] == "https://runbooks.example/latency"
    assert (one["value"], one["op"], one["threshold"]) == (0.812, ">", 0.5)
    line = json.loads(caplog.records[-1].getMessage())
    assert line["condition"] == "0.812 > 0.5" and line["context"]["trace_ids"] == [TRACE]
    assert line["links"]["traces"] == {TRACE: trace_url}


async def test_without_context_or_links_the_messages_have_no_empty_sections() -> None:
    async with recording_server(status=202) as server, httpx.AsyncClient() as client:
        notifiers: dict[str, Notifier] = {
            "slack": SlackNotifier(
                SlackConfig(url=SecretStr(f"{server.base}/slack")), client=client
            ),
            "pagerduty": PagerDutyNotifier(
                PagerDutyConfig(routing_key=SecretStr("k"), url=f"{server.base}/pd"), client=client
            ),
        }
        outbox = Outbox(notifiers=notifiers, ledger=Ledger())
        fired = T0 + timedelta(minutes=5)
        bare = replace(alert(AlertState.FIRING, at=fired), annotations=(), op=None, threshold=None)
        outbox.notify([Notification(bare, fired)], now=fired)
        await drain(outbox, start=fired, seconds=2)
    (slack,) = server.bodies("/slack")
    (pd,) = server.bodies("/pd")
    assert [block["type"] for block in slack["blocks"]] == [
        "header",
        "section",
        "section",
        "context",
    ]
    assert slack["blocks"][2]["fields"][0]["text"] == "*Value*\n0.812"
    assert "links" not in pd
    details = pd["payload"]["custom_details"]
    assert "example_traces" not in details and "slowest_queries" not in details
    assert details["condition"] == "0.812"
