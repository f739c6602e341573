"""The M/M/c arithmetic of the capacity model against closed forms and textbook values."""

from __future__ import annotations

import doctest
import math
from types import ModuleType

import pytest

from ops import capacity_model, scorecard
from ops.capacity_model import Model, erlang_c


def test_erlang_c_is_the_utilisation_for_one_server_and_matches_tables() -> None:
    for load in (0.1, 0.5, 0.9):
        assert erlang_c(1, load) == pytest.approx(load)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)  # a = 8 Erlangs, 10 agents
    assert erlang_c(4, 4.0) == 1.0 and erlang_c(4, 0.0) == 0.0


def test_one_server_waits_as_m_m_1_and_saturates_at_cores_over_cpu() -> None:
    model = Model(cores=1, cpu_per_request=0.004)
    assert model.saturation_rate == pytest.approx(250)
    rate = 200.0  # 80 % busy: P(wait > t) = 0.8 exp(-(mu - lambda) t)
    waiting = math.log(0.8 / 0.05) / (250 - rate)
    assert model.p95(rate) == pytest.approx(0.004 + waiting)
    assert model.p95(250) == math.inf


def test_the_target_is_reached_before_saturation_and_later_with_more_cores() -> None:
    one = Model(cores=1, cpu_per_request=0.002)
    two = Model(cores=2, cpu_per_request=0.002)
    assert 0.9 * one.saturation_rate < one.rate_at_p95(0.2) < one.saturation_rate
    assert one.p95(one.rate_at_p95(0.2)) == pytest.approx(0.2, rel=1e-3)
    assert two.saturation_rate == pytest.approx(2 * one.saturation_rate)
    assert two.rate_at_p95(0.2) / two.saturation_rate > one.rate_at_p95(0.2) / one.saturation_rate
    # Time spent off the CPU (database, cache) eats into the target.
    slow = Model(cores=1, cpu_per_request=0.002, base=0.15)
    assert slow.rate_at_p95(0.2) < one.rate_at_p95(0.2)
    assert Model(cores=1, cpu_per_request=0.002, base=0.3).rate_at_p95(0.2) == 0.0


def test_half_a_core_is_one_server_at_half_speed() -> None:
    half = Model(cores=0.5, cpu_per_request=0.002)
    assert half.servers == 1 and half.saturation_rate == pytest.approx(250)


def test_admission_control_sheds_near_saturation_for_cheap_requests() -> None:
    model = Model(cores=1, cpu_per_request=0.002)
    shedding = model.rate_at_concurrency(128)
    assert model.mean_in_system(shedding) == pytest.approx(128, rel=1e-3)
    assert model.rate_at_p95(0.2) < shedding < model.saturation_rate


@pytest.mark.parametrize("module", [capacity_model, scorecard])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0
