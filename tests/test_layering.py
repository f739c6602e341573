"""The import rules of ``docs/architecture.md``: the reusable packages stand on their own
(none imports the service, ``api``; the shared database plumbing, ``dbkit``, imports nothing
of ours); nothing imports the composition root (``dynoscope``);
the ops tools are clients (no ``api``) that the engine never imports; the alert engine's pure
core imports no I/O library; notifiers do not reach into the store; and ``instrument_app``
works on any FastAPI app."""

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
    for package in ("instrumentation", "exporters", "alerts", "dbkit"):
        for module, names in imports(package).items():
            service = sorted(n for n in names if n == "api" or n.startswith("api."))
            assert not service, f"{module} imports {service}"


# Libraries that talk to the outside world: a module of the pure core imports none of them.
IO_LIBRARIES = frozenset(
    {
        "aiosqlite",
        "alembic",
        "apscheduler",
        "asyncpg",
        "fastapi",
        "httpx",
        "psutil",
        "redis",
        "sqlalchemy",
        "starlette",
        "uvicorn",
    }
)
PURE_CORE = (
    "alerts/errors.py",
    "alerts/rules/",
    "alerts/engine/state.py",
    "alerts/engine/ledger.py",
    "alerts/engine/evaluator.py",
    "alerts/engine/query.py",
    "alerts/engine/window.py",
    "alerts/engine/context.py",
    "alerts/engine/election.py",
    "alerts/engine/sources/source.py",
    "alerts/engine/sources/local.py",
    "alerts/silences/silence.py",
    "alerts/silences/matchers.py",
    "alerts/silences/recurrence.py",
    "alerts/delivery/notification.py",
    "alerts/delivery/routing.py",
    "alerts/delivery/grouping.py",
    "alerts/delivery/links.py",
    "alerts/delivery/outbox.py",
    "alerts/delivery/stages.py",
    "alerts/delivery/pipeline.py",
    "alerts/delivery/resend.py",
    "alerts/delivery/notifiers/notifier.py",
    "alerts/store/writer.py",
)


def _top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


OURS = frozenset(
    {
        *("api", "instrumentation", "exporters", "alerts", "dashboards", "ops", "dynoscope"),
        *("deploy", "console"),
    }
)


def test_the_shared_database_plumbing_imports_nothing_of_ours() -> None:
    for module, names in imports("dbkit").items():
        assert not _top(names) & OURS, f"{module} imports {sorted(_top(names) & OURS)}"


def test_the_console_reads_the_engine_and_never_the_service() -> None:
    for module, names in imports("console").items():
        assert not {"api", "dynoscope"} & _top(names), f"{module} imports the service"
    for package in ("instrumentation", "exporters", "alerts", "dashboards", "ops", "dbkit"):
        for module, names in imports(package).items():
            assert "console" not in _top(names), f"{module} imports the console"


def test_nothing_imports_the_composition_root() -> None:
    for package in ("api", "instrumentation", "exporters", "alerts", "dashboards", "ops"):
        for module, names in imports(package).items():
            assert "dynoscope" not in _top(names), f"{module} imports the composition root"


def test_the_ops_tools_are_clients_and_the_engine_does_not_need_them() -> None:
    for module, names in imports("ops").items():
        assert "api" not in _top(names), f"{module} imports the service"
    for package in ("api", "instrumentation", "exporters", "alerts", "dashboards"):
        for module, names in imports(package).items():
            assert "ops" not in _top(names), f"{module} imports the ops tools"


def test_the_pure_core_imports_no_io_library() -> None:
    modules = imports("alerts")
    core = [m for m in modules if any(m == p or m.startswith(p) for p in PURE_CORE)]
    assert len(core) >= len(PURE_CORE)  # every entry names something that exists
    for module in core:
        found = sorted(_top(modules[module]) & IO_LIBRARIES)
        assert not found, f"{module} is in the pure core and imports {found}"


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
