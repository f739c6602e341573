"""The other engines of a deployment, asked over HTTP what they know.

An engine that cannot reach its store asks its peers (``ALERT_PEERS``: their base URLs) before
it acts on its own: if any of them reaches the store, a leader exists or will, and the engine
stays quiet (``alerts.engine.election``). Once the store is back, the engine that leads asks
its peers what they decided meanwhile, to write it to the store once and not to send again
what they sent (``alerts.engine.monitor``).

Each engine answers, behind ``METRICS_TOKEN`` when one is set (as ``/metrics`` is):

- ``PEER_PATH`` (``/-/engine``): its mode, whether its last attempt reached the store, and
  the lease token it last saw (``status_json``);
- ``DECISIONS_PATH`` (``/-/engine/decisions?since=ISO``): its transitions since then and the
  deliveries it completed that its store has not seen (``decisions_json``).

    peers = Peers(["http://engine-b:9464", "http://engine-c:9464"], client=client, timeout=1)
    await peers.see_store()      # False when none answers, or none reaches the store
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from alerts.delivery.notification import Delivery, iso
from alerts.engine.state import AlertState
from alerts.store.store import HistoryEntry

log = logging.getLogger("dynoscope.alerts")

PEER_PATH = "/-/engine"
DECISIONS_PATH = "/-/engine/decisions"

Delivered = tuple[str, str, str]  # receiver, dedup key, status


def decisions_json(
    history: Iterable[HistoryEntry], delivered: Iterable[Delivery]
) -> dict[str, Any]:
    return {
        "history": [
            {
                "id": h.id,
                "rule": h.rule,
                "fingerprint": h.fingerprint,
                "labels": h.labels,
                "state": h.state.value,
                "value": h.value,
                "at": iso(h.at),
                "annotations": h.annotations,
            }
            for h in history
        ],
        "delivered": [[d.receiver, d.dedup_key, d.status] for d in delivered],
    }


def _entry(raw: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        id=str(raw["id"]),
        rule=str(raw["rule"]),
        fingerprint=str(raw["fingerprint"]),
        labels={str(k): str(v) for k, v in dict(raw["labels"]).items()},
        state=AlertState(raw["state"]),
        value=None if raw.get("value") is None else float(raw["value"]),
        at=datetime.fromisoformat(str(raw["at"]).replace("Z", "+00:00")),
        annotations={str(k): str(v) for k, v in dict(raw.get("annotations") or {}).items()},
    )


class Peers:
    """Asks each peer at once, each within ``timeout`` seconds."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        client: httpx.AsyncClient,
        timeout: float,
        token: str | None = None,
    ) -> None:
        self.urls = tuple(url.rstrip("/") for url in urls)
        self._client = client
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def see_store(self) -> bool:
        """Whether any peer answered that it reaches the store."""
        answers = await asyncio.gather(*(self._get(url, PEER_PATH) for url in self.urls))
        return any(body.get("store_reachable") is True for body in answers)

    async def decisions(self, since: datetime) -> tuple[list[HistoryEntry], set[Delivered]]:
        """Every peer's transitions since ``since`` and the deliveries it completed (a peer
        that does not answer, or answers nonsense, adds nothing)."""
        params = {"since": iso(since) or ""}
        answers = await asyncio.gather(
            *(self._get(url, DECISIONS_PATH, params) for url in self.urls)
        )
        history: list[HistoryEntry] = []
        delivered: set[Delivered] = set()
        for url, body in zip(self.urls, answers, strict=True):
            try:
                history.extend(_entry(raw) for raw in body.get("history", []))
                delivered.update((str(r), str(k), str(s)) for r, k, s in body.get("delivered", []))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("peer %s sent unusable decisions: %s", url, type(exc).__name__)
        return history, delivered

    async def _get(
        self, url: str, path: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._client.get(
                f"{url}{path}", params=params, headers=self._headers, timeout=self._timeout
            )
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("peer %s did not answer: %s", url, type(exc).__name__)
            return {}
        return body if isinstance(body, dict) else {}
