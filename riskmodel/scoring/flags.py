"""What a score record says beside its numbers: inputs outside the development data, and missing
inputs the model accepted (imputed, routed by the trees, or filled beside a missing flag).

An input outside the development data is a numeric value beyond the stored range (the 5th smallest
to the 5th largest training value, :mod:`riskmodel.features.safe_harbor`) or a category no training
patient had. Such a patient still gets the model's predictions, marked as extrapolated; the risk
group is withheld unless the user asks for it (``riskmodel score --allow-extrapolation``): a group
reads as a verdict, and the model never saw a patient like this one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.contract import column
from riskmodel.cohort.declaration import CohortDeclaration, CovariateDeclaration
from riskmodel.features.safe_harbor import AGE_CAP, RANGE_WORDING, shown_value
from riskmodel.models import MultipleImputationSurvival

__all__ = ["EXTRAPOLATED", "OUTSIDE", "missing_flags", "outside_flags"]

OUTSIDE = "outside the development data"
EXTRAPOLATED = f"extrapolated: {OUTSIDE}"


def outside_flags(model: Any, data: pd.DataFrame) -> dict[Any, list[str]]:
    """Per row of validated ``data``: values outside the middle of the training data, or categories
    unseen in training (a row with any is outside the development data)."""
    flags: dict[Any, list[str]] = {}
    for name in model.numeric_ranges:
        if name not in data.columns:
            continue
        values = pd.to_numeric(data[name], errors="coerce").to_numpy(dtype=float)
        unit, age = _unit(model.declaration, name), model.is_age(name)
        below, above = _sides(model, name, values)
        hit = np.flatnonzero(below | above)  # only the flagged rows are formatted, each distinct value once
        if not len(hit):
            continue
        shown = {v: shown_value(v, age=age) for v in set(values[hit].tolist())}
        where = f"{RANGE_WORDING}: {model.shown_range(name)}{unit}"
        for row, v, low in zip(data.index[hit], values[hit].tolist(), below[hit].tolist(), strict=True):
            flags.setdefault(row, []).append(f"{name} {shown[v]} is {'below' if low else 'above'} {where}")
    for name, seen in model.categories.items():
        if name not in data.columns:
            continue
        # each distinct value is looked at once (as text, as the stored levels are), not each row
        codes, uniques = pd.factorize(data[name], use_na_sentinel=True)
        distinct = pd.Series(uniques).astype(object).tolist()
        unseen = np.array([str(v) not in seen for v in distinct] + [False], dtype=bool)  # -1 (missing): last
        message = [f"{name} {v} was not seen in training (seen: {', '.join(seen)})" for v in distinct]
        for row, code in zip(data.index[unseen[codes]], codes[unseen[codes]].tolist(), strict=True):
            flags.setdefault(row, []).append(message[code])
    return flags


def _sides(model: Any, name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the values below and above the stored range of ``name`` (as
    ``RiskModel.range_position``, on the whole column: an age capped at 90 first)."""
    lo, hi = model.numeric_ranges[name]
    v = np.minimum(values, AGE_CAP) if model.is_age(name) else values  # NaN stays NaN: neither side
    return v < lo, v > hi


def missing_flags(model: Any, data: pd.DataFrame, Z: Any) -> dict[Any, list[str]]:
    """Per row, one flag per missing covariate the model accepted: imputed (with the mean of the
    m imputed values), routed by the trees, or filled beside a missing flag."""
    if model.declaration is None:
        return {}
    out: dict[Any, list[str]] = {}
    used = [c for c in model.declaration.covariates if c.name in data.columns and c.missing != "refuse"]
    completed = None
    for c in used:
        rows = data.index[data[c.name].isna().to_numpy()]
        if not len(rows):
            continue
        if c.missing == "indicator":
            how = (
                "missing: filled (a number with the training median, a category as the reference level), "
                "with its missing flag when the training patients had missing values"
            )
        elif isinstance(model.estimator, MultipleImputationSurvival):
            completed = model.estimator.completed(Z) if completed is None else completed
            draws = np.array([np.asarray(frame[c.name], float) for frame in completed])
            values = _most_common(draws) if c.kind == "categorical" else draws.mean(axis=0)
            where = {r: i for i, r in enumerate(data.index)}
            summary = "most common" if c.kind == "categorical" else "mean"
            for r in rows:
                out.setdefault(r, []).append(
                    f"{c.name} missing: imputed as {_shown_value(c, values[where[r]])} ({summary} of "
                    f"{len(completed)} imputations from the training imputation models)"
                )
            continue
        else:
            how = "missing: not imputed; the trees send it down their learnt missing-value branch"
        for r in rows:
            out.setdefault(r, []).append(f"{c.name} {how}")
    return out


def _most_common(draws: np.ndarray) -> np.ndarray:
    """Per column of ``draws`` (imputations × patients), its most common code."""
    return np.array([np.bincount(col[~np.isnan(col)].astype(int)).argmax() for col in draws.T], dtype=float)


def _shown_value(c: CovariateDeclaration, value: float) -> str:
    """An imputed input as a person reads it: back from the log scale, or as the nearest level."""
    if c.kind == "numeric":
        shown = float(np.exp(value)) if c.encoding == "log" else float(value)
        return f"≈{shown:.3g}{' ' + c.unit if c.unit else ''}"
    levels = c.code_levels
    k = int(np.clip(round(value), 0, len(levels) - 1)) if levels else round(value)
    if c.kind == "categorical":
        return levels[k]
    mean = "" if float(value).is_integer() else f" (mean code {value:.2f})"
    return f"≈{levels[k] if levels else k}{mean}"


def _unit(declaration: CohortDeclaration | None, name: str) -> str:
    unit = declaration.covariate(name).unit if declaration is not None else column(name).unit
    return f" {unit}" if unit else ""
