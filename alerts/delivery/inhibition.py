"""Inhibition: while an alert that explains others fires, their notifications are held back,
as Alertmanager's ``inhibit_rules`` do.

    rule = InhibitRule.parse(source=['alertname="DatabaseUnavailable"'],
                             target=['alertname=~"ApiErrorRateHigh|ApiLatency.*"'], equal=[])
    inhibitor = Inhibitor([rule], firing=lambda: ledger_firing_alerts)
    inhibitor.inhibiting(labels, fingerprint)   # the alert holding it back, or None

Two of Alertmanager's traps are avoided on purpose: an alert never inhibits itself, and one
that matches a rule's source and target is inhibited only by a source that does not match
the target too (#666: two alerts of one rule would silence each other); a label named in
``equal`` that is missing on both sides is not equal (#507, #1727: it would inhibit
everything).

Shipped defaults (``DEFAULT_RULES``), used when the receivers file gives none:
``DatabaseUnavailable`` holds back the error-rate, latency and SLO burn alerts (the shipped
rules aggregate across the deployment, so no ``equal``: add ``equal: [job]`` to rules whose
alerts carry it), and ``InstanceDown`` holds back the alerts of that instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from alerts.engine.state import Alert
from alerts.silences.matchers import Matcher, parse_matcher


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls, *, source: Sequence[str], target: Sequence[str], equal: Sequence[str] = ()
    ) -> InhibitRule:
        """``ValueError`` naming the matcher it cannot read."""
        return cls(
            tuple(parse_matcher(m) for m in source),
            tuple(parse_matcher(m) for m in target),
            tuple(equal),
        )

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.source)

    def is_target(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.target)

    def same(self, one: Mapping[str, str], other: Mapping[str, str]) -> bool:
        return all(
            name in one and name in other and one[name] == other[name] for name in self.equal
        )


DEFAULT_RULES = (
    InhibitRule.parse(
        source=['alertname="DatabaseUnavailable"'],
        target=[
            'alertname=~"ApiErrorRateHigh|ApiLatencyP95High|ApiLatencyP95AboveTarget'
            '|ErrorBudgetBurn"'
        ],
    ),
    InhibitRule.parse(
        source=['alertname="InstanceDown"'], target=['instance=~".+"'], equal=["instance"]
    ),
)


class Inhibitor:
    """Which firing alert, if any, holds back a notification of an alert with given labels."""

    def __init__(self, rules: Iterable[InhibitRule], *, firing: Callable[[], Iterable[Alert]]):
        self.rules = tuple(rules)
        self._firing = firing

    def inhibiting(self, labels: Mapping[str, str], fingerprint: str) -> Alert | None:
        rules = [rule for rule in self.rules if rule.is_target(labels)]
        if not rules:
            return None
        for source in self._firing():
            if source.fingerprint == fingerprint:
                continue  # never itself
            theirs = dict(source.labels)
            for rule in rules:
                if not rule.is_source(theirs) or not rule.same(labels, theirs):
                    continue
                if rule.is_source(labels) and rule.is_target(theirs):
                    continue  # both sides match both: they would hold each other back
                return source
        return None
