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
