"""``riskmodel calculator``: a Cox or Fine-Gray model as one self-contained, offline HTML calculator.

A Cox model is a formula: S(t | x) = exp(−H₀(t)·exp(η)), η = (z − z̄)ᵀβ (Cox 1972; the ties'
baseline H₀ at each horizon), and its pointwise 95% band exp(−H₀(t)·exp(η ± 1.96·se(η))),
se(η)² = (z − z̄)ᵀV(z − z̄) with V the inverse information (Kalbfleisch & Prentice 2002, §4.2.2;
as :func:`riskmodel.explain.whatif.cox_band`). The page carries β, z̄, V, H₀ at the horizons, the
risk-group cut-offs, the training ranges and categories, the landmark rule, and a *recipe* from
the clinical inputs to each model feature z:

* ``identity``, ``log``, ``ge`` (a threshold flag), ``rcs`` (a restricted cubic spline term, as
  :func:`riskmodel.stats.splines.restricted_cubic_spline`) of one numeric input;
* ``table``: the value for each level of one categorical input (ordinal codes, one-hot columns,
  CR/PR groupings), computed by the model's own feature transformer;
* ``constant``: a feature no input moves (a missing-value flag, always 0 when every field is filled).

A Fine-Gray model (Fine & Gray, JASA 1999;94:496-509) is one formula too, for its event of interest:
CIF₁(t | x) = 1 − exp(−Λ₁₀(t)·exp(η)), η = (z − z̄)ᵀβ₁, with Λ₁₀ the baseline cumulative
subdistribution hazard (:mod:`riskmodel.reporting.nomogram_form`). The page carries β₁, z̄, Λ₁₀ at
the horizons and at the model's risk horizon (its risk score is the CIF there, as
:meth:`riskmodel.scoring.RiskModel.score`'s), and labels the result as the cumulative incidence of
the event with the competing event named, with a pointwise 95% band of the same construction as
Cox's: 1 − exp(−Λ₁₀(t)·exp(η ± 1.96·se(η))), se(η)² = (z − z̄)ᵀV₁(z − z̄) with V₁ the robust
(sandwich) variance of β₁ (Fine & Gray 1999, §3; ``cmprsk::crr``'s ``var``), the baseline held
fixed at the mean patient as in the Cox band. It has no CIF of the competing event (a separate
model, capped by the first: ``riskmodel serve`` gives both).

The recipe is not trusted: it is read off the model's own transformer by probing it (one input
moved at a time), and then checked against that transformer on :data:`CHECK_PATIENTS` random
patients; a feature that combines several inputs (BED), or whose values the recipe does not
reproduce to 1e-12, is refused with one line, as are the forest and boosting (no formula: use
``riskmodel serve``), the cause-specific Cox competing model (its CIF combines two cause-specific
hazards through the Aalen-Johansen formula) and a model with multiple imputation (no closed form of
the pooled prediction). The page's script repeats :meth:`riskmodel.scoring.RiskModel.score`'s statuses:
refused by the landmark rule, outside the development data (no risk group), error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.core.files import atomic_write_text
from riskmodel.errors import UserInputError, own_warnings_silenced
from riskmodel.features.safe_harbor import RANGE_WORDING
from riskmodel.models import CauseSpecificCox, CoxPH, MultipleImputationSurvival
from riskmodel.models.cif import risk_horizon
from riskmodel.models.fine_gray import FineGray
from riskmodel.privacy import PhiGuard
from riskmodel.reporting.nomogram_form import LinearForm, competing_words, linear_form
from riskmodel.scoring import RiskModel
from riskmodel.serving.answer import model_info
from riskmodel.serving.calculator_page import calculator_html
from riskmodel.serving.form import InputField, input_fields, landmark_rules
from riskmodel.stats.splines import restricted_cubic_spline

__all__ = ["CHECK_PATIENTS", "TOLERANCE", "calculator_spec", "feature_recipe", "write_calculator"]

CHECK_PATIENTS = 200
TOLERANCE = 1e-12
_GE = re.compile(r"_ge_(-?[0-9.]+)(gy)?$")
_RCS = re.compile(r"_rcs(\d+)$")


def _refuse(model: RiskModel, why: str) -> UserInputError:
    return UserInputError(
        f"calculator: the {model.endpoint.upper()} {model.family} model {why}; use `riskmodel serve` for it"
    )


def _reference(model: RiskModel, f: InputField) -> Any:
    if f.kind == "numeric":
        if f.name in model.numeric_ranges:
            return float(np.mean(model.numeric_ranges[f.name]))
        return float(np.mean(f.limits)) if f.limits is not None else 1.0
    seen = model.categories.get(f.name) or []
    return seen[0] if seen else (f.levels or [""])[0]


def _probe_values(model: RiskModel, f: InputField, rng: np.random.Generator, n: int) -> list[Any]:
    """Values of one input to move it through: numbers over (and beyond) its training range, levels."""
    if f.kind != "numeric":
        return list(f.levels or [])
    lo, hi = model.numeric_ranges.get(f.name, f.limits if f.limits is not None else (0.5, 2.0))
    span = hi - lo or 1.0
    # half a range beyond each end, but never to zero or below for a positive input (a volume, a log)
    a, b = (lo - 0.5 * span if lo <= 0 else max(lo - 0.5 * span, lo / 2)), hi + 0.5 * span
    if f.limits is not None:
        a, b = max(a, f.limits[0]), min(b, f.limits[1])
    return [float(v) for v in np.concatenate([np.linspace(a, b, n), rng.uniform(a, b, n)])]


def _encode(model: RiskModel, fields: Sequence[InputField], rows: list[dict[str, Any]]) -> np.ndarray | None:
    """The model's own features of ``rows`` (NaN rows where the transformer refuses one)."""
    frame = pd.DataFrame(
        [
            {
                f.column: ""
                if r.get(f.name) is None
                else repr(r[f.name])
                if isinstance(r[f.name], float)
                else str(r[f.name])
                for f in fields
            }
            for r in rows
        ],
        dtype=object,
    )
    with own_warnings_silenced():
        try:
            return np.asarray(model.features.transform(model.validate_patients(frame)), dtype=float)
        except UserInputError:  # a level the features cannot code, a value the cohort rules refuse
            return None


def _encode_each(model: RiskModel, fields: Sequence[InputField], rows: list[dict[str, Any]]) -> np.ndarray:
    Z = _encode(model, fields, rows)
    if Z is not None:
        return Z
    width = len(model.features.get_feature_names_out())
    out = [_encode(model, fields, [r]) for r in rows]
    return np.vstack([np.full(width, np.nan) if z is None else z[0] for z in out])


def _numeric_form(model: RiskModel, name: str, source: str) -> dict[str, Any]:
    """The recipe of a feature of one numeric input, read from its name and the transformer."""
    if (m := _RCS.search(name)) is not None:
        knots = getattr(getattr(model.features, "encoding_", None), "knots_", {}).get(source)
        if knots is None:
            raise _refuse(model, f"has a spline feature {name} whose knots are not stored where expected")
        return {"kind": "rcs", "input": source, "knots": [float(k) for k in knots], "term": int(m.group(1))}
    if (m := _GE.search(name)) is not None:
        return {"kind": "ge", "input": source, "threshold": float(m.group(1))}
    if name.startswith("log_"):
        return {"kind": "log", "input": source}
    return {"kind": "identity", "input": source}


def _apply(recipe: dict[str, Any], values: np.ndarray) -> np.ndarray:
    kind = recipe["kind"]
    if kind == "identity":
        return values
    if kind == "log":
        return np.asarray(np.log(values), dtype=float)
    if kind == "ge":
        return np.asarray(values >= recipe["threshold"], dtype=float)
    basis = restricted_cubic_spline(values, np.asarray(recipe["knots"]))
    return np.asarray(basis[:, recipe["term"]], dtype=float)


def feature_recipe(model: RiskModel, fields: Sequence[InputField], seed: int = 0) -> list[dict[str, Any]]:
    """One recipe per model feature, read off the model's transformer (see the module docstring)."""
    rng = np.random.default_rng(seed)
    names = [str(n) for n in model.features.get_feature_names_out()]
    reference = {f.name: _reference(model, f) for f in fields}
    base = _encode_each(model, fields, [reference])[0]
    if not np.isfinite(base).all():
        raise _refuse(model, "cannot encode a reference patient (mid training range, first seen level)")
    moved: dict[str, tuple[list[Any], np.ndarray]] = {}
    depends: dict[int, list[str]] = {j: [] for j in range(len(names))}
    for f in fields:
        values = _probe_values(model, f, rng, 12)
        Z = _encode_each(model, fields, [{**reference, f.name: v} for v in values])
        moved[f.name] = (values, Z)
        for j in range(len(names)):
            column = Z[:, j]
            if np.any(np.abs(column[np.isfinite(column)] - base[j]) > 0):
                depends[j].append(f.name)
    kinds = {f.name: f.kind for f in fields}
    recipes: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        if len(depends[j]) > 1:
            raise _refuse(model, f"has a feature, {name}, combining several inputs ({', '.join(depends[j])})")
        if not depends[j]:
            recipes.append({"kind": "constant", "value": float(base[j])})
            continue
        source = depends[j][0]
        values, Z = moved[source]
        if kinds[source] != "numeric":
            table = {str(v): float(z) for v, z in zip(values, Z[:, j], strict=True) if np.isfinite(z)}
            recipes.append({"kind": "table", "input": source, "values": table})
            continue
        recipe = _numeric_form(model, name, source)
        if not np.allclose(_apply(recipe, np.asarray(values, float)), Z[:, j], rtol=TOLERANCE, atol=TOLERANCE):
            raise _refuse(model, f"has a feature, {name}, whose encoding of {source} the calculator cannot write")
        recipes.append(recipe)
    return recipes


def evaluate_recipe(recipes: Sequence[dict[str, Any]], rows: list[dict[str, Any]]) -> np.ndarray:
    """The features the recipe gives ``rows`` (NaN for a level without a value): what the page computes."""
    out = np.empty((len(rows), len(recipes)))
    for j, r in enumerate(recipes):
        if r["kind"] == "constant":
            out[:, j] = r["value"]
        elif r["kind"] == "table":
            out[:, j] = [r["values"].get(str(row[r["input"]]), np.nan) for row in rows]
        else:
            out[:, j] = _apply(r, np.array([float(row[r["input"]]) for row in rows]))
    return out


def _check(model: RiskModel, fields: Sequence[InputField], recipes: Sequence[dict[str, Any]]) -> None:
    """The recipe against the model's transformer on random patients, every input moved at once."""
    rng = np.random.default_rng(1)
    pools = {f.name: _probe_values(model, f, rng, 8) for f in fields}
    # categories the tables code (a level the transformer refuses was left out of its table when probed)
    for r in recipes:
        if r["kind"] == "table":
            pools[r["input"]] = [v for v in pools[r["input"]] if str(v) in r["values"]]
    rows = [{n: pool[rng.integers(len(pool))] for n, pool in pools.items()} for _ in range(CHECK_PATIENTS)]
    want = _encode_each(model, fields, rows)
    got = evaluate_recipe(recipes, rows)
    # a row the transformer refuses (a one-hot level unseen in training) must be one the page cannot code
    ok = np.isfinite(want).all(axis=1)
    worst = float(np.max(np.abs(want[ok] - got[ok]) / np.maximum(1.0, np.abs(want[ok])))) if ok.any() else 0.0
    if not ok.any() or worst > TOLERANCE or not np.array_equal(np.isfinite(got).all(axis=1), ok):
        raise _refuse(model, f"has an encoding the calculator does not reproduce (largest difference {worst:.3g})")


def _check_family(model: RiskModel) -> LinearForm:
    """The model's formula (Cox, or Fine-Gray's event of interest), or a one-line refusal."""
    form = linear_form(model)
    if form is not None:
        return form
    estimator = model.estimator
    what = f"is a {model.family} model, which has no formula a page could carry (the static calculator is for Cox)"
    if isinstance(estimator, CauseSpecificCox):
        what = (
            "is a cause-specific Cox competing-risks model, whose CIF combines two cause-specific hazards through the "
            "Aalen-Johansen formula, which the static calculator does not carry (train a Fine-Gray model, family "
            "fine_gray, for a calculator of the CIF, or competing_risks: false for a Cox one)"
        )
    elif model.competing:
        what = (
            f"is a competing-risks {model.family} model (cumulative incidence from fits per cause), which the static "
            "calculator does not carry (it carries a Cox or Fine-Gray formula)"
        )
    elif isinstance(estimator, MultipleImputationSurvival):
        what = "is fitted with multiple imputation (no closed form of the pooled prediction)"
    raise _refuse(model, what)


def _covariance(model: RiskModel) -> list[list[float]] | None:
    """The covariance of the formula's coefficients, for the band: a Cox model's inverse
    information, a Fine-Gray model's robust variance of β₁ (``crr$var``); None for a singular
    information or a Fine-Gray folder saved before the variance was kept."""
    estimator = model.estimator
    cov: np.ndarray | None = None
    if isinstance(estimator, FineGray):
        first = estimator.cause_models_[0]
        cov = None if first is None or first.cov is None else np.asarray(first.cov, dtype=float)
    elif isinstance(estimator, CoxPH) and getattr(estimator, "information_", None) is not None:
        try:
            cov = np.linalg.inv(np.asarray(estimator.information_, dtype=float))
        except np.linalg.LinAlgError:
            cov = None
    if cov is None or not np.isfinite(cov).all():
        return None
    return [[float(v) for v in row] for row in cov]


def _outcome(model: RiskModel, form: LinearForm) -> dict[str, Any]:
    """What the page computes: S(t), or the event's CIF with its risk horizon and the events' words."""
    if form.outcome == "survival":
        return {"outcome": "survival", "risk_cumhaz": None, "events": None}
    event, competing = competing_words(model)
    return {
        "outcome": "cif",
        "risk_cumhaz": float(form.cumhaz_at([risk_horizon(model.estimator)])[0]),
        "events": {"event": event, "competing": competing},
    }


def calculator_spec(model: RiskModel) -> dict[str, Any]:
    """Everything the page needs, as JSON data (finite numbers only; ranges and categories already
    shareable as model files hold them)."""
    form = _check_family(model)
    fields = input_fields([model])
    recipes = feature_recipe(model, fields)
    _check(model, fields, recipes)
    return {
        "model": model_info(model),
        "development_note": model.development_note(),
        "fields": [f.as_json() | {"age": model.is_age(f.name), "required": True} for f in fields],
        "features": [str(n) for n in model.features.get_feature_names_out()],
        "recipes": recipes,
        "coef": [float(v) for v in form.coef],
        "mean": [float(v) for v in form.mean],
        "covariance": _covariance(model),
        "cumhaz": [float(v) for v in form.cumhaz_at(model.horizons)],
        **_outcome(model, form),
        "risk_cutoffs": [float(c) for c in model.risk_cutoffs],
        "numeric_ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in model.numeric_ranges.items()},
        "categories": dict(model.categories),
        "landmark": landmark_rules(model, fields),
        "unstable": [float(h) for h in model.unstable_horizons(model.horizons)],
        "min_at_risk": model.min_at_risk,
        "range_wording": RANGE_WORDING,
    }


def _finite(value: Any, where: str = "spec") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise UserInputError(f"calculator: {where} is not a finite number; the model file cannot be exported")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            _finite(v, where)


def write_calculator(model: RiskModel, out: str | Path) -> Path:
    """Write the calculator page of a Cox or Fine-Gray model to ``out``; returns the path."""
    spec = calculator_spec(model)
    _finite(spec)
    text = calculator_html(spec)
    PhiGuard().check_text("calculator", text)
    path = Path(out)
    atomic_write_text(path, text)
    return path
