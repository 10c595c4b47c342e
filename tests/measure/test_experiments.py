"""Experiment statistics: the numbers statsmodels/scipy give for textbook cases, the switch to
Fisher's exact test for small counts, and the "too small to conclude" rule."""

from __future__ import annotations

import math

import pytest

from siyu.metrics.experiments import Arm, compare, required_sample


def test_a_large_clear_difference_is_significant_with_its_interval_and_lift() -> None:
    result = compare(Arm("holdout", 5000, 500), Arm("treated", 5000, 650))
    assert result.test == "z-test"
    assert result.difference == pytest.approx(0.03)
    assert result.lift == pytest.approx(0.30)
    # z = 0.03 / sqrt(p(1-p)(2/5000)) with the pooled p = 0.115
    z = 0.03 / math.sqrt(0.115 * 0.885 * 2 / 5000)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-6)
    assert 0 < result.ci_low < 0.03 < result.ci_high < 0.06
    assert result.warning is None and result.significant
    assert "treated converts better than holdout" in result.verdict()


def test_small_counts_use_fishers_exact_test_and_are_too_small_to_conclude() -> None:
    result = compare(Arm("a", 20, 1), Arm("b", 20, 7))
    assert result.test == "fisher"
    assert result.p_value == pytest.approx(0.0436, abs=1e-3)  # scipy's two-sided Fisher
    assert result.warning is not None and not result.significant
    assert result.verdict().startswith("too small to conclude")


def test_the_minimum_sample_is_the_power_calculation_for_a_20_percent_lift() -> None:
    # 10 % → 12 %, alpha 0.05 two-sided, power 0.8, equal arms: Cohen's h ≈ 0.0640 → ~3,835
    assert required_sample(0.10, 1.0) == pytest.approx(3835, abs=3)
    # a 9:1 treated:holdout split needs fewer held-out customers, more treated ones
    assert required_sample(0.10, 9.0) < 3835
    big_enough = compare(Arm("holdout", 4000, 400), Arm("treated", 4000, 410))
    assert big_enough.warning is None and not big_enough.significant
    assert big_enough.verdict() == "no significant difference"


def test_an_empty_arm_is_reported_not_computed() -> None:
    result = compare(Arm("holdout", 0, 0), Arm("treated", 10, 3))
    assert result.p_value is None and result.warning == "'holdout' is empty"
