"""The local source on a fixed clock: a registry populated by the test, sampled into windows."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from alerts.engine.query import QueryFailed, Vector
from alerts.engine.sources.local import LocalSource
from alerts.engine.window import histogram_quantile
from alerts.metrics import EngineMetrics
from alerts.rules.rule import RawQuery, SignalQuery
from alerts.rules.signal import RestartGuard, SignalArgs, TrafficGuard
from instrumentation.catalogue import Catalogue

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def metrics() -> Catalogue:
    return Catalogue(CollectorRegistry())


def source(metrics: Catalogue) -> LocalSource:
    return LocalSource(
        collectors=[metrics.registry],
        retention=timedelta(minutes=10),
        target={"instance": "i1", "job": "api"},
    )


def query(
    signal: str, *, by: tuple[str, ...] = (), window: timedelta = MINUTE, **params: float
) -> SignalQuery:
    from alerts.rules.signals import signal_named

    model = signal_named(signal).params.model_validate(params)
    return SignalQuery(signal, SignalArgs(by=by, window=window, params=model))


async def answer(
    local: LocalSource, q: SignalQuery | RawQuery, at: datetime
) -> dict[tuple[tuple[str, str], ...], float]:
    result = (await local.run([q], now=at))[q]
    assert isinstance(result, Vector)
    return {s.labels: s.value for s in result.samples}


async def test_rates_need_two_snapshots_then_follow_the_window(metrics: Catalogue) -> None:
    local = source(metrics)
    slow = metrics.db_slow_queries.labels(operation="SELECT", table="properties")
    q = query("db_slow_queries_per_minute", by=("instance",))
    assert await answer(local, q, T0) == {}  # no data yet: one snapshot
    slow.inc(3)
    assert await answer(local, q, T0 + 30 * timedelta(seconds=1)) == {(("instance", "i1"),): 6.0}
    # Once the increase is older than the window, the rate drops to zero.
    assert await answer(local, q, T0 + 90 * timedelta(seconds=1)) == {(("instance", "i1"),): 0.0}


async def test_latency_quantile_matches_prometheus_interpolation(metrics: Catalogue) -> None:
    local = source(metrics)
    q = query("http_latency_p95_seconds", by=("route",))
    await local.run([q], now=T0)
    for _ in range(100):
        metrics.http_request_duration.labels(method="GET", route="/p", status_code="200").observe(
            1.5
        )
    values = await answer(local, q, T0 + 30 * timedelta(seconds=1))
    # All observations fall in (1, 2.5]: p95 = 1 + 1.5 * 0.95.
    assert values == {(("route", "/p"),): pytest.approx(2.425)}


async def test_ratios_respect_the_traffic_guard(metrics: Catalogue) -> None:
    local = source(metrics)
    guarded = query("cache_hit_ratio", by=("cache",), min_requests_per_second=1.0)
    open_ = query("cache_hit_ratio", by=("cache",))
    await local.run([guarded, open_], now=T0)
    metrics.cache_requests.labels(cache="properties", result="hit").inc(10)
    metrics.cache_requests.labels(cache="properties", result="miss").inc(30)
    later = T0 + timedelta(seconds=60)
    assert await answer(local, open_, later) == {(("cache", "properties"),): 0.25}
    assert await answer(local, guarded, later) == {}  # 40 lookups a minute is under 1/s


async def test_a_cold_start_under_light_traffic_is_not_a_window_of_it(
    metrics: Catalogue,
) -> None:
    # The shipped CacheHitRateLow: 10 minute window, at least 0.5 lookups a second. Five users
    # on a cold cache for ten seconds miss on every lookup: 50 lookups are not ten minutes of
    # traffic, as Prometheus's rate over a range its samples do not yet fill would say.
    local = source(metrics)
    q = query("cache_hit_ratio", by=("cache",), window=10 * MINUTE, min_requests_per_second=0.5)
    misses = metrics.cache_requests.labels(cache="properties", result="miss")
    hits = metrics.cache_requests.labels(cache="properties", result="hit")
    at = T0
    await local.run([q], now=at)
    for _ in range(10):
        misses.inc(5)
        at += timedelta(seconds=1)
        assert await answer(local, q, at) == {}
    # The same light traffic, still missing, once it has lasted the whole window: a ratio.
    for _ in range(40):
        hits.inc(15)
        misses.inc(60)
        at += timedelta(seconds=15)
        result = await answer(local, q, at)
    assert result == {(("cache", "properties"),): pytest.approx(0.2, abs=0.01)}


async def test_error_ratio_counts_5xx_only(metrics: Catalogue) -> None:
    local = source(metrics)
    q = query("http_error_ratio")
    await local.run([q], now=T0)
    for status, count in (("200", 90), ("404", 5), ("503", 5)):
        for _ in range(count):
            metrics.http_request_duration.labels(
                method="GET", route="/p", status_code=status
            ).observe(0.01)
    assert await answer(local, q, T0 + MINUTE) == {(): pytest.approx(0.05)}


async def test_rejected_requests_per_second_by_instance(metrics: Catalogue) -> None:
    local = source(metrics)
    q = query("http_rejected_requests_per_second", by=("instance",))
    await local.run([q], now=T0)
    metrics.http_rejected_requests.labels(reason="overload").inc(180)
    assert await answer(local, q, T0 + MINUTE) == {(("instance", "i1"),): 3.0}


async def test_memory_growth_is_a_least_squares_slope_ignoring_fresh_starts() -> None:
    registry = CollectorRegistry()
    from prometheus_client import Gauge

    rss = Gauge("process_resident_memory_bytes", "rss", registry=registry)
    start = Gauge("process_start_time_seconds", "start", registry=registry)
    start.set(T0.timestamp() - 7200)
    local = LocalSource(
        collectors=[registry], retention=timedelta(hours=2), target={"instance": "i1", "job": "api"}
    )
    q = query("memory_growth_bytes_per_hour", by=("instance",), window=timedelta(hours=1))
    for minute in range(0, 61, 5):
        rss.set(100e6 + minute * 1e6 + (5e5 if minute % 10 else 0))  # 60 MB/h plus noise
        values = await answer(local, q, T0 + minute * MINUTE)
    assert values[(("instance", "i1"),)] == pytest.approx(60e6, rel=0.05)
    start.set((T0 + 50 * MINUTE).timestamp())  # restarted ten minutes ago
    assert await answer(local, q, T0 + 61 * MINUTE) == {}
    assert RestartGuard().min_uptime_seconds is None and TrafficGuard().min_requests_per_second == 0


async def test_raw_promql_fails_locally_and_self_signals_work(metrics: Catalogue) -> None:
    local = source(metrics)
    raw = RawQuery("up == 0")
    assert isinstance((await local.run([raw], now=T0))[raw], QueryFailed)
    failures = query("rule_evaluation_failures", by=("rule",))
    engine = EngineMetrics(metrics)  # the engine counts on the same registry
    engine.rule_evaluation_failures.labels(rule="X")
    await local.run([failures], now=T0)
    engine.rule_evaluation_failures.labels(rule="X").inc()
    assert await answer(local, failures, T0 + timedelta(seconds=15)) == {(("rule", "X"),): 1.0}
    assert await answer(local, query("instance_up", by=("instance", "job")), T0) == {
        (("instance", "i1"), ("job", "api")): 1.0
    }


async def test_snapshots_older_than_retention_are_dropped(metrics: Catalogue) -> None:
    local = source(metrics)
    for minute in range(30):
        local.sample(T0 + minute * MINUTE)
    assert len(local.snapshots) == 11


def test_histogram_quantile_edge_cases() -> None:
    assert math.isnan(histogram_quantile(0.9, {1.0: 0, math.inf: 0}))
    assert math.isnan(histogram_quantile(0.9, {1.0: 3}))
    assert histogram_quantile(0.99, {0.1: 0, 1.0: 0, math.inf: 10}) == 1.0
    assert histogram_quantile(2, {1.0: 1, math.inf: 1}) == math.inf


def test_quantile_zero_skips_empty_buckets_instead_of_dividing_by_zero() -> None:
    assert histogram_quantile(0, {0.1: 0, 0.2: 4, math.inf: 4}) == 0.1
    assert histogram_quantile(0, {0.1: 2, math.inf: 2}) == 0.0


async def test_an_hour_of_snapshots_is_thinned_beyond_the_short_windows() -> None:
    registry = CollectorRegistry()
    from prometheus_client import Gauge

    rss = Gauge("process_resident_memory_bytes", "rss", registry=registry)
    start = Gauge("process_start_time_seconds", "start", registry=registry)
    start.set(T0.timestamp() - 7200)
    local = LocalSource(
        collectors=[registry], retention=timedelta(hours=1, minutes=1), target={"instance": "i1"}
    )
    q = query("memory_growth_bytes_per_hour", by=("instance",), window=timedelta(hours=1))
    step = timedelta(seconds=15)
    for tick in range(4 * 60 + 1):  # two groups sampling every 15 s would keep 480
        rss.set(100e6 + tick * 0.25e6)  # 60 MB/h
        local.sample(T0 + tick * step)
        local.sample(T0 + tick * step + timedelta(seconds=7))
    # 15 fine minutes at two per 15 s, then one per minute for the rest of the hour.
    assert len(local.snapshots) <= 2 * 4 * 15 + 47
    times = [s.at for s in local.snapshots]
    assert times == sorted(times)
    values = await answer(local, q, T0 + 240 * step + timedelta(seconds=7))
    assert values[(("instance", "i1"),)] == pytest.approx(60e6, rel=0.02)


async def test_capacity_signals_from_cpu_time_and_cores(metrics: Catalogue) -> None:
    from prometheus_client import Counter

    cpu = Counter("process_cpu_seconds", "cpu", registry=metrics.registry)
    metrics.instance_cores.labels(workers="2").set(2)
    requests = metrics.http_request_duration.labels(method="GET", route="/p", status_code="200")
    local = source(metrics)
    local.sample(T0)
    cpu.inc(36)  # 0.6 core over the minute
    for _ in range(6000):  # 100 requests/s: 6 ms of CPU each
        requests.observe(0.01)
    now = T0 + MINUTE
    target = (("instance", "i1"), ("job", "api"))
    assert await answer(local, query("capacity_utilization", by=("instance", "job")), now) == {
        target: pytest.approx(0.3)
    }
    assert await answer(local, query("capacity_utilization"), now) == {(): pytest.approx(0.3)}
    saturation = query("capacity_saturation_requests_per_second", by=("instance",))
    assert await answer(local, saturation, now) == {(("instance", "i1"),): pytest.approx(2 / 0.006)}
    # 0.6 busy cores at 70 % of 2 cores an instance: one is enough; at 50 %, still one; at
    # 20 % of 2 cores (0.4 a instance), two.
    needed = query("instances_needed", target_utilization=0.7)
    assert await answer(local, needed, now) == {(): 1.0}
    assert await answer(local, query("instances_needed", target_utilization=0.2), now) == {(): 2.0}


async def test_snapshots_older_than_every_short_window_keep_only_what_trends_read(
    metrics: Catalogue,
) -> None:
    from prometheus_client import Counter

    cpu = Counter("process_cpu_seconds", "cpu", registry=metrics.registry)
    metrics.instance_cores.labels(workers="1").set(1)
    requests = metrics.http_request_duration.labels(method="GET", route="/p", status_code="200")
    local = LocalSource(
        collectors=[metrics.registry],
        retention=timedelta(hours=6, minutes=1),
        whole=timedelta(minutes=20),
        target={"instance": "i1", "job": "api"},
    )
    for minute in range(6 * 60 + 1):
        cpu.inc(60 * (0.1 + 0.02 * minute / 60))  # 2 points an hour from 10 %
        requests.observe(0.01)
        local.sample(T0 + minute * MINUTE)
    now = T0 + 6 * 60 * MINUTE
    old = [s for s in local.snapshots if s.at < (now - timedelta(minutes=20)).timestamp()]
    assert len(old) > 300
    assert all(
        set(s.values) == {"process_cpu_seconds_total", "dynoscope_instance_cores"} for s in old
    )
    recent = local.snapshots[-1].values
    assert "http_server_request_duration_seconds_bucket" in recent
    forecast = query("capacity_hours_to_saturation", window=timedelta(hours=6))
    # At 6 h the utilisation is 22 %: 29 h to 80 % at 2 points an hour.
    assert (await answer(local, forecast, now))[()] == pytest.approx(29.0, abs=0.1)


async def test_every_shipped_rule_computes_locally_on_a_real_registry(metrics: Catalogue) -> None:
    from alerts.engine.monitor import retention
    from alerts.rules.loader import DEFAULT_RULES, load_rules
    from instrumentation.process import register_process_collector, set_instance_cores

    register_process_collector(metrics.registry)
    set_instance_cores(metrics, workers=1, cores=1.0)
    metrics.http_request_duration.labels(method="GET", route="/p", status_code="200").observe(0.1)
    rules = load_rules([DEFAULT_RULES])
    local = LocalSource(
        collectors=[metrics.registry],
        retention=retention(rules),
        whole=retention(rules, trends=False),
        target={"instance": "i1", "job": "api"},
    )
    queries = [rule.query for rule in rules.rules]
    for minute in range(3):
        results = await local.run(queries, now=T0 + minute * MINUTE)
    failed = {query: result for query, result in results.items() if isinstance(result, QueryFailed)}
    assert failed == {}
    utilisation = await answer(local, query("capacity_utilization"), T0 + 2 * MINUTE)
    assert set(utilisation) == {()}
