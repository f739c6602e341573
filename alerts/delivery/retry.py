"""When a failed delivery is tried again, and when it is given up: a pure policy.

A failed attempt is retried after ``backoff * 2**attempts`` (capped at ``max_backoff``,
stretched by up to ``jitter``, and never sooner than a ``Retry-After`` the receiver asked for).
It is given up after ``max_attempts``, once it is ``max_age`` old (``expired``: a receiver down
for a while still gets what it missed, but not an alert from hours ago), or at once on an error
that cannot get better (``failed``, e.g. HTTP 400).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from alerts.delivery.notification import Delivery

Outcome = Literal["retried", "expired", "failed"]


class Verdict(NamedTuple):
    """What to do with a delivery whose attempt failed; ``retry_at`` only when ``retried``."""

    outcome: Outcome
    retry_at: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff, bounded by count or by age; ``timeout`` is how long
    one attempt may take.

    >>> policy = RetryPolicy(max_attempts=3, backoff=timedelta(seconds=2))
    >>> now = datetime(2026, 12, 1)
    >>> d = Delivery(id="1", receiver="hook", dedup_key="k", status="firing", payload={},
    ...              created_at=now, next_attempt_at=now, attempts=1)
    >>> policy.after_failure(d, now=now, retryable=True)
    Verdict(outcome='retried', retry_at=datetime.datetime(2026, 12, 1, 0, 0, 4))
    >>> policy.after_failure(d, now=now, retryable=False).outcome
    'failed'
    """

    max_attempts: int | None = 8
    max_age: timedelta | None = None
    backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=5)
    jitter: float = 0.0
    timeout: float = 10.0

    def after_failure(
        self,
        delivery: Delivery,
        *,
        now: datetime,
        retryable: bool,
        retry_after: float | None = None,
        draw: Callable[[float, float], float] = random.uniform,
    ) -> Verdict:
        """The verdict on ``delivery``'s failed attempt number ``delivery.attempts + 1``."""
        if not retryable:
            return Verdict("failed")
        if self.max_age is not None and now - delivery.created_at >= self.max_age:
            return Verdict("expired")
        if self.max_attempts is not None and delivery.attempts + 1 >= self.max_attempts:
            return Verdict("failed")
        delay = min(self.backoff * 2**delivery.attempts, self.max_backoff)
        # Jitter: receivers that come back are not hit by every engine's retries at once.
        delay *= 1 + draw(0, self.jitter)
        if retry_after is not None:
            delay = max(delay, timedelta(seconds=retry_after))
        return Verdict("retried", now + delay)
