"""``/alerts`` and ``/alerts/history`` are admin-only and off by default; embedded mode runs
the engine inside the API."""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI

from alerts.engine.ledger import Ledger
from alerts.engine.monitor import Monitor
from alerts.engine.query import Sample, Vector
from alerts.engine.state import Evaluation, evaluate
from alerts.http.app import runs_in_process
from alerts.http.state import engine_state
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.store.lock import lock_path
from alerts.store.migrate import upgrade
from alerts.store.store import Store
from api.settings import Settings
from tests.alerts.harness import eventually
from tests.support.stack import running_app

TOKEN = "admin-token-" + "y" * 20
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def record(app: FastAPI, evaluations: dict[str, Evaluation]) -> None:
    """What an engine decided: in the in-process engine's memory, or (engine elsewhere) in
    the store the API reads."""
    monitor: Monitor | None = engine_state(app).monitor
    if monitor is not None:
        monitor.ledger.record(evaluations, now=T0)
        return
    store: Store = engine_state(app).store
    await upgrade(store.engine)
    ledger = Ledger()
    ledger.record(evaluations, now=T0)
    await store.write(ledger.take())


async def test_alert_routes_do_not_exist_without_an_admin_token(environ: dict[str, str]) -> None:
    async with running_app(environ) as api:
        assert (await api.client.get("/alerts")).status_code == 404
        assert (await api.client.get("/alerts/history")).status_code == 404


async def test_alert_routes_need_the_admin_token(environ: dict[str, str]) -> None:
    async with running_app({**environ, "ADMIN_TOKEN": TOKEN}) as api:
        rule = Rule(
            name="Hot",
            group="g",
            query=RawQuery("x"),
            op=Op.GT,
            threshold=0,
            labels=(("severity", "page"),),
            annotations=(("summary", "hot {{ value }}"),),
        )
        outcome = evaluate(rule, (), result=Vector((Sample((("instance", "a"),), 2.0),)), now=T0)
        await record(api.app, {"Hot": outcome})

        assert (await api.client.get("/alerts")).status_code == 401
        wrong = {"Authorization": "Bearer not-it"}
        assert (await api.client.get("/alerts", headers=wrong)).status_code == 403
        admin = {"Authorization": f"Bearer {TOKEN}"}
        response = await api.client.get("/alerts", headers=admin)
        assert response.status_code == 200
        (alert,) = response.json()["alerts"]
        assert alert["alertname"] == "Hot" and alert["state"] == "firing"
        assert alert["labels"] == {"alertname": "Hot", "instance": "a", "severity": "page"}
        assert alert["annotations"] == {"summary": "hot 2.0"}
        assert alert["active_at"] == "2026-11-26T09:00:00Z"
        history = (await api.client.get("/alerts/history", headers=admin)).json()["history"]
        assert [(h["alertname"], h["state"]) for h in history] == [("Hot", "firing")]
        assert (await api.client.get("/alerts/history?limit=0", headers=admin)).status_code == 422


async def test_embedded_mode_runs_the_engine_in_the_api(sqlite_environ: dict[str, str]) -> None:
    async with running_app(sqlite_environ) as api:
        monitor = engine_state(api.app).monitor
        assert isinstance(monitor, Monitor)
        assert monitor.source.name == "local"
        assert {r.name for r in monitor.rules.rules} >= {"DatabaseSlowQuery", "Watchdog"}


async def test_with_prometheus_the_api_leaves_evaluation_to_alerts_run(
    sqlite_environ: dict[str, str],
) -> None:
    environ = {**sqlite_environ, "PROMETHEUS_URL": "http://127.0.0.1:9"}
    async with running_app(environ) as api:
        assert engine_state(api.app).monitor is None


async def test_bad_rules_leave_the_api_serving(sqlite_environ: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "rules.yml"
    bad.write_text("groups: [{name: g, rules: [{alert: A, signal: nope}]}]")
    async with running_app({**sqlite_environ, "ALERT_RULES_PATH": str(bad)}) as api:
        assert engine_state(api.app).monitor is None
        assert (await api.client.get("/healthz")).status_code == 200


async def test_one_engine_per_store_however_many_api_processes(
    sqlite_environ: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # flock locks of two open files conflict even in one process: two apps act as two workers.
    with caplog.at_level(logging.INFO, logger="dynoscope.alerts"):
        async with running_app(sqlite_environ) as first, running_app(sqlite_environ) as second:
            assert isinstance(engine_state(first.app).monitor, Monitor)
            assert engine_state(second.app).monitor is None
    refused = [r for r in caplog.records if "another process runs it" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.INFO
    async with running_app(sqlite_environ) as restarted:  # the lock went with the first app
        assert isinstance(engine_state(restarted.app).monitor, Monitor)


def host_environ(
    environ: dict[str, str], files: Path, store_url: str, *, lease: str
) -> dict[str, str]:
    """An API host of its own (database and trace file under ``files``) on a shared store."""
    return {
        **environ,
        "DATABASE_URL": f"sqlite:///{files}.db",
        "DYNOSCOPE_TRACES_FILE": f"{files}.jsonl",
        "ALERT_STORE_URL": store_url,
        "ALERT_LEASE_SECONDS": lease,
    }


async def test_in_process_engines_on_a_shared_store_elect_one_leader(
    sqlite_environ: dict[str, str], clean_postgres: str, tmp_path: Path
) -> None:
    # Two apps with separate files stand for two hosts: no lock file can see the other, only
    # the lease in the PostgreSQL store they share.
    def host(name: str) -> dict[str, str]:
        return host_environ(sqlite_environ, tmp_path / name, clean_postgres, lease="1.5")

    async with running_app(host("a")) as first, running_app(host("b")) as second:
        engines = [engine_state(first.app).monitor, engine_state(second.app).monitor]
        assert all(isinstance(engine, Monitor) for engine in engines)
        assert [engine.leading for engine in engines].count(True) == 1
        gauges = [engine.metrics.scheduler_leader._value.get() for engine in engines]
        assert sorted(gauges) == [0, 1]
        leader, standby = engines if engines[0].leading else engines[::-1]
        await leader.stop()  # the leader's process goes away; it gives up the lease
        await eventually(
            lambda: standby.leading, seconds=5, what="the standby takes the lease over"
        )
        assert standby.metrics.scheduler_leader._value.get() == 1


async def test_a_standby_engine_answers_with_what_the_leader_decided(
    sqlite_environ: dict[str, str], clean_postgres: str, tmp_path: Path
) -> None:
    # Behind a load balancer /alerts may reach either host: the standby, which knows nothing
    # itself, must answer from the store the leader keeps, not from its empty memory.
    def host(name: str) -> dict[str, str]:
        environ = host_environ(sqlite_environ, tmp_path / name, clean_postgres, lease="5")
        return {**environ, "ADMIN_TOKEN": TOKEN}

    rule = Rule(name="Hot", group="g", query=RawQuery("x"), op=Op.GT, threshold=0)
    outcome = evaluate(rule, (), result=Vector((Sample((("instance", "a"),), 2.0),)), now=T0)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    async with running_app(host("a")) as first, running_app(host("b")) as second:
        apis = [first, second]
        leader: Monitor = next(
            engine_state(api.app).monitor for api in apis if engine_state(api.app).monitor.leading
        )
        leader.ledger.record({"Hot": outcome}, now=T0)
        assert await leader.writer.flush(now=T0)
        for api in apis:
            alerts = (await api.client.get("/alerts", headers=admin)).json()["alerts"]
            assert [(a["alertname"], a["state"]) for a in alerts if a["alertname"] == "Hot"] == [
                ("Hot", "firing")
            ], engine_state(api.app).monitor.leading
            history = (await api.client.get("/alerts/history", headers=admin)).json()["history"]
            assert ("Hot", "firing") in [(h["alertname"], h["state"]) for h in history]


async def test_instances_sharing_redis_and_postgresql_leave_evaluation_to_alerts_run(
    shared_environ: dict[str, str],
) -> None:
    async with running_app(shared_environ) as api:
        assert engine_state(api.app).monitor is None


@pytest.mark.parametrize(
    ("extra", "runs"),
    [
        ({}, True),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, False),
        ({"PROMETHEUS_URL": "http://127.0.0.1:9"}, False),
    ],
)
def test_only_fully_embedded_mode_runs_the_engine_in_process(
    sqlite_environ: dict[str, str], extra: dict[str, str], runs: bool
) -> None:
    settings = Settings.from_env({**sqlite_environ, **extra})
    assert runs_in_process(settings.alerts, embedded=settings.embedded) is runs


def test_the_lock_file_is_per_store(tmp_path: Path) -> None:
    assert lock_path(f"sqlite+aiosqlite:///{tmp_path}/api.db") == tmp_path / "api.db.alerts.lock"
    assert lock_path("sqlite+aiosqlite:///:memory:") is None  # private to its process
    one = lock_path("postgresql+asyncpg://app@db:5432/one")
    two = lock_path("postgresql+asyncpg://app@db:5432/two")
    assert one is not None and one.parent == Path(tempfile.gettempdir()) and one != two
