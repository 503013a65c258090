"""The one crossover definition (qnewton.experiments.crossover), shared by the CLI and reports."""

from __future__ import annotations

import math

import pytest

from qnewton.experiments.crossover import find_crossovers


def test_power_law_crossing_is_found_exactly():
    # total = 1e9 * gate time is a straight line in log-log: 300 s at exactly 3e-7 s
    gates = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5]
    assert find_crossovers(gates, [1e9 * g for g in gates], 300.0) == pytest.approx(
        [3e-7], rel=1e-9)


def test_crossings_interpolate_in_log_log_space():
    # down through 3 between (1, 5) and (2, 1), back up between (2, 1) and (3, 5)
    down = math.exp(math.log(2) * math.log(5 / 3) / math.log(5))
    up = math.exp(math.log(2) + math.log(3) / math.log(5) * math.log(3 / 2))
    assert find_crossovers([1.0, 2.0, 3.0], [5.0, 1.0, 5.0], 3.0) == pytest.approx(
        [down, up], rel=1e-9)


def test_linear_interpolation_when_a_value_is_not_positive():
    # log space is undefined at 0: from (0, 4) to (2, 0) the line meets 3 at 0.5
    assert find_crossovers([0.0, 2.0], [4.0, 0.0], 3.0) == pytest.approx([0.5])


def test_points_on_the_baseline_count_once_and_no_crossing_is_empty():
    assert find_crossovers([1.0, 2.0, 3.0], [5.0, 3.0, 1.0], 3.0) == [2.0]
    assert find_crossovers([1.0, 2.0], [5.0, 6.0], 3.0) == []


def test_missing_and_non_finite_points_are_skipped():
    # the nan at 2 is left out: (1, 4) to (4, 1) in log-log meets 2 at 2
    assert find_crossovers([1.0, 2.0, 4.0], [4.0, math.nan, 1.0], 2.0) == pytest.approx([2.0])
    assert find_crossovers([1.0, 2.0, 4.0], [4.0, None, 1.0], 2.0) == pytest.approx([2.0])
