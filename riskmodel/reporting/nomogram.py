"""A nomogram as numbers: points per predictor value, total points, linear predictor, S(h) or CIF(h).

The layout and scaling are those of Harrell's ``rms::nomogram`` (Harrell, *Regression Modeling
Strategies*, 2nd ed., §10.10 and §20.8; Iasonos et al., J Clin Oncol 2008;26:1364-70): each
predictor's contribution to the linear predictor, Xβ of its own terms, is evaluated at the values
of its axis; the predictor whose contributions span the widest range gets 0-100 points, and every
other axis is scaled by the same factor, ``points = (Xβ − min Xβ) · 100 / max range``. The total
points T of a patient map back to the linear predictor ``lp = intercept + T / scale`` (the
intercept gathers each axis's minimum and the centring at the training means), and to the
survival probability at each horizon, S(h | lp) = S₀(h)^exp(lp) with the model's baseline (of its ties)
(S₀ at the training means of the features, as ``rms::Survival`` of a ``cph`` fit).

A Fine-Gray model (Fine & Gray, JASA 1999) gets the same points from β₁, its event of interest's
subdistribution coefficients, and one axis per horizon of that event's cumulative incidence,
CIF₁(h | lp) = 1 − exp(−Λ₁₀(h)·exp(lp)) (as ``cmprsk::predict.crr``), labelled with the endpoint's
words ("CIF of local failure at 12 months (death competing)"). The competing event's CIF comes
from a separate model and is not drawn; the caption says so. The probability mapping is
:func:`riskmodel.reporting.nomogram_form.probability`, shared by both.

Axes are in clinical units, never encodings (labels from :mod:`riskmodel.features.labels`): a log
feature is drawn as the value itself (its ticks then fall at log spacing), a restricted cubic
spline as its non-linear point scale over the input, a coded category as its levels (levels with
equal points share one tick: "CR/PR"). The values of a numeric axis lie within the model's stored
training range (5th smallest to 5th largest, :func:`riskmodel.features.safe_harbor.shared_range`),
so the nomogram carries no patient's value and does not extrapolate.

Only a Cox and a Fine-Gray model have a nomogram: the forest's and the boosting's predictions are not a
sum of one function per predictor, nor is a cause-specific Cox model's CIF (two hazards through the
Aalen-Johansen formula). :func:`check_nomogram_model` says so, and points to the calculator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.contract import COLUMNS
from riskmodel.errors import UserInputError
from riskmodel.features.labels import feature_input, input_label, input_unit
from riskmodel.features.safe_harbor import shown_value
from riskmodel.models.base import check_horizons
from riskmodel.reporting.nomogram_form import (
    CALCULATOR,
    LinearForm,
    Outcome,
    check_nomogram_model,
    competing_words,
    probability,
)
from riskmodel.scoring import RiskModel

__all__ = ["Nomogram", "NomogramAxis", "check_nomogram_model", "nice_ticks", "nomogram_table"]

_PROBABILITIES = (0.99, 0.98, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02, 0.01)
_LOG_MANTISSAS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)


@dataclass(frozen=True)
class NomogramAxis:
    """One predictor's axis: its input column, clinical label, tick labels, input values and points."""

    input: str
    label: str  # "D90 (Gy)", "3-month response"
    ticks: list[str]  # "90", "CR/PR", "90+"
    values: list[Any]  # the input values of the ticks (a number, a level, or a list of levels)
    points: list[float]
    scale: str  # "linear", "log", "spline" or "levels"


@dataclass(frozen=True)
class Nomogram:
    """A nomogram: predictor axes, total points, linear predictor, and S(h) axes (Cox) or the
    event of interest's CIF(h) axes (Fine-Gray)."""

    endpoint: str
    time_origin: str
    axes: list[NomogramAxis]
    scale: float  # points per unit of the linear predictor
    intercept: float  # the linear predictor at 0 total points
    max_total: float  # the largest total points a patient on the axes can have
    horizons: list[float]
    cumhaz: dict[float, float]  # H0(h): S(h | lp) = exp(-H0(h) exp(lp)), or CIF(h | lp) = 1 - that
    notes: list[str] = field(default_factory=list)
    outcome: Outcome = "survival"  # "cif": Fine-Gray's event of interest
    events: tuple[str, str] = ("", "")  # a CIF's event and competing event, in the endpoint's words

    def linear_predictor(self, total_points: Any) -> np.ndarray:
        """The linear predictor (log hazard ratio against the training means) at ``total_points``."""
        return self.intercept + np.asarray(total_points, dtype=float) / self.scale

    def probability(self, total_points: Any, horizon: float) -> np.ndarray:
        """The probability axis's value at ``total_points``: S(horizon), or a Fine-Gray CIF(horizon)."""
        return probability(self.outcome, self.cumhaz[horizon], self.linear_predictor(total_points))

    def survival(self, total_points: Any, horizon: float) -> np.ndarray:
        """S(horizon) at ``total_points`` (a Cox model's; a CIF nomogram has :meth:`probability` only)."""
        if self.outcome != "survival":
            raise ValueError("a Fine-Gray nomogram gives the CIF of the event (probability), not survival")
        return self.probability(total_points, horizon)

    def total_points_at(self, p: float, horizon: float) -> float:
        """The total points at which the horizon's probability equals ``p`` (NaN if no hazard by then)."""
        h0 = self.cumhaz[horizon]
        if h0 <= 0 or not 0 < p < 1:
            return math.nan
        hazard = -math.log(p) if self.outcome == "survival" else -math.log1p(-p)
        return float((math.log(hazard / h0) - self.intercept) * self.scale)

    def axis_label(self, horizon: float) -> str:
        """The points table's name of a horizon's axis: "S(12 months)", or "CIF of local failure at
        12 months (death competing)"."""
        if self.outcome == "survival":
            return f"S({horizon:g} months)"
        event, competing = self.events
        words = competing if competing.startswith("competing event") else f"{competing} competing"
        return f"CIF of {event} at {horizon:g} months ({words})"

    @property
    def caption(self) -> str:
        """What the figure leaves out: a Fine-Gray nomogram's competing CIF."""
        if self.outcome == "survival":
            return ""
        return f"The CIF of the competing event ({self.events[1]}) is not drawn: it comes from a separate model."

    def total_ticks(self) -> list[float]:
        """Ticks of the total-points axis, 0 to at least :attr:`max_total` (as R's ``pretty``)."""
        ticks = nice_ticks(0.0, self.max_total, 8, cover=True)
        return [float(t) for t in ticks]

    def lp_ticks(self) -> list[float]:
        """Ticks of the linear-predictor axis, within the range the total points reach."""
        return nice_ticks(float(self.linear_predictor(0.0)), float(self.linear_predictor(self.max_total)), 6)

    def probability_ticks(self, horizon: float) -> list[tuple[float, float]]:
        """(probability, total points) of each tick of the S(horizon) axis within reach."""
        out = []
        for p in _PROBABILITIES:
            t = self.total_points_at(p, horizon)
            if math.isfinite(t) and 0 <= t <= self.max_total:
                out.append((p, t))
        return out

    def points_table(self) -> pd.DataFrame:
        """The nomogram as a table: each predictor value's points, then the total-points, linear
        predictor and S(h) axes with the total points at each tick (columns axis, value, points)."""
        rows: list[tuple[str, str, float]] = []
        for a in self.axes:
            rows += [(a.label, tick, p) for tick, p in zip(a.ticks, a.points, strict=True)]
        rows += [("total points", f"{t:g}", t) for t in self.total_ticks()]
        rows += [("linear predictor", f"{v:g}", (v - self.intercept) * self.scale) for v in self.lp_ticks()]
        for h in self.horizons:
            rows += [(self.axis_label(h), f"{p:g}", t) for p, t in self.probability_ticks(h)]
        table = pd.DataFrame(rows, columns=["axis", "value", "points"])
        table["points"] = table["points"].round(2)
        return table


def nice_ticks(lo: float, hi: float, n: int = 6, *, cover: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10^k) inside [lo, hi], about ``n`` of them;
    ``cover``: from the first tick ≤ lo to the first ≥ hi (R's ``pretty``).

    >>> nice_ticks(85.7, 133.6)
    [90.0, 100.0, 110.0, 120.0, 130.0]
    >>> nice_ticks(0, 163.2, 8, cover=True)[-1]
    175.0
    """
    if not hi > lo:
        return [float(lo)]
    raw = (hi - lo) / max(n, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * 0.999)
    first = math.floor(lo / step + 1e-9) if cover else math.ceil(lo / step - 1e-9)
    last = math.ceil(hi / step - 1e-9) if cover else math.floor(hi / step + 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-1.5-2-3-5-7 × 10^k values inside [lo, hi] (a log feature's axis)."""
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10.0**k for m in _LOG_MANTISSAS if lo - 1e-12 <= m * 10.0**k <= hi + 1e-12]
    return out


def _with_ends(ticks: list[float], lo: float, hi: float, gap: float) -> list[float]:
    """The range's ends added where the nearest tick is further than ``gap`` away."""
    out = list(ticks)
    if not out or out[0] - lo > gap:
        out.insert(0, lo)
    if hi - out[-1] > gap:
        out.append(hi)
    return out


def _numeric_values(model: RiskModel, name: str, scale: str) -> list[float]:
    if name not in model.numeric_ranges:
        raise UserInputError(
            f"no nomogram: no training range is stored for {name} (fewer than 10 training values), so its "
            f"axis cannot be drawn without showing a patient's value; {CALCULATOR}"
        )
    lo, hi = model.numeric_ranges[name]
    if scale == "log":
        span = math.log(hi / lo) if lo > 0 else 0.0
        ticks = _log_ticks(lo, hi) if lo > 0 else []
        out = _with_ends(ticks, lo, hi, 0.0)
        keep = [out[0]]
        for v in out[1:]:  # drop a tick crowding its neighbour on the log scale (an added end wins)
            if span and math.log(v / keep[-1]) < 0.06 * span:
                if v == hi:
                    keep[-1] = v
                continue
            keep.append(v)
        return keep
    ticks = nice_ticks(lo, hi, 10 if scale == "spline" else 6)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else hi - lo
    return _with_ends(ticks, lo, hi, 0.3 * step)


@dataclass(frozen=True)
class _Input:
    name: str
    columns: list[int]  # the model features computed from this input
    scale: str
    values: list[Any]
    ticks: list[str]
    base: Any  # the reference patient's value of this input


def _levels(model: RiskModel, name: str) -> tuple[list[Any], list[str], str]:
    """An input's discrete values, their labels, and its kind."""
    decl = model.declaration
    if decl is not None:
        c = decl.covariate(name)
        if c.kind == "binary":
            labels = list(c.levels) if c.levels else ["no", "yes"]
            return [0.0, 1.0], labels, "levels"
        if c.kind == "ordinal":
            return [float(i) for i in range(len(c.code_levels))], list(c.code_levels), "levels"
        known = set(model.categories.get(name, []))
        levels = [lvl for lvl in c.code_levels if lvl in known] or sorted(known)
        return list(levels), list(levels), "levels"
    spec = next(col for col in COLUMNS if col.name == name)
    seen = model.categories.get(name, [])
    if spec.kind == "bool":
        values = [v for v in (False, True) if str(v) in seen] or [False, True]
        return values, ["no" if not v else "yes" for v in values], "levels"
    order = list(spec.allowed or [])
    levels = sorted(seen, key=lambda v: order.index(v) if v in order else len(order))
    return list(levels), list(levels), "levels"


def _scale_of(model: RiskModel, name: str, features: list[str]) -> str:
    decl = model.declaration
    if decl is not None and decl.covariate(name).kind == "numeric":
        encoding = decl.covariate(name).encoding
        return {"log": "log", "spline": "spline"}.get(encoding, "linear")
    if any(f.startswith("log_") for f in features):
        return "log"
    return "linear"


def _inputs(model: RiskModel, names: list[str]) -> list[_Input]:
    """Each model input with its features, axis values and tick labels, in the features' order."""
    inputs = model.input_columns
    by_input: dict[str, list[int]] = {}
    for j, feature in enumerate(names):
        source = feature_input(feature, inputs)
        if source is None:
            raise UserInputError(
                f"no nomogram: feature {feature} is computed from several inputs (BED, EQD2), so it has no "
                f"axis of its own; {CALCULATOR}"
            )
        by_input.setdefault(source, []).append(j)
    out = []
    for name, cols in by_input.items():
        kind = _kind(model, name)
        if kind == "numeric":
            scale = _scale_of(model, name, [names[j] for j in cols])
            values: list[Any] = _numeric_values(model, name, scale)
            age = model.is_age(name)
            ticks = [shown_value(v, age=age) if age else f"{v:.4g}" for v in values]
            lo, hi = model.numeric_ranges[name]
            base: Any = (lo + hi) / 2
        else:
            values, ticks, scale = _levels(model, name)
            base = values[0]
        if any(names[j] == f"{name}_missing" for j in cols):
            values, ticks = [*values, None], [*ticks, "missing"]
        out.append(_Input(name, cols, scale, values, ticks, base))
    return out


def _kind(model: RiskModel, name: str) -> str:
    if model.declaration is not None:
        return "numeric" if model.declaration.covariate(name).kind == "numeric" else "levels"
    spec = next(col for col in COLUMNS if col.name == name)
    return "numeric" if spec.kind in ("float", "int") else "levels"


def _label(model: RiskModel, name: str) -> str:
    label = input_label(name, model.declaration)
    unit = input_unit(name, model.declaration)
    return f"{label} ({unit})" if unit else label


def _contributions(model: RiskModel, form: LinearForm, inputs: list[_Input]) -> tuple[list[np.ndarray], float]:
    """Each input's Xβ (its own features only) at its axis values, and the reference patient's
    linear predictor minus its inputs' contributions (the constant of the additive form)."""
    base = {i.name: i.base for i in inputs}
    rows = [base]
    for i in inputs:
        rows += [{**base, i.name: np.nan if v is None else v} for v in i.values]
    frame = pd.DataFrame(rows, columns=model.input_columns)
    Z = np.asarray(model.features.transform(frame), dtype=float)
    coef = form.coef
    lp0 = float(form.lp(Z[:1])[0])
    constant = lp0 - sum(float(Z[0, i.columns] @ coef[i.columns]) for i in inputs)
    out, start = [], 1
    for i in inputs:
        block = Z[start : start + len(i.values)]
        out.append(block[:, i.columns] @ coef[i.columns])
        start += len(i.values)
    return out, constant


def _merged(i: _Input, xb: np.ndarray) -> tuple[list[str], list[Any], np.ndarray]:
    """Levels with equal points share one tick ("CR/PR"), at the first one's place."""
    if i.scale != "levels":
        return i.ticks, i.values, xb
    ticks: list[str] = []
    values: list[Any] = []
    kept: list[float] = []
    for tick, value, x in zip(i.ticks, i.values, xb, strict=True):
        same = next((k for k, y in enumerate(kept) if abs(y - x) <= 1e-12 * max(1.0, abs(x))), None)
        if same is None:
            ticks.append(tick)
            values.append(value)
            kept.append(float(x))
        else:
            ticks[same] += f"/{tick}"
            values[same] = [*(values[same] if isinstance(values[same], list) else [values[same]]), value]
    return ticks, values, np.asarray(kept)


def nomogram_table(model: RiskModel, horizons: Sequence[float] | None = None) -> Nomogram:
    """The nomogram of a Cox or Fine-Gray ``model`` (``rms::nomogram``'s scaling, clinical axes) at
    ``horizons`` (default: the model's). Raises a one-line :class:`UserInputError` for other
    families, naming the calculator."""
    form = check_nomogram_model(model)
    times = [float(h) for h in check_horizons(model.horizons if horizons is None else horizons, model.max_time)]
    names = [str(n) for n in model.features.get_feature_names_out()]
    inputs = _inputs(model, names)
    xbs, constant = _contributions(model, form, inputs)
    merged = [_merged(i, xb) for i, xb in zip(inputs, xbs, strict=True)]
    ranges = [float(xb.max() - xb.min()) for _, _, xb in merged]
    widest = max(ranges, default=0.0)
    if not widest > 0:
        raise UserInputError(
            f"no nomogram: every coefficient of the {model.endpoint.upper()} {model.family} model is 0"
        )
    scale = 100.0 / widest
    axes = [
        NomogramAxis(i.name, _label(model, i.name), ticks, values, [float(p) for p in (xb - xb.min()) * scale], i.scale)
        for i, (ticks, values, xb) in zip(inputs, merged, strict=True)
    ]
    cumhaz = {h: float(v) for h, v in zip(times, form.cumhaz_at(times), strict=True)}
    return Nomogram(
        endpoint=model.endpoint,
        time_origin=model.time_origin,
        axes=axes,
        scale=scale,
        intercept=constant + sum(float(xb.min()) for _, _, xb in merged),
        max_total=float(sum(max(a.points) for a in axes)),
        horizons=times,
        cumhaz=cumhaz,
        notes=model.horizon_flags(times),
        outcome=form.outcome,
        events=competing_words(model) if form.outcome == "cif" else ("", ""),
    )
