"""Goal conversion of two groups compared: treated vs holdout, or one variant vs another.

Statistics come from statsmodels (and scipy for Fisher's exact test):

- the difference of the two conversion rates with a 95 % Newcombe (hybrid Wilson score)
  interval, which keeps its coverage for small counts and rates near 0 or 1;
- the p-value of the two-sided two-proportion z-test, or of Fisher's exact test when any
  expected cell of the 2x2 table is below 5 (where the normal approximation is poor);
- the relative lift (rate_b / rate_a - 1).

"Too small to conclude": each arm needs at least the sample that a two-sided test at
alpha = 0.05 needs to detect a relative lift of `MIN_DETECTABLE_LIFT` (20 %) over the
control's rate with 80 % power (Cohen's h, statsmodels' NormalIndPower, with the arms' real
size ratio), and the groups together need at least `MIN_CONVERSIONS` conversions. Below that
the result is shown with a warning and never called significant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# scipy and statsmodels are imported in the functions that use them: at module level they
# took 1.1 s of every `siyu` command's start and of every tick's process, experiment or not
# (python -X importtime -c "import siyu.cli.main").

ALPHA = 0.05
POWER = 0.8
MIN_DETECTABLE_LIFT = 0.20
MIN_CONVERSIONS = 10


@dataclass(frozen=True)
class Arm:
    name: str
    n: int  # customers in the group
    conversions: int  # of them, customers who reached the goal

    @property
    def rate(self) -> float:
        return self.conversions / self.n if self.n else 0.0


@dataclass(frozen=True)
class Comparison:
    control: Arm
    treatment: Arm
    difference: float  # treatment rate - control rate (percentage points / 100)
    ci_low: float  # 95 % Newcombe interval of the difference
    ci_high: float
    lift: float | None  # treatment / control - 1; None when the control converted nobody
    p_value: float | None
    test: str  # "z-test" | "fisher" | "none"
    required_per_arm: int | None  # control-arm size needed (the treatment's scales by ratio)
    warning: str | None  # why the result cannot be concluded from, if it cannot

    @property
    def significant(self) -> bool:
        return self.warning is None and self.p_value is not None and self.p_value < ALPHA

    def verdict(self) -> str:
        if self.warning:
            return f"too small to conclude: {self.warning}"
        if self.significant:
            better = "better" if self.difference > 0 else "worse"
            return f"{self.treatment.name} converts {better} than {self.control.name}"
        return "no significant difference"


def required_sample(control_rate: float, ratio: float) -> int | None:
    """Control-arm size needed to detect MIN_DETECTABLE_LIFT over `control_rate` (treated
    arm = ratio x that); None when the rate leaves nothing to detect (0 or near 1)."""
    target = control_rate * (1 + MIN_DETECTABLE_LIFT)
    if control_rate <= 0 or target >= 1:
        return None
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    effect = abs(float(proportion_effectsize(target, control_rate)))
    n = NormalIndPower().solve_power(
        effect_size=effect, alpha=ALPHA, power=POWER, ratio=ratio, alternative="two-sided"
    )
    return math.ceil(float(n))


def compare(control: Arm, treatment: Arm) -> Comparison:
    """Treatment against control (e.g. treated vs holdout, variant b vs variant a)."""
    if control.n == 0 or treatment.n == 0:
        empty = control.name if control.n == 0 else treatment.name
        return Comparison(
            control, treatment, 0.0, 0.0, 0.0, None, None, "none", None, f"'{empty}' is empty"
        )
    from statsmodels.stats.proportion import confint_proportions_2indep

    difference = treatment.rate - control.rate
    low, high = confint_proportions_2indep(
        treatment.conversions,
        treatment.n,
        control.conversions,
        control.n,
        method="newcomb",
        compare="diff",
        alpha=ALPHA,
    )
    lift = treatment.rate / control.rate - 1 if control.rate > 0 else None
    p_value, test = _p_value(control, treatment)
    pooled = (control.conversions + treatment.conversions) / (control.n + treatment.n)
    baseline = control.rate if control.rate > 0 else pooled
    required = required_sample(baseline, treatment.n / control.n)
    return Comparison(
        control,
        treatment,
        difference,
        float(low),
        float(high),
        lift,
        p_value,
        test,
        required,
        _warning(control, treatment, required),
    )


def _p_value(control: Arm, treatment: Arm) -> tuple[float | None, str]:
    table = [
        [treatment.conversions, treatment.n - treatment.conversions],
        [control.conversions, control.n - control.conversions],
    ]
    total = control.n + treatment.n
    successes = control.conversions + treatment.conversions
    if successes in (0, total):
        return 1.0, "none"  # nobody (or everybody) converted: no difference to test
    expected = [
        row_n * col / total
        for row_n in (treatment.n, control.n)
        for col in (successes, total - successes)
    ]
    if min(expected) < 5:
        from scipy.stats import fisher_exact

        _odds, p = fisher_exact(table, alternative="two-sided")
        return float(p), "fisher"
    from statsmodels.stats.proportion import proportions_ztest

    _z, p = proportions_ztest(
        [treatment.conversions, control.conversions], [treatment.n, control.n]
    )
    return float(p), "z-test"


def _warning(control: Arm, treatment: Arm, required: int | None) -> str | None:
    conversions = control.conversions + treatment.conversions
    if conversions < MIN_CONVERSIONS:
        return f"{conversions} conversions in all (at least {MIN_CONVERSIONS} needed)"
    if required is None:
        return None
    need_treated = math.ceil(required * treatment.n / control.n)
    if control.n < required or treatment.n < need_treated:
        return (
            f"{control.name} has {control.n} and {treatment.name} {treatment.n} customers; "
            f"detecting a {MIN_DETECTABLE_LIFT:.0%} lift needs {required} and {need_treated}"
        )
    return None
