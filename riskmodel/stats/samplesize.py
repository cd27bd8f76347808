"""Is the cohort big enough for the model? Riley et al.'s criteria for time-to-event models.

Riley RD, Snell KIE, Ensor J, et al. *Minimum sample size for developing a multivariable
prediction model: Part II - binary and time-to-event outcomes.* Stat Med 2019;38:1276-96; Riley RD,
Ensor J, Snell KIE, et al. *Calculating the sample size required for developing a clinical
prediction model.* BMJ 2020;368:m441. The criteria are computed as the R package ``pmsampsize``
(J. Ensor) computes them; the tests hold riskmodel to pmsampsize's own test values.
For p candidate parameters, an anticipated Cox-Snell R² (R²cs), an overall event rate λ, a mean
follow-up f and a time point t, with λ, f and t in any one time unit (only λf and λt enter, so the
unit cannot change the answer):

1. expected uniform shrinkage ≥ 0.9: n₁ = ⌈p / ((S − 1)·ln(1 − R²cs/S))⌉ with S = 0.9;
2. optimism in Nagelkerke's R² ≤ 0.05: n₂ by the same formula with S = R²cs / (R²cs + 0.05·max R²cs).
   max R²cs = 1 − exp(2·lnL₀/N), where lnL₀ = E·ln(E/N) − E is the null log-likelihood of an
   exponential model for a notional N = 10,000 people with E = ⌈λf·N⌉ events (pmsampsize's
   construction). So lnL₀/N ≈ λf·(ln(λf) − 1), which has no time unit. The form λf·(ln λ − 1), used by
   pmsampsize 1.0.1 and by riskmodel before, has one: the BMJ inputs gave 0.634 in years, 0.812 in
   months and 0.925 in days;
3. the overall risk by t, 1 − exp(−λt), is not solved for. As in pmsampsize (and the BMJ example), its
   95 % interval 1 − exp(−(λ ± 1.96·√(λ/(f·n)))·t) is reported at n = max(n₁, n₂); Riley et al. ask
   for a margin of error ≤ 0.05, and :meth:`SampleSize.summary` says when it is wider.

The minimum n is max(n₁, n₂). Rounding, by ``rounding``:

* ``"bmj2020"`` (the default): max R²cs to 2 decimals and S to 3 before criterion 2, as the BMJ 2020
  worked example and pmsampsize 1.0.2-1.1.0 do: its n₂ = 1,049, and 2,279 in pmsampsize's own test
  with R²cs 0.3 and 80 parameters. These are the figures clinicians cite, so they are the default;
* ``"exact"``: no rounding, as pmsampsize 1.1.1 and later (1.1.3 is current): 1,039 and 2,272.

pmsampsize also rounds the person-time f·n to 0.1 in criterion 3; riskmodel does not, so that the
interval, like n, is the same in every time unit.

Applied to a cohort that already exists, the same formulas give the shrinkage to expect at its
size. R²cs is anticipated from the unpenalised Cox fit, shrunk by van Houwelingen's heuristic
(1 − p/LR). When that leaves nothing, Riley's conservative default (15 % of max R²cs) is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Rounding", "SampleSize", "anticipated_r2", "max_r2_cs", "riley_survival"]

Rounding = Literal["bmj2020", "exact"]

SHRINKAGE_TARGET = 0.9
OPTIMISM_MARGIN = 0.05
RISK_MARGIN = 0.05
NOTIONAL_N = 10_000  # pmsampsize's notional cohort for the null log-likelihood


@dataclass
class SampleSize:
    """Riley's criteria for one model on one cohort.

    ``required_n`` holds the sizes criteria 1 and 2 solve for. ``overall_risk`` is criterion 3: the
    risk by the horizon and its 95 % interval at the minimum n.
    """

    n: int
    events: int
    parameters: int
    r2_cs: float
    max_r2_cs: float
    required_n: dict[str, int]
    expected_shrinkage: float  # at this cohort's size
    notes: list[str] = field(default_factory=list)
    overall_risk: tuple[float, float, float] | None = None

    @property
    def epv(self) -> float:
        """Events per candidate parameter."""
        return self.events / max(self.parameters, 1)

    @property
    def minimum_n(self) -> int:
        """The largest of the criteria's sample sizes."""
        return max(self.required_n.values())

    @property
    def overall_risk_precise(self) -> bool | None:
        """Criterion 3: is the overall risk's 95 % margin of error at most 0.05 at the minimum n?"""
        if self.overall_risk is None:
            return None
        risk, low, high = self.overall_risk
        return max(high - risk, risk - low) <= RISK_MARGIN

    @property
    def adequate(self) -> bool:
        """True when the cohort meets criteria 1 and 2 (criterion 3 sets no size)."""
        return self.n >= self.minimum_n

    def summary(self) -> str:
        """One line for the user."""
        verdict = "meets" if self.adequate else "is below"
        risk = ""
        if self.overall_risk is not None:
            r, low, high = self.overall_risk
            wide = "" if self.overall_risk_precise else f", a margin above {RISK_MARGIN:g}"
            risk = f"; overall risk {r:.3f}, 95% CI {low:.3f}-{high:.3f} at that n{wide}"
        return (
            f"{self.n} patients, {self.events} events, {self.parameters} parameters (EPV {self.epv:.1f}); expected "
            f"shrinkage {self.expected_shrinkage:.2f}; Riley et al. minimum n = {self.minimum_n} "
            f"({', '.join(f'{k} {v}' for k, v in self.required_n.items())}{risk}): this cohort {verdict} it"
        )


def max_r2_cs(rate: float, mean_follow_up: float, *, rounding: Rounding = "bmj2020") -> float:
    """The largest Cox-Snell R² the outcome allows, 1 − exp(2·lnL₀/N), as pmsampsize computes it.

    ``rate`` and ``mean_follow_up`` in one time unit, any. BMJ 2020 example (0.555 to 3 places):

    >>> exact = {"rounding": "exact"}
    >>> round(max_r2_cs(0.065, 2.07, **exact), 4), round(max_r2_cs(0.065 / 12, 2.07 * 12, **exact), 4)
    (0.5547, 0.5547)
    >>> max_r2_cs(0.065, 2.07)  # rounded to 2 places, as the BMJ example
    0.55
    """
    if not (rate > 0 and mean_follow_up > 0):
        raise ValueError(f"rate and mean follow-up must be positive, got {rate} and {mean_follow_up}")
    # λf of the same inputs in another unit differs in its last bits; rounding first keeps that
    # from adding one event to the notional cohort through the ceiling
    events = math.ceil(round(rate * mean_follow_up * NOTIONAL_N, 6))
    ln_null = events * math.log(events / NOTIONAL_N) - events
    value = 1 - math.exp(2 * ln_null / NOTIONAL_N)
    return round(value, 2) if rounding == "bmj2020" else value


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


def _overall_risk(rate: float, mean_follow_up: float, horizon: float, n: int) -> tuple[float, float, float]:
    """Criterion 3: the risk by ``horizon`` and its 95 % interval from n patients' person-time."""
    half = 1.96 * math.sqrt(rate / (mean_follow_up * n))
    risk, upper = (1 - math.exp(-r * horizon) for r in (rate, rate + half))
    lower = 1 - math.exp(-max(rate - half, 0.0) * horizon)  # a rate below 0 means no risk
    return risk, lower, upper


def riley_survival(
    *,
    parameters: int,
    r2_cs: float,
    rate: float,
    mean_follow_up: float,
    horizon: float,
    n: int | None = None,
    events: int | None = None,
    rounding: Rounding = "bmj2020",
) -> SampleSize:
    """Riley et al.'s minimum sample size for a time-to-event model, and this cohort against it.

    ``rate`` (events per unit of time), ``mean_follow_up`` and ``horizon`` share one time unit, any.
    ``rounding`` chooses the pmsampsize version matched (see the module): ``"bmj2020"``, the default,
    matches the BMJ 2020 example and pmsampsize 1.0.2-1.1.0; ``"exact"`` matches pmsampsize ≥ 1.1.1.

    BMJ 2020 example: 30 parameters, R²cs 0.051, 0.065 events a year, 2.07 years' mean follow-up,
    risk by 2 years.

    >>> bmj = {"parameters": 30, "r2_cs": 0.051, "rate": 0.065, "mean_follow_up": 2.07, "horizon": 2}
    >>> s = riley_survival(**bmj)
    >>> s.max_r2_cs, s.required_n, s.minimum_n, s.events
    (0.55, {'shrinkage': 5143, 'optimism': 1049}, 5143, 692)
    >>> [round(r, 3) for r in s.overall_risk]  # criterion 3 at n = 5143: precise
    [0.122, 0.113, 0.13]
    >>> exact = riley_survival(**bmj, rounding="exact")
    >>> round(exact.max_r2_cs, 3), exact.required_n["optimism"]
    (0.555, 1039)
    """
    if rounding not in ("exact", "bmj2020"):
        raise ValueError(f"rounding must be 'bmj2020' or 'exact', got {rounding!r}")
    max_r2 = max_r2_cs(rate, mean_follow_up, rounding=rounding)
    if not 0 < r2_cs < max_r2:
        raise ValueError(f"anticipated R²cs must be in (0, {max_r2:.3f}), got {r2_cs}")
    s2 = r2_cs / (r2_cs + OPTIMISM_MARGIN * max_r2)
    required = {
        "shrinkage": _n_for_shrinkage(parameters, r2_cs, SHRINKAGE_TARGET),
        "optimism": _n_for_shrinkage(parameters, r2_cs, round(s2, 3) if rounding == "bmj2020" else s2),
    }
    minimum = max(required.values())
    size = n if n is not None else minimum
    return SampleSize(
        size,
        events if events is not None else round(size * rate * mean_follow_up),
        parameters,
        r2_cs,
        max_r2,
        required,
        _shrinkage_at(size, parameters, r2_cs),
        overall_risk=_overall_risk(rate, mean_follow_up, horizon, minimum),
    )


def anticipated_r2(
    lr_statistic: float,
    n: int,
    parameters: int,
    rate: float,
    mean_follow_up: float,
    *,
    rounding: Rounding = "bmj2020",
) -> tuple[float, str]:
    """R²cs to plan with, from an unpenalised fit's likelihood-ratio statistic; and how it was chosen.

    The ceiling is :func:`max_r2_cs`, as in :func:`riley_survival`.
    """
    max_r2 = max_r2_cs(rate, mean_follow_up, rounding=rounding)
    apparent = 1 - math.exp(-lr_statistic / n)
    heuristic = 1 - parameters / lr_statistic if lr_statistic > 0 else 0.0
    adjusted = apparent * heuristic
    if adjusted > 0.01 * max_r2:
        return min(adjusted, 0.99 * max_r2), (
            f"R²cs {adjusted:.3f}: apparent {apparent:.3f} shrunk by van Houwelingen's 1 − p/LR = {heuristic:.2f}"
        )
    return 0.15 * max_r2, "R²cs: 15 % of its maximum (the fit shows no signal beyond its parameters)"
