"""Multi-window, multi-burn-rate alerts for SLOs, as Prometheus rules (Google's SRE workbook,
"Alerting on SLOs"), and ``promtool test rules`` cases that check them.

For each SLO: one recording rule per window for the ratio of bad events
(``slo:error_ratio:rate5m{slo="..."}`` ...), and one alert, ``ErrorBudgetBurn``, per
severity: it fires while the burn rate (error ratio / error budget) is above the pair's
factor over both the long and the short window of a pair. The short window makes it resolve
soon after the burning stops; the long one keeps a blip from paging.

    groups = slo_rule_groups(slos)            # for a Prometheus rule file
    cases = burn_tests(slos, "slo-alerts.yml") # promtool test rules, on the recorded ratios
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from alerts.rules.duration import format_duration
from alerts.slo.model import Slo

RECORD = "slo:error_ratio:rate{window}"
ALERT = "ErrorBudgetBurn"


@dataclass(frozen=True)
class BurnPair:
    """Alert while the burn rate is above ``factor`` over both ``long`` and ``short``."""

    severity: str
    factor: float
    long: timedelta
    short: timedelta

    @property
    def budget_spent(self) -> str:
        """The share of a 30-day budget spent by the time it fires (factor x long / 30 d)."""
        return f"{self.factor * self.long / timedelta(days=30):.0%}"


MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
# The workbook's table: 2 % of a 30-day budget in an hour or 5 % in six pages; 10 % in
# three days or 10 % in a day at a third of that pace opens a ticket.
PAIRS = (
    BurnPair("page", 14.4, HOUR, 5 * MINUTE),
    BurnPair("page", 6.0, 6 * HOUR, 30 * MINUTE),
    BurnPair("ticket", 3.0, DAY, 2 * HOUR),
    BurnPair("ticket", 1.0, 3 * DAY, 6 * HOUR),
)


def windows(pairs: Sequence[BurnPair] = PAIRS) -> list[timedelta]:
    return sorted({w for pair in pairs for w in (pair.long, pair.short)})


def record(window: timedelta) -> str:
    return RECORD.format(window=format_duration(window))


def _burn(slo: Slo, window: timedelta) -> str:
    return f'{record(window)}{{slo="{slo.name}"}} / {slo.budget:.10g}'


def _condition(slo: Slo, pairs: Sequence[BurnPair]) -> str:
    return " or ".join(
        f"({_burn(slo, p.long)} > {p.factor:g} and {_burn(slo, p.short)} > {p.factor:g})"
        for p in pairs
    )


def recording_group(slo: Slo, pairs: Sequence[BurnPair] = PAIRS) -> dict[str, Any]:
    labels = {"slo": slo.name, "service": slo.service}
    return {
        "name": f"slo-{slo.name}-sli",
        "interval": "30s",
        "rules": [
            {"record": record(w), "expr": slo.error_ratio(format_duration(w)), "labels": labels}
            for w in windows(pairs)
        ],
    }


def alerting_group(slo: Slo, pairs: Sequence[BurnPair] = PAIRS) -> dict[str, Any]:
    rules = []
    for severity in ("page", "ticket"):
        chosen = [p for p in pairs if p.severity == severity]
        if not chosen:
            continue
        spans = ", ".join(
            f"{p.factor:g}x over {format_duration(p.long)} and {format_duration(p.short)}"
            for p in chosen
        )
        rules.append(
            {
                "alert": ALERT,
                "expr": _condition(slo, chosen),
                "labels": {"severity": severity, "slo": slo.name, "service": slo.service},
                "annotations": {
                    "summary": (
                        f'{slo.name}: error budget burning {{{{ $value | printf "%.1f" }}}}x '
                        f"the sustainable rate (objective {slo.target:.4g} over "
                        f"{format_duration(slo.window)})"
                    ),
                    "description": (
                        f"{severity} when the burn rate exceeds {spans}. At 1x the budget "
                        f"lasts exactly {format_duration(slo.window)}."
                    ),
                    "runbook_url": "docs/slos.md#reading-a-burn-rate",
                },
            }
        )
    return {"name": f"slo-{slo.name}-alerts", "interval": "30s", "rules": rules}


def slo_rule_groups(slos: Sequence[Slo], pairs: Sequence[BurnPair] = PAIRS) -> list[dict[str, Any]]:
    groups = []
    for slo in slos:
        groups.append(recording_group(slo, pairs))
        groups.append(alerting_group(slo, pairs))
    return groups


def alerting_groups(slos: Sequence[Slo], pairs: Sequence[BurnPair] = PAIRS) -> list[dict[str, Any]]:
    return [alerting_group(slo, pairs) for slo in slos]


# --- promtool test cases -------------------------------------------------------------------


def _ratio_at(slo: Slo, shape: str, window: timedelta, minute: int) -> float:
    """The recorded ratio of ``window`` at ``minute`` for a traffic ``shape``: ``burst``
    (every request fails from minute 0: the ratio is the share of the window since), or a
    steady error ratio ``steady:<burn>`` (that many times the budget, in every window)."""
    if shape == "burst":
        length = window / MINUTE
        return min(minute, length) / length
    return float(shape.split(":")[1]) * slo.budget


def _series(slo: Slo, shape: str, minutes: int, pairs: Sequence[BurnPair]) -> list[dict[str, str]]:
    return [
        {
            "series": f'{record(w)}{{slo="{slo.name}", service="{slo.service}"}}',
            "values": " ".join(f"{_ratio_at(slo, shape, w, t):.10g}" for t in range(minutes + 1)),
        }
        for w in windows(pairs)
    ]


def _fired(
    slo: Slo, shape: str, minute: int, severity: str, pairs: Sequence[BurnPair]
) -> dict[str, Any] | None:
    """The alert of ``severity`` at ``minute`` as Prometheus would render it, or None: its
    value is the long-window burn of the first pair over its factor (``or`` keeps the left)."""
    for pair in (p for p in pairs if p.severity == severity):
        long = _ratio_at(slo, shape, pair.long, minute) / slo.budget
        short = _ratio_at(slo, shape, pair.short, minute) / slo.budget
        if long > pair.factor and short > pair.factor:
            rule = next(
                r
                for r in alerting_group(slo, pairs)["rules"]
                if r["labels"]["severity"] == severity
            )
            annotations = dict(rule["annotations"])
            annotations["summary"] = annotations["summary"].replace(
                '{{ $value | printf "%.1f" }}', f"{long:.1f}"
            )
            return {"exp_labels": dict(rule["labels"]), "exp_annotations": annotations}
    return None


def _case(slo: Slo, shape: str, minutes: int, at: Sequence[int], pairs: Sequence[BurnPair]) -> Any:
    checks = []
    for minute in at:
        expected = [
            alert
            for severity in ("page", "ticket")
            if (alert := _fired(slo, shape, minute, severity, pairs)) is not None
        ]
        checks.append({"eval_time": f"{minute}m", "alertname": ALERT, "exp_alerts": expected})
    return {"interval": "1m", "input_series": _series(slo, shape, minutes, pairs),
            "alert_rule_test": checks}  # fmt: skip


def first_page(slo: Slo, pairs: Sequence[BurnPair] = PAIRS, limit: int = 3 * 24 * 60) -> int:
    """The minute a burst of failures first pages (the workbook's detection time)."""
    for minute in range(limit):
        if _fired(slo, "burst", minute, "page", pairs) is not None:
            return minute
    raise ValueError(f"{slo.name}: a total outage never pages within {limit} minutes")


def burn_tests(
    slos: Sequence[Slo], rule_file: str, pairs: Sequence[BurnPair] = PAIRS
) -> dict[str, Any]:
    """``promtool test rules`` cases for the alerting rules in ``rule_file``, fed the recorded
    ratios: a burst of failures is quiet the minute before it should page and pages at the
    minute it should (within two for a 99.9 % objective); errors at twice the budget never
    page; at four times the budget they open a ticket and page nobody."""
    tests = []
    for slo in slos:
        paged = first_page(slo, pairs)
        tests.append(_case(slo, "burst", paged + 1, [max(paged - 1, 0), paged], pairs))
        tests.append(_case(slo, "steady:2", 10, [10], pairs))
        tests.append(_case(slo, "steady:4", 10, [10], pairs))
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}
