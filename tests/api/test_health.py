from __future__ import annotations

from tests.support.stack import Running


async def test_healthz_needs_no_dependency(api: Running) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(api: Running) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    expected = "ok" if api.services.settings.redis_url else "in-process"
    assert checks["redis"] == expected


async def test_a_down_database_gives_503_and_readyz_names_it(
    sqlite_environ: dict[str, str],
) -> None:
    from tests.support.stack import free_port, running_app_without_migrations

    environ = {
        **sqlite_environ,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        "READY_TIMEOUT": "0.5",
    }
    async with running_app_without_migrations(environ) as api:
        assert (await api.client.get("/healthz")).status_code == 200
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["database"]
        listed = await api.client.get("/properties")
        assert listed.status_code == 503
        assert listed.json()["error"] == "database_unavailable"
        assert listed.headers["retry-after"] == "1"
