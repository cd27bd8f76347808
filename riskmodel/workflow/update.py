"""``riskmodel update``: a saved model updated to a new setting, with its lineage, judged honestly.

The updating ladder (van Houwelingen, Stat Med 2000;19:3401-15; Steyerberg, Clinical Prediction
Models, 2009, ch. 20; Vergouwe et al., Stat Med 2017;36:4529-39):

* ``baseline``: a new baseline hazard, the risk score fixed (:mod:`riskmodel.models.recalibrated`);
* ``slope``: the same plus a calibration slope on the risk score;
* ``refit``: the declared model refitted on the new patients, same features and settings.

A competing-risks (CIF) model climbs the same ladder on the cloglog scale of its CIF of the event
of interest (:mod:`riskmodel.models.recalibrated_cif`): ``baseline`` shifts it so that the mean
predicted CIF at τ is the update data's Aalen-Johansen CIF; ``slope`` is a Fine-Gray fit on
cloglog F̂(τ) (intercept and slope; Austin et al. 2022); ``refit`` refits the cause-specific
models. τ is the largest horizon with at least ``MIN_AT_RISK`` update patients still followed.
Its measures are Wolbers C, and the O/E and Fine-Gray slopes of the CIF, under the same keys.

The update data are read as ``riskmodel evaluate`` reads a labelled cohort
(:func:`riskmodel.workflow.evaluate.labelled_data`: the model's declaration, outcomes required,
its landmark; bad rows reported and left out). The updated model keeps its lineage (parent model
and run, method, the data digest) in ``model.json`` and as MLflow tags.

**Judged by bootstrap, not on the data it was fitted to** (Harrell, Lee & Mark, Stat Med
1996;15:361-87): the update is redone in each resample of the update data, and its optimism
(its measures on the resample minus on the original data) is subtracted from its apparent
measures. The parent, fixed, is measured once on the update data (an honest external figure)
with a percentile interval over the same resamples. Measures: Harrell's C, O/E at each horizon
(Kaplan-Meier risk over mean predicted risk), the calibration slope on the linear predictor and
at each horizon on log(−log Ŝ(h)) (:mod:`riskmodel.validation.external`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import staged_folder
from riskmodel.errors import RiskModelError, UserInputError, require_writable
from riskmodel.metrics import MIN_AT_RISK, EvaluationWindow, defined_or_nan, harrell_c
from riskmodel.models import CoxPH
from riskmodel.models.cif import is_competing_model
from riskmodel.models.imputation import MultipleImputationSurvival
from riskmodel.models.recalibrated import Recalibrated
from riskmodel.models.recalibrated_cif import RecalibratedCif
from riskmodel.privacy import PhiGuard
from riskmodel.reporting.page import json_safe
from riskmodel.scoring import RiskModel, read_patients
from riskmodel.stats import is_competing, survival_array
from riskmodel.stats.competing_metrics import wolbers_c
from riskmodel.stats.samplesize import SampleSize
from riskmodel.tracking import load_model
from riskmodel.tracking.evaluation import source_run_id
from riskmodel.tracking.lineage import record_update
from riskmodel.validation.calibration import calibration_slope, calibration_slope_at
from riskmodel.validation.competing import cif_observed_expected, cif_slope_at
from riskmodel.validation.external import is_linear, observed_expected
from riskmodel.workflow.develop import pooled_table, unpenalised_table
from riskmodel.workflow.evaluate import check_horizons, labelled_data
from riskmodel.workflow.prepare import design_sample_size

__all__ = ["UPDATE_EXPERIMENT", "UPDATE_METHODS", "Update", "fit_update", "update_model", "update_performance"]

UPDATE_EXPERIMENT = "update"
UPDATE_METHODS = ("baseline", "slope", "refit")
# what each measure's key means for a competing-risks (CIF) model
COMPETING_UPDATE_MEANINGS = {
    "harrell_c": "Wolbers C (concordance of the CIF of the event of interest)",
    "oe": "O/E of the CIF: the Aalen-Johansen CIF over the mean predicted CIF",
    "slope": "calibration slope of the CIF: the Fine-Gray coefficient of cloglog CIF (at a horizon)",
}


@dataclass
class Update:
    """An updated model, its parent, and their measures on the update data."""

    model: RiskModel
    parent: RiskModel
    method: str
    performance: pd.DataFrame
    n_patients: int
    n_events: int
    bad_rows: dict[Any, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    model_uri: str | None = None
    registered_uri: str | None = None

    def estimate(self, key: str, column: str = "updated_corrected") -> float:
        """One measure (``harrell_c``, ``oe_12``, ``slope``, ``slope_12``) from ``performance``."""
        row = self.performance.loc[self.performance["key"] == key].iloc[0]
        return float(row[column])


def _reference_horizon(parent: RiskModel, y: Any = None) -> float:
    """τ of the cloglog risk score of a parent that is not a log-hazard model: its largest horizon.

    A competing model's CIF is recalibrated at τ on the update data ``y``: its largest horizon at
    which at least ``MIN_AT_RISK`` update patients are still followed (else its first horizon)."""
    inside = [h for h in parent.horizons if h <= parent.max_time]
    if y is None:
        return float(max(inside)) if inside else float(parent.max_time)
    time = np.asarray(y["time"], float)
    followed = [h for h in inside if h < time.max() and int((time >= h).sum()) >= MIN_AT_RISK]
    return float(max(followed)) if followed else float(min(parent.horizons))


def fit_update(parent: RiskModel, X: pd.DataFrame, y: Any, method: str) -> tuple[Any, Any]:
    """The update itself on ``X``, ``y``: (fitted features, fitted estimator).

    ``baseline`` and ``slope`` keep the parent's features and wrap its estimator
    (:class:`Recalibrated`); ``refit`` clones both (same settings, seeds included) and fits them
    again, as training does (a pipeline of features and model).
    """
    if method == "refit":
        recalibrated = isinstance(parent.estimator, Recalibrated | RecalibratedCif)
        base = parent.estimator.parent_ if recalibrated else parent.estimator
        pipe = Pipeline([("features", clone(parent.features)), ("model", clone(base))]).fit(X, y)
        return pipe.named_steps["features"], pipe.named_steps["model"]
    Z = parent.features.transform(X)
    if parent.competing:  # the CIF's cloglog shifted, or a Fine-Gray intercept and slope on it
        cif_model = RecalibratedCif(parent.estimator, method, reference_horizon=_reference_horizon(parent, y))
        return parent.features, cif_model.fit(Z, y)
    model = Recalibrated(parent.estimator, method, reference_horizon=_reference_horizon(parent)).fit(Z, y)
    return parent.features, model


def _measures(features: Any, estimator: Any, X: pd.DataFrame, y: Any, horizons: Sequence[float]) -> dict[str, float]:
    """Harrell's C, O/E and the calibration slopes of one fitted model on ``X``, ``y`` (a competing
    target: Wolbers C, the O/E and slopes of the CIF, under the same keys)."""
    Z = features.transform(X)
    if is_competing(y):
        return _cif_measures(estimator, Z, y, horizons)
    risk = np.asarray(estimator.predict_risk(Z), dtype=float)
    event, time = np.asarray(y["event"], bool), np.asarray(y["time"], float)
    out = {"harrell_c": defined_or_nan(lambda: harrell_c(event, time, risk))}
    out["slope"] = defined_or_nan(lambda: calibration_slope(y, risk)) if is_linear(estimator) else math.nan
    surv = estimator.predict_survival(Z, list(horizons)).to_numpy()
    for j, h in enumerate(horizons):
        out[f"oe_{h:g}"] = defined_or_nan(functools.partial(observed_expected, y, surv[:, j], h))
        out[f"slope_{h:g}"] = defined_or_nan(functools.partial(calibration_slope_at, y, surv[:, j], h))
    return out


def _cif_measures(estimator: Any, Z: Any, y: Any, horizons: Sequence[float]) -> dict[str, float]:
    """Wolbers C (``harrell_c``), no linear-predictor slope, O/E of the CIF against Aalen-Johansen
    (``oe_<h>``) and the Fine-Gray slope of cloglog CIF (``slope_<h>``) (riskmodel.validation.competing)."""
    risk = np.asarray(estimator.predict_risk(Z), dtype=float)
    cause, time = np.asarray(y["cause"], int), np.asarray(y["time"], float)
    out = {"harrell_c": defined_or_nan(functools.partial(wolbers_c, time, cause, risk)), "slope": math.nan}
    cif = np.asarray(estimator.predict_cif(Z, list(horizons)).to_numpy(), dtype=float)
    for j, h in enumerate(horizons):
        out[f"oe_{h:g}"] = defined_or_nan(functools.partial(cif_observed_expected, y, cif[:, j], h))
        out[f"slope_{h:g}"] = defined_or_nan(functools.partial(cif_slope_at, y, cif[:, j], h))
    return out


def _resample(
    parent: RiskModel, X: pd.DataFrame, y: Any, method: str, horizons: Sequence[float], idx: np.ndarray
) -> tuple[dict[str, float], dict[str, float]] | None:
    """One resample: (the parent's measures on it, the update's optimism), None if it cannot be fitted."""
    Xb, yb = X.iloc[idx].reset_index(drop=True), y[idx]
    try:
        with warnings.catch_warnings():  # a resample's convergence warning is counted as a failure below
            warnings.simplefilter("error")
            features, estimator = fit_update(parent, Xb, yb, method)
            apparent = _measures(features, estimator, Xb, yb, horizons)
            test = _measures(features, estimator, X, y, horizons)
    except (RiskModelError, ArithmeticError, ValueError, np.linalg.LinAlgError, Warning):
        return None
    fixed = _measures(parent.features, parent.estimator, Xb, yb, horizons)
    return fixed, {k: apparent[k] - test[k] for k in apparent}


def update_performance(
    parent: RiskModel,
    updated: RiskModel,
    X: pd.DataFrame,
    y: Any,
    method: str,
    horizons: Sequence[float],
    *,
    n_boot: int = 100,
    seed: int = 0,
) -> tuple[pd.DataFrame, int]:
    """Parent against updated on the update data: one row per measure (``key``, ``measure``,
    ``horizon``, ``parent`` with ``parent_low``/``parent_high``, ``updated_apparent``,
    ``optimism``, ``updated_corrected``, ``resamples``). Returns the table and the failed resamples."""
    parent_point = _measures(parent.features, parent.estimator, X, y, horizons)
    apparent = _measures(updated.features, updated.estimator, X, y, horizons)
    rng = np.random.default_rng(seed)
    event = np.asarray(y["event"], bool)
    fixed_rows, optimism_rows, failed = [], [], 0
    for _ in range(n_boot):
        idx = rng.integers(0, len(event), len(event))
        done = _resample(parent, X, y, method, horizons, idx) if event[idx].any() else None
        if done is None:
            failed += 1
            continue
        fixed_rows.append(done[0])
        optimism_rows.append(done[1])
    fixed = pd.DataFrame(fixed_rows, columns=list(parent_point))
    optimism = pd.DataFrame(optimism_rows, columns=list(parent_point))
    rows = []
    for key, value in parent_point.items():
        name, _, suffix = key.rpartition("_")
        horizon = float(suffix) if name in ("oe", "slope") else math.nan
        boots = fixed[key].to_numpy(float)
        boots = boots[np.isfinite(boots)]
        low, high = np.percentile(boots, [2.5, 97.5]) if boots.size >= 2 else (math.nan, math.nan)
        opt = optimism[key].to_numpy(float)
        opt = opt[np.isfinite(opt)]
        mean_opt = float(opt.mean()) if opt.size else math.nan
        rows.append(
            {
                "key": key,
                "measure": name if math.isfinite(horizon) else key,
                "horizon": horizon,
                "parent": value,
                "parent_low": float(low),
                "parent_high": float(high),
                "updated_apparent": apparent[key],
                "optimism": mean_opt,
                "updated_corrected": apparent[key] - mean_opt,
                "resamples": int(opt.size),
            }
        )
    return pd.DataFrame(rows), failed


def _hazard_ratios(features: Any, estimator: Any, X: pd.DataFrame, y: Any) -> pd.DataFrame | None:
    if isinstance(estimator, CoxPH):
        return unpenalised_table(features, X, y)
    if isinstance(estimator, MultipleImputationSurvival) and isinstance(estimator.estimator, CoxPH):
        return pooled_table(estimator, pd.DataFrame(features.transform(X)), y)
    return None


def _refit_size(features: Any, X: pd.DataFrame, y: Any, horizons: Sequence[float]) -> SampleSize:
    """Riley et al.'s assessment of the update data for the refitted model (its features' columns;
    R²cs from the complete rows): a refit is developed on these patients alone."""
    design = np.asarray(features.transform(X), dtype=float)
    complete = ~np.isnan(design).any(axis=1)
    target = survival_array(y["event"], y["time"])
    return design_sample_size(design[complete], target[complete], target, max(horizons))


def updated_model(parent: RiskModel, X: pd.DataFrame, y: Any, method: str, lineage: dict[str, Any]) -> RiskModel:
    """The new model version: the update fitted on all of ``X``, ``y``, with its lineage."""
    features, estimator = fit_update(parent, X, y, method)
    window = EvaluationWindow.from_data(y, parent.horizons, min_at_risk=min(parent.min_at_risk or MIN_AT_RISK, len(y)))
    horizons = [h for h in parent.horizons if h <= estimator.max_time_]
    if not horizons:
        raise UserInputError(
            f"the update data follow patients for {estimator.max_time_:.3g} months at most, less than every "
            f"horizon of the model ({', '.join(f'{h:g}' for h in parent.horizons)}); a new baseline cannot reach them"
        )
    if method == "refit":
        model = RiskModel.from_training(
            endpoint=parent.endpoint,
            family=parent.family,
            experiment=parent.experiment,
            landmark_months=parent.landmark_months,
            horizons=horizons,
            features=features,
            estimator=estimator,
            X=X,
            reliable_until=window.reliable_until,
            min_at_risk=window.min_at_risk,
            declaration=parent.declaration,
            size=_refit_size(features, X, y, horizons),
        )
        model.hazard_ratios = _hazard_ratios(features, estimator, X, y)
    else:
        # tertiles of the new risk on the update data: a slope (and a forest's cloglog score) changes its scale
        cutoffs = np.quantile(estimator.predict_risk(features.transform(X)), [1 / 3, 2 / 3])
        model = dataclasses.replace(
            parent,
            estimator=estimator,
            horizons=horizons,
            risk_cutoffs=[float(c) for c in cutoffs],
            reliable_until=window.reliable_until,
            min_at_risk=window.min_at_risk,
            hazard_ratios=parent.hazard_ratios if method == "baseline" and not parent.competing else None,
        )
        lineage = {**lineage, "slope": float(estimator.slope_)}
    model.lineage = lineage
    return model


def _check_parent(uri: str, model: RiskModel, method: str) -> None:
    if is_competing_model(model.estimator) and isinstance(model.estimator, RecalibratedCif) and method != "refit":
        raise UserInputError(
            f"{uri}: this competing-risks model's CIF was recalibrated already; update its parent model instead "
            "(or refit it: --method refit)"
        )
    if method not in UPDATE_METHODS:
        raise UserInputError(f"--method: {method!r} is not one of {', '.join(UPDATE_METHODS)}")


def update_model(
    model_uri: str,
    data: str | Path,
    *,
    method: str,
    out: str | Path = "update",
    horizons: Sequence[float] | None = None,
    n_boot: int = 100,
    seed: int = 0,
    tracking_uri: str | None = None,
    mapping: str | Path | None = None,
    register: str | None = None,
    track: bool = True,
) -> Update:
    """Update the model at ``model_uri`` on the labelled cohort ``data`` by ``method``; write
    ``out`` (``model/``, ``update.json``, ``update_performance.csv``) and track it as a run under
    the ``update`` experiment (the new model logged there, registered as ``register`` if given)."""
    if method not in UPDATE_METHODS:
        raise UserInputError(f"--method: {method!r} is not one of {', '.join(UPDATE_METHODS)}")
    if n_boot < 0:
        raise UserInputError(f"--n-boot must be ≥ 0, got {n_boot}")
    require_writable(out, folder=True, option="--out")
    parent = load_model(model_uri, tracking_uri=tracking_uri)
    _check_parent(str(model_uri), parent, method)
    frame = read_patients(data, mapping=mapping, declared=parent.declaration is not None)
    labelled = labelled_data(parent, frame, str(data), purpose="update")
    chosen = [float(h) for h in (horizons or parent.horizons)]
    notes = [*labelled.notes, *check_horizons(parent, labelled, chosen, str(data))]
    y = labelled.y
    parent_run = source_run_id(str(model_uri), tracking_uri)
    n_events = int(np.asarray(y["event"], bool).sum())
    lineage: dict[str, Any] = {
        "parent_model": str(model_uri),
        "parent_run_id": parent_run,
        "method": method,
        "data_digest": labelled.digest,
        "n_patients": len(y),
        "n_events": n_events,
        "slope": None,
    }
    model = updated_model(parent, labelled.X, y, method, lineage)
    table, failed = update_performance(parent, model, labelled.X, y, method, chosen, n_boot=n_boot, seed=seed)
    if failed:
        notes.append(
            f"{failed} of {n_boot} bootstrap resamples could not be updated (no event, or no fit) and were skipped"
        )
    result = Update(model, parent, method, table, len(y), n_events, dict(labelled.bad_rows), notes)
    guard = PhiGuard.for_cohort(labelled.cohort)
    with staged_folder(out, merge=True) as stage:
        _write_outputs(stage, result)
        guard.check_tree(stage, "update")
    if track:
        _track(result, Path(out), tracking_uri, guard, register or _registered_name(str(model_uri)))
    return result


def _registered_name(uri: str) -> str | None:
    """A parent from the registry (``models:/<name>/<version>``): its update is a new version of ``name``."""
    if uri.startswith("models:/"):
        name = uri.removeprefix("models:/").split("/")[0]
        return name or None
    return None


def _summary(result: Update) -> dict[str, Any]:
    meanings = {"meanings": COMPETING_UPDATE_MEANINGS} if result.model.competing else {}
    return {
        **meanings,
        "method": result.method,
        "endpoint": result.model.endpoint,
        "family": result.model.family,
        "lineage": result.model.lineage,
        "n_patients": result.n_patients,
        "n_events": result.n_events,
        "left_out_rows": len(result.bad_rows),
        "horizons": result.model.horizons,
        "performance": result.performance.to_dict(orient="records"),
        "notes": result.notes,
    }


def _write_outputs(stage: Path, result: Update) -> None:
    result.model.save(stage / "model")
    (stage / "update_performance.csv").write_text(safe_csv_text(result.performance, index=False), encoding="utf-8")
    text = json.dumps(json_safe(_summary(result)), indent=2, allow_nan=False)
    (stage / "update.json").write_text(text + "\n", encoding="utf-8")


def _track(result: Update, out: Path, tracking_uri: str | None, guard: PhiGuard, register: str | None) -> None:
    lineage = result.model.lineage or {}
    metrics: dict[str, float] = {}
    for r in result.performance.to_dict(orient="records"):
        key = r["key"]
        metrics.update({f"parent_{key}": r["parent"], f"apparent_{key}": r["updated_apparent"]})
        metrics.update({f"optimism_{key}": r["optimism"], f"corrected_{key}": r["updated_corrected"]})
    tags = {
        "command": "update",
        "method": result.method,
        "parent_model_uri": str(lineage.get("parent_model")),
        "parent_run_id": lineage.get("parent_run_id") or "none (a model folder)",
        "data_digest": str(lineage.get("data_digest")),
        "endpoint": result.model.endpoint,
        "family": result.model.family,
        "n_patients": str(result.n_patients),
        "n_events": str(result.n_events),
        "left_out_rows": str(len(result.bad_rows)),
    }
    if result.model.competing:  # the same keys, measures of the CIF of the event of interest
        tags.update(analysis="competing", **{f"metric.{k}": v for k, v in COMPETING_UPDATE_MEANINGS.items()})
    artifacts = {name: (out / name).read_text(encoding="utf-8") for name in ("update.json", "update_performance.csv")}
    recorded = record_update(
        UPDATE_EXPERIMENT,
        f"update-{result.model.endpoint}-{result.model.family}-{result.method}",
        model=result.model,
        tags=tags,
        metrics=metrics,
        artifacts=artifacts,
        parent_run=lineage.get("parent_run_id"),
        register=register,
        tracking_uri=tracking_uri,
        guard=guard,
    )
    result.run_id, result.model_uri, result.registered_uri = (
        recorded.run_id,
        recorded.model_uri,
        recorded.registered_uri,
    )
