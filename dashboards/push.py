"""Upload the dashboards to Grafana through its HTTP API (grafana-client).

Into one folder, found or created by ``folderUid``; each dashboard overwrites the one with its
``uid``, and a search afterwards confirms each landed in the folder. Errors name the URL
(without any credentials in it) and Grafana's answer, never the token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.errors import PushError

MESSAGE = "dynoscope dashboards push"


@dataclass(frozen=True)
class Folder:
    uid: str
    title: str


@dataclass(frozen=True)
class Pushed:
    uid: str
    url: str
    version: int


def safe_url(url: str) -> str:
    """``url`` without user information, for messages.

    >>> safe_url("https://admin:secret@grafana.example:3000/sub")
    'https://grafana.example:3000/sub'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def connect(url: str, *, token: str | None, timeout: float = 10.0) -> GrafanaApi:
    """A client for the Grafana at ``url``; a malformed URL is a ``PushError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError("not an http(s) URL with a host", url=safe_url(url) or "''")
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    return api


def _explain(exc: Exception, *, url: str) -> PushError:
    if isinstance(exc, GrafanaException) and exc.status_code:
        hints = {401: "the token was refused", 403: "the token may not write dashboards"}
        detail = hints.get(exc.status_code) or _message(exc.response) or "request refused"
        return PushError(detail, url=url, status=exc.status_code)
    return PushError(f"could not reach Grafana ({type(exc).__name__})", url=url)


def _message(response: Any) -> str:
    if isinstance(response, Mapping):
        return str(response.get("message", ""))
    return ""


def _ensure_folder(api: GrafanaApi, folder: Folder) -> None:
    try:
        api.folder.get_folder(folder.uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(folder.title, uid=folder.uid)


def push(
    models: Sequence[Mapping[str, Any]], *, api: GrafanaApi, folder: Folder, url: str
) -> list[Pushed]:
    """Upload ``models`` (Grafana dashboard JSON) into ``folder``, overwriting by uid."""
    where = safe_url(url)
    try:
        _ensure_folder(api, folder)
        pushed = []
        for model in models:
            body = {
                "dashboard": {**model, "id": None},
                "folderUid": folder.uid,
                "overwrite": True,
                "message": MESSAGE,
            }
            answer = api.dashboard.update_dashboard(body)
            pushed.append(Pushed(uid=answer["uid"], url=answer["url"], version=answer["version"]))
        found = api.search.search_dashboards(type_="dash-db", folder_uids=[folder.uid])
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise _explain(exc, url=where) from None
    landed = {item["uid"] for item in found if item.get("folderUid") == folder.uid}
    missing = [item.uid for item in pushed if item.uid not in landed]
    if missing:
        raise PushError(f"not found in folder {folder.uid} after upload: {missing}", url=where)
    return pushed
