"""One model's answer for one patient, as the web calculator returns it.

Everything comes from the model's own scoring path, never a second one:

* status, probabilities at the horizons, risk group and flags: :meth:`RiskModel.score` (the landmark
  rule refuses a patient not at risk after the landmark; a patient outside the development data
  gets predictions and no risk group unless extrapolation is allowed; thin horizons are flagged);
* the curve: :meth:`RiskModel.predict_survival` on a grid to the end of training follow-up, with
  the band the patient pages draw (:func:`riskmodel.reporting.patient_report.survival_band`: the
  forest's tree spread, or the Cox coefficients' sampling uncertainty; none for boosting);
* the SHAP contributions to the risk score: :meth:`RiskModel.explain`, labelled with the clinical
  values the features encode (:func:`riskmodel.features.labels.feature_labels`), never encodings;
* the what-if of one dose input (D90 by default): :func:`riskmodel.reporting.patient_report.what_if_sweep`
  (:meth:`RiskModel.what_if` over the training range, extended to the patient's own value, every
  value outside the range marked ``extrapolated``), with its band where the family has one.

A competing-risk model answers the same questions of the cumulative incidence: its three
probabilities at the horizons, the CIF of the event and of the competing event on the same grid,
the SHAP contributions to its risk score (the CIF of the event at the model's risk horizon), and
the what-if of that CIF at the explained horizon. None has a band: the cause-specific models'
uncertainty is not carried through the Aalen-Johansen combination (as the patient pages say).

Nothing is kept between calls, and nothing here logs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskmodel.features.labels import feature_labels, input_label, input_unit
from riskmodel.models.cif import cif_matrix, risk_horizon
from riskmodel.reporting.page import format_probability
from riskmodel.reporting.patient_report import CAUSAL_WARNING, survival_band, what_if_sweep
from riskmodel.scoring import RiskModel

__all__ = ["COMPETING_NO_BAND", "CURVE_POINTS", "EXPLAIN_HORIZON", "answer", "explain_horizon", "model_info"]

CURVE_POINTS = 61
EXPLAIN_HORIZON = 12.0
COMPETING_NO_BAND = (
    "no band: the cause-specific models' uncertainty is not carried through the Aalen-Johansen combination"
)


def model_info(model: RiskModel) -> dict[str, Any]:
    """What the answer says of the model itself."""
    return {
        "endpoint": model.endpoint,
        "family": model.family,
        "experiment": model.experiment,
        "label": f"{model.endpoint.upper()} ({model.family})",
        "time_origin": model.time_origin,
        "horizons": list(model.horizons),
    }


def explain_horizon(model: RiskModel) -> float:
    """12 months, or the model's last horizon when its reliable follow-up is shorter."""
    limit = min(model.max_time, model.reliable_until if model.reliable_until is not None else model.max_time)
    if limit >= EXPLAIN_HORIZON:
        return EXPLAIN_HORIZON
    within = [h for h in model.horizons if h <= limit]
    return max(within) if within else limit


def _nums(values: Any) -> list[float | None]:
    return [None if v is None or not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def _banded(model: RiskModel, record: dict[str, Any], Z: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The horizon probabilities and the curve, with one band computation for both (a forest's
    per-tree curves are the costly part)."""
    times = [float(h) for h in record["survival"]]
    grid = np.linspace(0.0, model.max_time, CURVE_POINTS)
    low, high, how = survival_band(model, Z, np.concatenate([times, grid]))
    k = len(times)
    unstable = set(model.unstable_horizons(times))
    horizons = [
        {
            "months": t,
            "survival": float(s),
            "shown": format_probability(float(s)),
            "lower": None if low is None else float(low[i]),
            "upper": None if high is None else float(high[i]),
            "unstable": t in unstable,
        }
        for i, (t, s) in enumerate(zip(times, record["survival"].values(), strict=True))
    ]
    # RiskModel.predict_survival's own call, on the features it has already encoded for this patient
    surv = model.estimator.predict_survival(Z, grid).to_numpy()[0]
    curve = {
        "months": _nums(grid),
        "survival": _nums(surv),
        "lower": None if low is None else _nums(low[k:]),
        "upper": None if high is None else _nums(high[k:]),
        "band": how,
    }
    return horizons, curve


def _competing_curve(model: RiskModel, Z: np.ndarray) -> dict[str, Any]:
    """Both CIFs and the event-free probability on the curve's grid (RiskModel's own CIF call)."""
    grid = np.linspace(0.0, model.max_time, CURVE_POINTS)
    cif = cif_matrix(model.estimator, Z, list(grid))
    return {
        "months": _nums(grid),
        "cif": _nums(cif[0][0]),
        "cif_competing": _nums(cif[1][0]),
        "event_free": _nums(1.0 - cif[0][0] - cif[1][0]),
        "band": COMPETING_NO_BAND,
    }


def _shap(model: RiskModel, frame: pd.DataFrame, data: pd.DataFrame, Z: np.ndarray) -> dict[str, Any]:
    explanation = model.explain(frame)
    labels = feature_labels(model.features, data.iloc[0], Z[0], model.declaration)
    values = np.asarray(explanation.values, dtype=float)[0]
    order = np.argsort(-np.abs(values), kind="stable")
    output = "risk score (higher = worse)"
    if model.competing:
        h = risk_horizon(model.estimator)
        output = f"risk score: the CIF of {model.event_labels.event} by {h:g} months (higher = worse)"
    return {
        "output": output,
        "base": float(np.asarray(explanation.base_values, dtype=float).ravel()[0]),
        "method": str(getattr(explanation, "method", "")),
        "contributions": [{"label": labels[i], "value": float(values[i])} for i in order],
    }


def _what_if(model: RiskModel, frame: pd.DataFrame, feature: str) -> dict[str, Any] | None:
    if feature not in model.input_columns or feature not in model.numeric_ranges:
        return None
    h = explain_horizon(model)
    sweep = what_if_sweep(model, frame, h, feature)
    key = f"cif_{h:g}" if model.competing else f"S_{h:g}"
    lo, hi = model.numeric_ranges[feature]
    has_band = f"{key}_lower" in sweep
    return {
        "input": feature,
        "label": input_label(feature, model.declaration),
        "unit": input_unit(feature, model.declaration),
        "horizon": h,
        "outcome": "cif" if model.competing else "survival",
        "training_range": [float(lo), float(hi)],
        "values": _nums(sweep["value"]),
        "survival": None if model.competing else _nums(sweep[key]),
        "cif": _nums(sweep[key]) if model.competing else None,
        "cif_competing": _nums(sweep[f"cif_competing_{h:g}"]) if model.competing else None,
        "lower": _nums(sweep[f"{key}_lower"]) if has_band else None,
        "upper": _nums(sweep[f"{key}_upper"]) if has_band else None,
        "extrapolated": [bool(v) for v in sweep["extrapolated"]],
        "band": COMPETING_NO_BAND if model.competing else str(sweep.attrs.get("band", "")),
        "note": CAUSAL_WARNING,
    }


def competing_answer(model: RiskModel, record: dict[str, Any]) -> dict[str, Any]:
    """A competing model's probabilities per horizon, from its score record (as ``riskmodel score``)."""
    unstable = set(model.unstable_horizons(model.horizons))
    rows = []
    for key in record["cif"]:
        values = {name: float(record[name][key]) for name in ("cif", "cif_competing", "event_free")}
        shown = {name: format_probability(v) for name, v in values.items()}
        rows.append({"months": float(key), **values, "shown": shown, "unstable": float(key) in unstable})
    return {"events": dict(record["events"]), "cumulative_incidence": rows}


def answer(
    model: RiskModel, frame: pd.DataFrame, *, allow_extrapolation: bool = False, what_if_input: str = "d90_gy"
) -> dict[str, Any]:
    """The answer of ``model`` for the one patient in ``frame`` (raw cells, one row)."""
    record = model.score(frame, allow_extrapolation=allow_extrapolation)[0]
    out: dict[str, Any] = {
        **model_info(model),
        "status": record["status"],
        "reason": record.get("reason") or record.get("error"),
        "risk_group": record.get("risk_group"),
        "risk_score": record.get("risk_score"),
        "flags": list(record.get("flags", [])),
    }
    if "cif" not in record and "survival" not in record:  # refused by the landmark rule, or an unreadable row
        return out
    data = model.validate_patients(frame)
    Z = np.asarray(model.features.transform(data), dtype=float)
    if "cif" in record:  # a competing-risk model: both CIFs and the event-free probability per horizon
        out |= competing_answer(model, record)
        out["cif_curve"] = _competing_curve(model, Z)
    else:
        out["horizon_probabilities"], out["curve"] = _banded(model, record, Z)
    out["shap"] = _shap(model, frame, data, Z)
    out["what_if"] = _what_if(model, frame, what_if_input)
    return out
