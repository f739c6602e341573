"""The service's authentication metric: who is trying, and what came of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from instrumentation import names

Endpoint = Literal["login", "register", "refresh"]
Outcome = Literal["success", "bad_credentials", "rate_limited", "invalid"]
ENDPOINTS: tuple[Endpoint, ...] = ("login", "register", "refresh")
OUTCOMES: tuple[Outcome, ...] = ("success", "bad_credentials", "rate_limited", "invalid")


class AuthMetrics:
    """``auth_attempts_total{endpoint, outcome}``, every combination made at 0; a refusal by
    a rate limit is also counted where every refusal is (``on_rejected``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        on_rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.attempts = Counter(
            names.AUTH_ATTEMPTS,
            "Attempts at /auth/login, /auth/register and /auth/refresh, by outcome (success, "
            "bad_credentials, rate_limited, invalid: a body that failed validation).",
            ["endpoint", "outcome"],
            registry=registry,
        )
        for endpoint in ENDPOINTS:
            for outcome in OUTCOMES:
                self.attempts.labels(endpoint=endpoint, outcome=outcome)
        self._on_rejected = on_rejected

    def count(self, endpoint: Endpoint, outcome: Outcome) -> None:
        self.attempts.labels(endpoint=endpoint, outcome=outcome).inc()
        if outcome == "rate_limited":
            self.rejected("rate_limited")

    def rejected(self, reason: str) -> None:
        """A request refused before its work was done (``overload``: hashing was full)."""
        if self._on_rejected is not None:
            self._on_rejected(reason)
