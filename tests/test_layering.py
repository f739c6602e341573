"""The reusable packages stand on their own: none imports the service (``api``), notifiers
do not reach into the store, and ``instrument_app`` works on any FastAPI app."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
from fastapi import FastAPI

from instrumentation import instrument_app
from instrumentation.settings import TelemetrySettings

ROOT = Path(__file__).parents[1]


def imports(package: str) -> dict[str, set[str]]:
    """Module path → every module it imports (also inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_reusable_packages_never_import_the_service() -> None:
    for package in ("instrumentation", "exporters", "alerts"):
        for module, names in imports(package).items():
            service = sorted(n for n in names if n == "api" or n.startswith("api."))
            assert not service, f"{module} imports {service}"


def test_notifiers_do_not_reach_into_the_store() -> None:
    for module, names in imports("alerts/delivery/notifiers").items():
        assert not {"alerts.store.store", "alerts.store.schema", "sqlalchemy"} & names, module


async def test_instrument_app_works_on_any_fastapi_app() -> None:
    app = FastAPI()

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    settings = TelemetrySettings.from_env({"OTEL_SDK_DISABLED": "true"})
    telemetry = instrument_app(app, settings, version="9.9", lifespan=True)
    assert telemetry is not None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/hello/ada")).status_code == 200
            scrape = (await client.get("/metrics")).text
    assert 'route="/hello/{name}"' in scrape
    assert 'version="9.9"' in scrape
