"""Is the cohort big enough for the model? Riley et al.'s criteria for time-to-event models.

Riley RD, Snell KIE, Ensor J, et al. *Minimum sample size for developing a multivariable
prediction model: Part II - binary and time-to-event outcomes.* Stat Med 2019;38:1276-96; and the
worked example in Riley et al., BMJ 2020;368:m441 (the ``pmsampsize`` calculator). For p candidate
parameters and an anticipated Cox-Snell R² (R²cs):

1. expected uniform shrinkage ≥ 0.9: n ≥ p / ((S − 1)·ln(1 − R²cs/S)) with S = 0.9;
2. optimism in Nagelkerke's R² ≤ 0.05: the same formula with S = R²cs / (R²cs + 0.05·max R²cs),
   where max R²cs = 1 − exp(2·lnL₀/n) and lnL₀/n = λf·(ln λ − 1) for an overall event rate λ
   (events per month) and mean follow-up f (months);
3. the overall risk by the horizon t, 1 − exp(−λt), estimated within ±0.05 (95 % CI of the rate
   λ ± 1.96·√(λ/(n·f))).

Applied to a cohort that already exists, the same formulas give the shrinkage to expect at its
size. R²cs is anticipated from the unpenalised Cox fit, shrunk by van Houwelingen's heuristic
(1 − p/LR). When that leaves nothing, Riley's conservative default (15 % of max R²cs) is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["SampleSize", "anticipated_r2", "riley_survival"]

SHRINKAGE_TARGET = 0.9
OPTIMISM_MARGIN = 0.05
RISK_MARGIN = 0.05


@dataclass
class SampleSize:
    """Riley's three criteria for one model on one cohort."""

    n: int
    events: int
    parameters: int
    r2_cs: float
    max_r2_cs: float
    required_n: dict[str, int]
    expected_shrinkage: float  # at this cohort's size
    notes: list[str] = field(default_factory=list)

    @property
    def epv(self) -> float:
        """Events per candidate parameter."""
        return self.events / max(self.parameters, 1)

    @property
    def minimum_n(self) -> int:
        """The largest of the three criteria's sample sizes."""
        return max(self.required_n.values())

    @property
    def adequate(self) -> bool:
        """True when the cohort meets all three criteria."""
        return self.n >= self.minimum_n

    def summary(self) -> str:
        """One line for the user."""
        verdict = "meets" if self.adequate else "is below"
        return (
            f"{self.n} patients, {self.events} events, {self.parameters} parameters (EPV {self.epv:.1f}); expected "
            f"shrinkage {self.expected_shrinkage:.2f}; Riley et al. minimum n = {self.minimum_n} "
            f"({', '.join(f'{k} {v}' for k, v in self.required_n.items())}): this cohort {verdict} it"
        )


def _n_for_shrinkage(parameters: int, r2_cs: float, shrinkage: float) -> int:
    return math.ceil(parameters / ((shrinkage - 1) * math.log(1 - r2_cs / shrinkage)))


def _shrinkage_at(n: int, parameters: int, r2_cs: float) -> float:
    """Solve n = p / ((S − 1)·ln(1 − R²/S)) for S (n grows with S, so bisect)."""
    lo, hi = r2_cs + 1e-12, 1 - 1e-12
    for _ in range(200):
        mid = (lo + hi) / 2
        if parameters / ((mid - 1) * math.log(1 - r2_cs / mid)) > n:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _n_for_risk(rate: float, follow_up: float, horizon: float) -> int:
    risk = 1 - math.exp(-rate * horizon)
    n = 1
    while n < 10**8:
        half = 1.96 * math.sqrt(rate / (n * follow_up))
        upper = 1 - math.exp(-(rate + half) * horizon)
        lower = 1 - math.exp(-max(rate - half, 0.0) * horizon)
        if max(upper - risk, risk - lower) <= RISK_MARGIN:
            break
        n = max(n + 1, int(n * 1.02))
    # step back to the smallest n that still meets the margin
    while n > 1:
        half = 1.96 * math.sqrt(rate / ((n - 1) * follow_up))
        upper = 1 - math.exp(-(rate + half) * horizon)
        lower = 1 - math.exp(-max(rate - half, 0.0) * horizon)
        if max(upper - risk, risk - lower) > RISK_MARGIN:
            break
        n -= 1
    return n


def riley_survival(
    *,
    parameters: int,
    r2_cs: float,
    rate: float,
    mean_follow_up: float,
    horizon: float,
    n: int | None = None,
    events: int | None = None,
) -> SampleSize:
    """Riley et al.'s minimum sample size for a time-to-event model, and this cohort against it.

    >>> s = riley_survival(parameters=30, r2_cs=0.051, rate=0.065, mean_follow_up=2.07, horizon=2)
    >>> s.required_n["shrinkage"], s.minimum_n, round(s.minimum_n * 0.065 * 2.07)  # BMJ 2020 example
    (5143, 5143, 692)
    """
    max_r2 = 1 - math.exp(2 * rate * mean_follow_up * (math.log(rate) - 1))
    if not 0 < r2_cs < max_r2:
        raise ValueError(f"anticipated R²cs must be in (0, {max_r2:.3f}), got {r2_cs}")
    s2 = r2_cs / (r2_cs + OPTIMISM_MARGIN * max_r2)
    required = {
        "shrinkage": _n_for_shrinkage(parameters, r2_cs, SHRINKAGE_TARGET),
        "optimism": _n_for_shrinkage(parameters, r2_cs, s2),
        "overall risk": _n_for_risk(rate, mean_follow_up, horizon),
    }
    size = n if n is not None else max(required.values())
    shrinkage = _shrinkage_at(size, parameters, r2_cs)
    return SampleSize(
        size,
        events if events is not None else round(size * rate * mean_follow_up),
        parameters,
        r2_cs,
        max_r2,
        required,
        shrinkage,
    )


def anticipated_r2(
    lr_statistic: float, n: int, parameters: int, rate: float, mean_follow_up: float
) -> tuple[float, str]:
    """R²cs to plan with, from an unpenalised fit's likelihood-ratio statistic; and how it was chosen."""
    max_r2 = 1 - math.exp(2 * rate * mean_follow_up * (math.log(rate) - 1))
    apparent = 1 - math.exp(-lr_statistic / n)
    heuristic = 1 - parameters / lr_statistic if lr_statistic > 0 else 0.0
    adjusted = apparent * heuristic
    if adjusted > 0.01 * max_r2:
        return min(adjusted, 0.99 * max_r2), (
            f"R²cs {adjusted:.3f}: apparent {apparent:.3f} shrunk by van Houwelingen's 1 − p/LR = {heuristic:.2f}"
        )
    return 0.15 * max_r2, "R²cs: 15 % of its maximum (the fit shows no signal beyond its parameters)"
