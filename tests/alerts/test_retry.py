"""The retry policy on its own: backoff, its cap, jitter, Retry-After, and giving up."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from alerts.delivery.notification import Delivery
from alerts.delivery.retry import RetryPolicy, Verdict

T0 = datetime(2026, 12, 1, 12, 0)


def failed(attempts: int, *, age: timedelta = timedelta(0)) -> Delivery:
    """A delivery that had ``attempts`` failed attempts before this one, created ``age`` ago."""
    return Delivery(
        id="1", receiver="hook", dedup_key="k", status="firing", payload={},
        created_at=T0 - age, next_attempt_at=T0, attempts=attempts,
    )  # fmt: skip


def no_jitter(low: float, high: float) -> float:
    return low


def full_jitter(low: float, high: float) -> float:
    return high


@pytest.mark.parametrize(
    ("policy", "delivery", "retryable", "retry_after", "expected"),
    [
        # 1 s, 2 s, 4 s ... doubling per attempt
        (RetryPolicy(), failed(0), True, None, Verdict("retried", T0 + timedelta(seconds=1))),
        (RetryPolicy(), failed(3), True, None, Verdict("retried", T0 + timedelta(seconds=8))),
        # capped at max_backoff
        (
            RetryPolicy(max_backoff=timedelta(seconds=5), max_attempts=None),
            failed(10),
            True,
            None,
            Verdict("retried", T0 + timedelta(seconds=5)),
        ),
        # never sooner than the receiver's Retry-After, later if the backoff says so
        (RetryPolicy(), failed(0), True, 7.0, Verdict("retried", T0 + timedelta(seconds=7))),
        (RetryPolicy(), failed(4), True, 7.0, Verdict("retried", T0 + timedelta(seconds=16))),
        # the attempt that reaches max_attempts gives up
        (
            RetryPolicy(max_attempts=3),
            failed(1),
            True,
            None,
            Verdict("retried", T0 + timedelta(seconds=2)),
        ),
        (RetryPolicy(max_attempts=3), failed(2), True, None, Verdict("failed")),
        # an error that cannot get better gives up at once
        (RetryPolicy(), failed(0), False, None, Verdict("failed")),
        # too old: given up by age (counted apart), before the count is looked at
        (
            RetryPolicy(max_age=timedelta(minutes=10), max_attempts=None),
            failed(50, age=timedelta(minutes=10)),
            True,
            None,
            Verdict("expired"),
        ),
        (
            RetryPolicy(max_age=timedelta(minutes=10), max_attempts=2),
            failed(1, age=timedelta(minutes=11)),
            True,
            None,
            Verdict("expired"),
        ),
        # age does not make a permanent error "expired"
        (
            RetryPolicy(max_age=timedelta(minutes=10)),
            failed(0, age=timedelta(hours=1)),
            False,
            None,
            Verdict("failed"),
        ),
    ],
)  # fmt: skip
def test_verdicts(
    policy: RetryPolicy,
    delivery: Delivery,
    retryable: bool,
    retry_after: float | None,
    expected: Verdict,
) -> None:
    verdict = policy.after_failure(
        delivery, now=T0, retryable=retryable, retry_after=retry_after, draw=no_jitter
    )
    assert verdict == expected


def test_jitter_stretches_the_delay_by_at_most_its_fraction() -> None:
    policy = RetryPolicy(jitter=0.5)
    shortest = policy.after_failure(failed(2), now=T0, retryable=True, draw=no_jitter)
    longest = policy.after_failure(failed(2), now=T0, retryable=True, draw=full_jitter)
    assert shortest.retry_at == T0 + timedelta(seconds=4)
    assert longest.retry_at == T0 + timedelta(seconds=6)
