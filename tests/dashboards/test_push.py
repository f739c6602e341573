"""``dynoscope dashboards push`` against a local HTTP server implementing the Grafana API routes
it calls (folders, dashboards/db, search), which checks every payload it receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dashboards.catalogue import DIRECTORY, expected
from dashboards.errors import PushError
from dashboards.push import Folder, connect, push
from dynoscope.cli import main as cli
from tests.support.stack import free_port, serving

TOKEN = "glsa_local-test-token-" + "q" * 16
FOLDER = Folder(uid="dynoscope", title="Dynoscope")


@dataclass
class FakeGrafana:
    """What a Grafana holds after the calls: folders and dashboards by uid, and each call."""

    url: str
    folders: dict[str, str] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fake_grafana() -> AsyncIterator[FakeGrafana]:
    port = free_port()
    grafana = FakeGrafana(url=f"http://127.0.0.1:{port}")

    def authorised(request: Request) -> bool:
        grafana.calls.append(f"{request.method} {request.url.path}")
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    def refused() -> Response:
        return JSONResponse({"message": "invalid API key"}, status_code=401)

    async def get_folder(request: Request) -> Response:
        if not authorised(request):
            return refused()
        uid = request.path_params["uid"]
        if uid not in grafana.folders:
            return JSONResponse({"message": "folder not found"}, status_code=404)
        return JSONResponse({"uid": uid, "title": grafana.folders[uid]})

    async def create_folder(request: Request) -> Response:
        if not authorised(request):
            return refused()
        body = await request.json()
        assert set(body) == {"title", "uid"}, body
        assert body["uid"] not in grafana.folders, "folder created twice"
        grafana.folders[body["uid"]] = body["title"]
        return JSONResponse({"uid": body["uid"], "title": body["title"]})

    async def save_dashboard(request: Request) -> Response:
        if not authorised(request):
            return refused()
        body = await request.json()
        dashboard = body["dashboard"]
        assert body["overwrite"] is True and body["folderUid"] in grafana.folders, body
        assert dashboard["id"] is None and dashboard["uid"] and dashboard["title"], dashboard
        assert dashboard["schemaVersion"] >= 39 and "${DS_" not in json.dumps(dashboard)
        previous = grafana.dashboards.get(dashboard["uid"], {}).get("version", 0)
        stored = {**dashboard, "version": previous + 1, "folderUid": body["folderUid"]}
        grafana.dashboards[dashboard["uid"]] = stored
        url = f"/d/{dashboard['uid']}/{dashboard['title'].lower().replace(' ', '-')}"
        return JSONResponse(
            {"status": "success", "uid": dashboard["uid"], "url": url, "version": previous + 1}
        )

    async def search(request: Request) -> Response:
        if not authorised(request):
            return refused()
        assert request.query_params["type"] == "dash-db"
        folder = request.query_params.get("folderUIDs")
        found = [
            {"uid": uid, "title": d["title"], "type": "dash-db", "folderUid": d["folderUid"]}
            for uid, d in grafana.dashboards.items()
            if folder is None or d["folderUid"] == folder
        ]
        return JSONResponse(found)

    app = Starlette(
        routes=[
            Route("/api/folders/{uid}", get_folder, methods=["GET"]),
            Route("/api/folders", create_folder, methods=["POST"]),
            Route("/api/dashboards/db", save_dashboard, methods=["POST"]),
            Route("/api/search", search, methods=["GET"]),
        ]
    )
    async with serving(app, port):
        yield grafana


def models() -> list[dict[str, Any]]:
    return [json.loads(text) for text in expected(DIRECTORY).values()]


async def test_push_creates_the_folder_once_and_overwrites_by_uid() -> None:
    async with fake_grafana() as grafana:
        api = connect(grafana.url, token=TOKEN)
        first = await asyncio.to_thread(push, models(), api=api, folder=FOLDER, url=grafana.url)
        second = await asyncio.to_thread(push, models(), api=api, folder=FOLDER, url=grafana.url)
    assert grafana.folders == {"dynoscope": "Dynoscope"}
    assert {p.uid for p in first} == {"dynoscope-scaling-health", "dynoscope-alert-engine"}
    assert [p.version for p in first] == [1, 1] and [p.version for p in second] == [2, 2]
    assert set(grafana.dashboards) == {p.uid for p in first}
    assert grafana.calls.count("POST /api/folders") == 1
    assert grafana.calls.count("POST /api/dashboards/db") == 4
    for model in models():
        stored = grafana.dashboards[model["uid"]]
        assert {k: v for k, v in stored.items() if k not in ("id", "version", "folderUid")} == {
            k: v for k, v in model.items() if k != "id"
        }


async def test_a_refused_token_is_a_clear_error_without_the_token() -> None:
    async with fake_grafana() as grafana:
        api = connect(grafana.url, token="wrong-" + TOKEN)
        with pytest.raises(PushError) as caught:
            await asyncio.to_thread(push, models(), api=api, folder=FOLDER, url=grafana.url)
    message = str(caught.value)
    assert caught.value.status == 401 and "token was refused" in message
    assert grafana.url in message and TOKEN not in message
    assert grafana.dashboards == {}


async def test_an_unreachable_grafana_is_a_clear_error_without_credentials() -> None:
    url = f"http://admin:hunter2-secret@127.0.0.1:{free_port()}"
    api = connect(url, token=TOKEN)
    with pytest.raises(PushError) as caught:
        await asyncio.to_thread(push, models(), api=api, folder=FOLDER, url=url)
    message = str(caught.value)
    assert "could not reach Grafana" in message and "127.0.0.1" in message
    assert TOKEN not in message and "hunter2" not in message


@pytest.mark.parametrize("url", ["grafana.local:3000", "ftp://grafana", "http://"])
def test_a_malformed_url_is_refused_before_any_request(url: str) -> None:
    with pytest.raises(PushError, match="not an http"):
        connect(url, token=TOKEN)


async def test_cli_push(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    async with fake_grafana() as grafana:
        code = await asyncio.to_thread(
            cli, ["dashboards", "push", "--url", grafana.url, "--folder-uid", "ops"]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert "pushed dynoscope-scaling-health (version 1)" in out
        assert grafana.folders == {"ops": "Dynoscope"}
        monkeypatch.setenv("GRAFANA_TOKEN", "wrong")
        code = await asyncio.to_thread(cli, ["dashboards", "push", "--url", grafana.url])
    err = capsys.readouterr().err
    assert code == 1 and "token was refused" in err and "wrong" not in err
