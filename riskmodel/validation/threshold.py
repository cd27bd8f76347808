"""Does a dose have a threshold? Four Cox fits of the same dose compared honestly.

:func:`threshold_analysis` fits the dose (with the same adjustment covariates) four ways:

* **linear**;
* **spline**: Harrell's restricted cubic spline (:func:`riskmodel.validation.dose_response`);
* **threshold**: dichotomised at a pre-specified cut-off (the study's D90 ≥ 110 Gy);
* **data-driven**: dichotomised at the cut-point that maximises the association, searched over
  the observed doses between the 10th and 90th percentiles (Lausen & Schumacher, Biometrics
  1992;48:73-85): by the log-rank χ² without adjustment (the maximally selected log-rank
  statistic), by the Cox likelihood-ratio χ² with it.

Each fit gets its log partial likelihood, AIC (R's ``AIC(coxph)``), LR χ² against the fit without
the dose (the adjustment covariates alone) and Harrell's C, apparent and corrected for optimism by
Harrell's bootstrap (Harrell, Lee & Mark, Stat Med 1996;15:361-87; as ``rms::validate``): every
resample refits all four, and **the data-driven cut-point is searched again inside every
resample**, so the optimism of choosing it is counted; the spline keeps the knots of the whole
data, as ``rms::validate`` does. A resample where any fit fails (no event, a group left empty,
separation) is left out of every model, counted in ``failed``. The data-driven LR χ² is
nominal (the search inflates it); its row's ``p`` is Lausen & Schumacher's approximation for a
maximally selected statistic instead.

Only the risk model's C is bootstrapped here (not the calibration metrics of
:func:`riskmodel.validation.validate`): the question is which dose coding discriminates, and four
fits a resample keep it to seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.metrics import harrell_c
from riskmodel.validation.dose_response import (
    DoseData,
    cox_coef,
    cox_summary,
    dose_data,
    dose_response,
    null_loglik,
    spline_basis,
)

__all__ = [
    "MODELS",
    "ThresholdAnalysis",
    "best_cut_point",
    "lausen_schumacher_p",
    "logrank_at_cuts",
    "threshold_analysis",
]

MODELS = ("linear", "spline", "threshold", "data-driven")
_MAX_CANDIDATES = 100  # cut-points tried at most (evenly spaced in rank when the doses are many)
EVENTS_PER_DF = 15  # Harrell's rule of thumb: below this many events per parameter, exploratory


@dataclass
class ThresholdAnalysis:
    """The four fits side by side (``table``, one row per :data:`MODELS`), the data-driven
    cut-point, the plain-words ``verdict`` and the bootstrap's bookkeeping."""

    table: pd.DataFrame
    cut_point: float
    cutoff: float
    nonlinear_p: float
    verdict: str
    n_resamples: int
    failed: int
    events: int
    failures: list[str] = field(default_factory=list)

    def row(self, model: str) -> pd.Series:
        """One model's row of ``table``."""
        return self.table[self.table["model"] == model].set_index("model").iloc[0]


def lausen_schumacher_p(chi2: float, low: float = 0.1, high: float = 0.9) -> float:
    """Approximate p of a maximally selected standardised statistic (its largest χ² over cut-points
    between the ``low`` and ``high`` quantiles), Lausen & Schumacher (1992), eq. 4 (after Miller &
    Siegmund 1982): p ≈ φ(b)(b − 1/b)·log(high(1 − low) / (low(1 − high))) + 4φ(b)/b, b = √χ².

    It is meant for the upper tail (p below about 0.5); it is capped at 1.

    By hand, χ² = 9 (b = 3, φ(3) = 0.0044318): 0.0044318 · 2.6667 · log 81 + 4 · 0.0044318 / 3:

    >>> round(lausen_schumacher_p(9.0), 4)
    0.0578
    """
    b = math.sqrt(max(chi2, 1e-12))
    phi = stats.norm.pdf(b)
    p = phi * (b - 1 / b) * math.log(high * (1 - low) / (low * (1 - high))) + 4 * phi / b
    return float(min(max(p, 0.0), 1.0))


def _candidates(dose: np.ndarray, low: float, high: float) -> np.ndarray:
    lo, hi = np.quantile(dose, [low, high])
    values = np.unique(dose[(dose >= lo) & (dose <= hi) & (dose > dose.min())])
    if values.size > _MAX_CANDIDATES:
        values = values[np.unique(np.linspace(0, values.size - 1, _MAX_CANDIDATES).round().astype(int))]
    return values


def best_cut_point(data: DoseData, low: float = 0.1, high: float = 0.9) -> tuple[float, float]:
    """The cut-point c (dose ≥ c against below) with the largest χ², and that χ².

    Candidates: the observed doses between the ``low`` and ``high`` quantiles that leave at least
    one event on each side (otherwise the hazard ratio is infinite). Without adjustment
    covariates the χ² is the log-rank test's (the maximally selected log-rank statistic); with them,
    the Cox likelihood-ratio χ² of the dichotomised dose given the adjustment. Ties keep the lowest c.
    """
    if not data.adjust.shape[1]:
        cuts = _candidates(data.dose, low, high)
        every = logrank_at_cuts(data.time, data.event, data.dose, cuts)
        if not cuts.size or not np.isfinite(every).any():
            raise ValueError("no cut-point between the search quantiles leaves events on both sides")
        k = int(np.argmax(np.where(np.isfinite(every), every, -np.inf)))  # the first of equal maxima: the lowest c
        return float(cuts[k]), float(every[k])
    best, best_chi2 = math.nan, -math.inf
    ll_null = null_loglik(data)
    for c in _candidates(data.dose, low, high):
        high_dose = data.dose >= c
        if not (data.event & high_dose).any() or not (data.event & ~high_dose).any():
            continue  # a side without events has an infinite hazard ratio, not a usable dichotomy
        try:
            fit = cox_summary(np.column_stack([high_dose, data.adjust]), data.time, data.event)
        except (ValueError, np.linalg.LinAlgError):
            continue
        chi2 = 2 * (fit.loglik - ll_null)
        if chi2 > best_chi2:
            best, best_chi2 = float(c), float(chi2)
    if math.isnan(best):
        raise ValueError("no cut-point between the search quantiles leaves events on both sides")
    return best, best_chi2


def logrank_at_cuts(time: np.ndarray, event: np.ndarray, dose: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The two-group log-rank χ² of dose ≥ c against below, for every c in ``cuts`` at once
    (:func:`riskmodel.stats.logrank_chi2`'s statistic, Mantel-Haenszel variance); NaN where a side
    has no event.

    Patient i is at risk at the j-th event time while j < r_i and in the high group of the k-th cut
    while k < m_i, so the at-risk counts of every (event time, cut) are one 2-D histogram of
    (r, m) summed from its far corner: O(n log n + event times × cuts), not one test per cut.

    >>> t, e = np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, True, True, True])
    >>> round(float(logrank_at_cuts(t, e, np.array([1.0, 1.0, 2.0, 2.0]), np.array([2.0]))[0]), 4)
    2.8824
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    cuts = np.asarray(cuts, dtype=float)
    event_times = np.unique(time[event])
    J, C = event_times.size, cuts.size
    if J == 0 or C == 0:
        return np.full(C, np.nan)
    m = np.searchsorted(cuts, dose, side="right")  # high for the cuts below index m
    r = np.searchsorted(event_times, time, side="right")  # at risk at the event times below index r
    H = np.bincount(r * (C + 1) + m, minlength=(J + 1) * (C + 1)).reshape(J + 1, C + 1).astype(float)
    S = H[::-1, ::-1].cumsum(axis=0).cumsum(axis=1)[::-1, ::-1]  # S[a, b] = Σ H[≥ a, ≥ b]
    n, n1 = S[1:, 0], S[1:, 1:]
    at = np.searchsorted(event_times, time[event]) * (C + 1) + m[event]
    D = np.bincount(at, minlength=J * (C + 1)).reshape(J, C + 1).astype(float)
    D = D[:, ::-1].cumsum(axis=1)[:, ::-1]
    d, d1 = D[:, 0], D[:, 1:]
    n0, d0 = n[:, None] - n1, d[:, None] - d1  # the low-dose group, as logrank_chi2's first group
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n > 1, d * (n - d) / (n**2 * (n - 1)), 0.0)
        variance = (w[:, None] * n0 * n[:, None]).sum(axis=0) - (w[:, None] * n0 * n0).sum(axis=0)
        diff = d0.sum(axis=0) - (n0 * (d / n)[:, None]).sum(axis=0)
        chi2 = np.where(variance > 0, diff * diff / variance, 0.0)
    both = (d1.sum(axis=0) > 0) & (d0.sum(axis=0) > 0)
    return np.where(both, chi2, np.nan)


Design = Callable[[np.ndarray], np.ndarray]


def _designs(data: DoseData, knots: np.ndarray, cutoff: float, low: float, high: float) -> dict[str, Design]:
    """Each model's dose columns as a function of dose, learnt from ``data`` (the cut-point searched)."""
    cut, _ = best_cut_point(data, low, high)
    return {
        "linear": lambda x: x[:, None],
        "spline": lambda x: spline_basis(x, knots),
        "threshold": lambda x: (x >= cutoff).astype(float)[:, None],
        "data-driven": lambda x: (x >= cut).astype(float)[:, None],
    }


def _subset(data: DoseData, idx: np.ndarray) -> DoseData:
    return DoseData(data.time[idx], data.event[idx], data.dose[idx], data.adjust[idx], data.adjust_names, 0)


def _c_indices(train: DoseData, tests: Sequence[DoseData], designs: dict[str, Design]) -> dict[str, list[float]]:
    """Harrell's C of each model fitted on ``train``, on each of ``tests``."""
    out: dict[str, list[float]] = {}
    for model, design in designs.items():
        X = np.column_stack([design(train.dose), train.adjust])
        coef = cox_coef(X, train.time, train.event)
        out[model] = [harrell_c(d.event, d.time, np.column_stack([design(d.dose), d.adjust]) @ coef) for d in tests]
    return out


def _bootstrap(
    data: DoseData, knots: np.ndarray, cutoff: float, low: float, high: float, n_resamples: int, seed: int
) -> tuple[pd.DataFrame, list[str]]:
    """Per resample: each model's optimism (C on its resample − C on the original data)."""
    rows, failures = [], []
    for i, s in enumerate(np.random.SeedSequence(seed).spawn(n_resamples)):
        idx = np.random.default_rng(s).integers(0, len(data.time), len(data.time))
        boot = _subset(data, idx)
        try:
            if not boot.event.any():
                raise ValueError("no event in the resample")
            c = _c_indices(boot, [boot, data], _designs(boot, knots, cutoff, low, high))
        except (ValueError, np.linalg.LinAlgError) as exc:
            failures.append(f"resample {i}: {str(exc).splitlines()[0]}")
            continue
        rows.append({model: own - original for model, (own, original) in c.items()})
    return pd.DataFrame(rows, columns=list(MODELS)), failures


def _fits_table(data: DoseData, designs: dict[str, Design], knots: np.ndarray, cutoff: float, cut: float) -> list[dict]:
    ll_null = null_loglik(data)
    labels = {
        "linear": "linear",
        "spline": f"restricted cubic spline, {len(knots)} knots",
        "threshold": f"dichotomised at {cutoff:g} (pre-specified)",
        "data-driven": f"dichotomised at {cut:g} (data-driven)",
    }
    rows = []
    for model, design in designs.items():
        X = design(data.dose)
        fit = cox_summary(np.column_stack([X, data.adjust]), data.time, data.event)
        lr = 2 * (fit.loglik - ll_null)
        df = X.shape[1]
        rows.append(
            {
                "model": model,
                "coding": labels[model],
                "log-likelihood": fit.loglik,
                "AIC": fit.aic,
                "LR χ²": lr,
                "df": df,
                "p": float(stats.chi2.sf(lr, df)),
            }
        )
    return rows


def threshold_analysis(
    time: Any,
    event: Any,
    dose: Any,
    adjust: pd.DataFrame | None = None,
    *,
    cutoff: float = 110.0,
    knots: int | Sequence[float] = 4,
    n_resamples: int = 200,
    seed: int = 0,
    search: tuple[float, float] = (0.1, 0.9),
    name: str = "D90",
    unit: str = "Gy",
) -> ThresholdAnalysis:
    """Linear, spline, dichotomised at ``cutoff`` and at a data-driven cut-point: AIC, LR χ², and
    Harrell's C apparent and bootstrap-corrected (``n_resamples``, reproducible from ``seed``).

    ``search``: the quantiles between which the data-driven cut-point is sought. ``name`` and
    ``unit`` word the verdict.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    data = dose_data(time, event, dose, adjust)
    response = dose_response(data.time, data.event, data.dose, None if not data.adjust_names else adjust, knots)
    low, high = search
    cut, cut_chi2 = best_cut_point(data, low, high)
    designs = _designs(data, response.knots, cutoff, low, high)
    rows = _fits_table(data, designs, response.knots, cutoff, cut)
    apparent = _c_indices(data, [data], designs)
    optimism, failures = _bootstrap(data, response.knots, cutoff, low, high, n_resamples, seed)
    for row in rows:
        opt = float(optimism[row["model"]].mean()) if len(optimism) else math.nan
        row.update({"C (apparent)": apparent[row["model"]][0], "optimism": opt})
        row["C (corrected)"] = row["C (apparent)"] - opt
    rows[-1]["p"] = lausen_schumacher_p(cut_chi2, low, high)
    table = pd.DataFrame(rows)
    nonlinear_p = response.test("nonlinear")[2]
    overall_p = response.test("overall")[2]
    df_spline = len(response.knots) - 1 + data.adjust.shape[1]
    verdict = threshold_verdict(table, nonlinear_p, overall_p, response.events, df_spline, name, unit)
    return ThresholdAnalysis(
        table, cut, cutoff, nonlinear_p, verdict, n_resamples, len(failures), response.events, failures
    )


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def threshold_verdict(
    table: pd.DataFrame, nonlinear_p: float, overall_p: float, events: int, df: int, name: str, unit: str
) -> str:
    """The threshold analysis in plain words, generated from its numbers.

    A threshold is supported only when the pre-specified dichotomy has a lower AIC than both the
    linear and the spline fit by more than 2 (less does not tell fits apart) *and* the spline finds
    the dose-response non-linear (LR p < 0.05): a step is a bend, and without evidence of one a
    lower AIC is as well explained by a straight line the dichotomy happens to follow.
    """
    t = table.set_index("model")
    aic = t["AIC"]
    cut_label = str(t.at["threshold", "coding"]).removeprefix("dichotomised at ").removesuffix(" (pre-specified)")
    smooth_best = min(aic["linear"], aic["spline"])
    nonlinear = f"the spline's non-linearity test gives {_fmt_p(nonlinear_p)}"
    numbers = f"(AIC {aic['threshold']:.1f}; linear {aic['linear']:.1f}, spline {aic['spline']:.1f})"
    if aic["threshold"] < smooth_best - 2 and nonlinear_p < 0.05:
        parts = [
            f"The data are compatible with a threshold at {cut_label} {unit}: the dichotomised fit has a lower "
            f"AIC than the linear and spline fits by more than 2 {numbers}, and {nonlinear}. One cohort cannot "
            "establish a threshold; it needs external confirmation."
        ]
    elif aic["threshold"] < smooth_best:
        why = "by less than 2 " if aic["threshold"] >= smooth_best - 2 else ""
        parts = [
            f"The data do not establish a threshold at {cut_label} {unit}: the dichotomised fit has a lower AIC "
            f"{why}{numbers}, but {nonlinear}, so nothing shows the dose-response bending there; a continuous "
            f"{name} keeps the information a cut-off throws away."
        ]
    else:
        parts = [
            f"The data do not support a threshold: the dichotomised fit at {cut_label} {unit} has a higher AIC "
            f"than the smooth fits {numbers}, and {nonlinear}."
        ]
    if overall_p >= 0.05:
        parts.append(
            f"Nor is there clear evidence of any dose-response: the spline's overall LR test gives {_fmt_p(overall_p)}."
        )
    d = t.loc["data-driven"]
    cut = str(d["coding"]).removeprefix("dichotomised at ").removesuffix(" (data-driven)")
    parts.append(
        f"The best-looking cut-point, {cut} {unit}, was chosen by searching the data: its C of "
        f"{d['C (apparent)']:.3f} falls to {d['C (corrected)']:.3f} once the search is repeated in every bootstrap "
        f"resample (linear {t.at['linear', 'C (corrected)']:.3f}, spline {t.at['spline', 'C (corrected)']:.3f}, "
        f"{cut_label} {unit} {t.at['threshold', 'C (corrected)']:.3f}), and corrected for the search its "
        f"{_fmt_p(float(d['p']))}."
    )
    if events < EVENTS_PER_DF * df:
        parts.append(
            f"Exploratory: {events} events for a spline with {df} parameters (fewer than {EVENTS_PER_DF} events "
            "per parameter); every comparison here is uncertain."
        )
    return " ".join(parts)
