"""One evaluation cycle of a rule group: query, advance the state machine, queue, count.

The evaluator asks each distinct query once per cycle, hands every rule its result and its
previous alerts to ``alerts.engine.state.evaluate``, keeps the outcome in the ledger (memory) and
queues the notifications in the outbox, firing latency and slow-query ones with example
traces and slowest statements (``alerts.engine.context``, bounded in time). Nothing here waits on a
database: the store is written behind (``alerts.store.writer``), so the engine keeps evaluating
while the database it watches, or its own store, is down. Self-monitoring signals are asked
after the other queries, from the engine's own registry, so a cycle whose Prometheus queries
fail already sees those failures (and ``MonitorEvaluationFailing`` works while Prometheus is down).

Each rule evaluation is counted once, and a failed one once in the failure counter, however
it failed (the query, or the rule itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from alerts.delivery.outbox import Outbox
from alerts.engine.context import Context
from alerts.engine.ledger import Ledger
from alerts.engine.query import QueryFailed, QueryResult
from alerts.engine.sources.source import Source
from alerts.engine.state import AlertState, Evaluation, Notification, evaluate
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Group, Query, Rule

log = logging.getLogger("dynoscope.alerts")


@dataclass(frozen=True)
class Cycle:
    """What one group evaluation did."""

    group: str
    at: datetime
    evaluations: dict[str, Evaluation]
    queries: int
    seconds: float

    @property
    def failed(self) -> list[str]:
        return [name for name, e in self.evaluations.items() if e.failed]

    @property
    def notifications(self) -> int:
        return sum(len(e.notifications) for e in self.evaluations.values())


class Evaluator:
    """Evaluate rule groups against a source and keep their alerts in a store."""

    def __init__(
        self,
        *,
        source: Source,
        self_source: Source,
        ledger: Ledger,
        outbox: Outbox,
        metrics: EngineMetrics | None = None,
        context: Context | None = None,
    ) -> None:
        self._context = context
        self._source = source
        self._self_source = self_source
        self._ledger = ledger
        self._outbox = outbox
        self._metrics = metrics

    @property
    def context(self) -> Context | None:
        """Where firing latency and slow-query alerts get their examples (None: no lookup)."""
        return self._context

    @property
    def metrics(self) -> EngineMetrics | None:
        """Where evaluation is counted; the scheduler counts the runs it skips there too."""
        return self._metrics

    def prepare(self, rules: Sequence[Rule]) -> None:
        """Create every rule's failure counter at zero, so a first failure is an increase."""
        if self._metrics is not None:
            for rule in rules:
                self._metrics.rule_evaluation_failures.labels(rule=rule.name)
                self._metrics.rule_evaluations.labels(rule=rule.name)

    async def run(self, group: Group, *, now: datetime) -> Cycle:
        """Evaluate every rule of ``group`` at ``now``; keep the outcome and queue notices."""
        started = time.perf_counter()
        external = [r for r in group.rules if not r.query.self_monitoring]
        internal = [r for r in group.rules if r.query.self_monitoring]
        results: dict[Query, QueryResult] = {}
        if external:
            results.update(await self._ask(self._source, external, now=now))
            self._count_failures(external, results)
        if internal:
            results.update(await self._ask(self._self_source, internal, now=now))
            self._count_failures(internal, results)
        evaluations = {rule.name: self._evaluate(rule, results, now=now) for rule in group.rules}
        self._ledger.record(evaluations, now=now)
        self._outbox.notify(await self._noticed(group, evaluations, now=now), now=now)
        seconds = time.perf_counter() - started
        self._record(group, evaluations, seconds=seconds)
        for name, evaluation in evaluations.items():
            for change in evaluation.changes:
                log.info("alert %s %s %s", name, dict(change.labels), change.state.value)
        return Cycle(
            group=group.name,
            at=now,
            evaluations=evaluations,
            queries=len({r.query.promql for r in group.rules}),
            seconds=seconds,
        )

    async def _noticed(
        self, group: Group, evaluations: dict[str, Evaluation], *, now: datetime
    ) -> list[Notification]:
        """The cycle's notifications, with context (bounded in time) where it applies."""
        pairs = [
            (rule, notification)
            for rule in group.rules
            for notification in evaluations[rule.name].notifications
        ]
        plain = [notification for _, notification in pairs]
        if self._context is None:
            return plain
        try:
            return await self._context.attach(pairs, now=now)
        except Exception:  # a bug in the lookup must not cost the notifications
            log.exception("alert context lookup failed; notifying without it")
            return plain

    def _evaluate(
        self, rule: Rule, results: dict[Query, QueryResult], *, now: datetime
    ) -> Evaluation:
        previous = self._ledger.previous(rule.name)
        result = results[rule.query]
        try:
            return evaluate(rule, previous, result=result, now=now)
        except Exception:
            # A bug must cost this rule one cycle, not the group; its state is kept.
            log.exception("rule %s: evaluation failed", rule.name)
            if self._metrics is not None and not isinstance(result, QueryFailed):
                self._metrics.rule_evaluation_failures.labels(rule=rule.name).inc()
            return Evaluation(alerts=previous, failed=True)

    async def _ask(
        self, source: Source, rules: Sequence[Rule], *, now: datetime
    ) -> dict[Query, QueryResult]:
        queries = {rule.query for rule in rules}
        try:
            return await source.run(queries, now=now)
        except Exception as exc:  # a source bug must not stop the other groups
            log.exception("source %s failed", source.name)
            return {q: QueryFailed(f"{source.name}: {type(exc).__name__}") for q in queries}

    def _count_failures(self, rules: Sequence[Rule], results: dict[Query, QueryResult]) -> None:
        for rule in rules:
            result = results.get(rule.query)
            if result is None:
                results[rule.query] = result = QueryFailed("no answer from the source")
            if self._metrics is not None:
                self._metrics.rule_evaluations.labels(rule=rule.name).inc()
                if isinstance(result, QueryFailed):
                    self._metrics.rule_evaluation_failures.labels(rule=rule.name).inc()
            if isinstance(result, QueryFailed):
                log.warning("rule %s: query failed: %s", rule.name, result.reason)

    def _record(self, group: Group, evaluations: dict[str, Evaluation], *, seconds: float) -> None:
        if self._metrics is None:
            return
        self._metrics.rule_evaluation_duration.labels(group=group.name).observe(seconds)
        for name, evaluation in evaluations.items():
            for state in (AlertState.PENDING, AlertState.FIRING):
                count = sum(1 for a in evaluation.alerts if a.state is state)
                self._metrics.alerts.labels(alertname=name, state=state.value).set(count)
