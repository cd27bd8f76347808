"""``riskmodel evaluate``: saved models validated on a labelled cohort that they never saw.

Each model reads the cohort through its own declaration (the built-in contract for a model of the
bundled study), with its endpoint's outcomes required, and applies its own landmark and time
origin. A row that cannot be read is reported by row and left out, with a count. The measures
(:func:`riskmodel.validation.external.external_validation`) and the case-mix
(:mod:`riskmodel.validation.case_mix`) go to ``metrics.json``, CSV tables, a self-contained
``validation_report.html`` and an MLflow run under the ``evaluate`` experiment, tagged with the
model's run ID and the data digest and linked to the development run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort import Cohort, from_frame, survival_data
from riskmodel.cohort.contract import COMPETING_ENDPOINTS
from riskmodel.cohort.declared import from_frame_declared
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import staged_folder
from riskmodel.errors import CohortValidationError, Problem, UserInputError, require_writable
from riskmodel.metrics import MIN_AT_RISK
from riskmodel.privacy import PhiGuard
from riskmodel.reporting.page import json_safe
from riskmodel.reporting.validation_report import EvaluatedModel, measure_label, render_validation_report
from riskmodel.scoring import RiskModel, read_patients
from riskmodel.stats import is_competing
from riskmodel.tracking import load_model
from riskmodel.tracking.evaluation import record_evaluation, source_run_id
from riskmodel.validation.case_mix import membership_c, outside_ranges, standardised_differences
from riskmodel.validation.external import external_validation
from riskmodel.validation.external_competing import competing_external_validation

__all__ = ["EVALUATE_EXPERIMENT", "LabelledData", "evaluate_models", "labelled_data"]

EVALUATE_EXPERIMENT = "evaluate"


@dataclass
class LabelledData:
    """A model's view of a labelled cohort: after its landmark, with the rows left out."""

    cohort: Cohort
    X: pd.DataFrame
    y: np.ndarray
    rows_read: int
    bad_rows: dict[Any, str]
    not_at_risk: int
    digest: str
    notes: list[str] = field(default_factory=list)


def _read_cohort(model: RiskModel, frame: pd.DataFrame, source: str) -> Cohort:
    if model.declaration is not None:
        return from_frame_declared(
            frame, model.declaration, source=source, covariates=model.input_columns, endpoints=[model.endpoint]
        )
    required = ["patient_id", *model.input_columns, f"{model.endpoint}_months", f"{model.endpoint}_event"]
    required += competing_columns(model)
    return from_frame(frame, source=source, required=sorted(set(required)))


def competing_columns(model: RiskModel) -> list[str]:
    """The columns of a bundled-contract competing model's competing endpoint (LC: death's
    ``os_months``, ``os_event``); none for a survival model or a declared cohort's (its declaration
    reads its competing endpoint with it)."""
    if not model.competing or model.declaration is not None or model.endpoint not in COMPETING_ENDPOINTS:
        return []
    other = COMPETING_ENDPOINTS[model.endpoint][0]
    return [f"{other}_months", f"{other}_event"]


def _valid_rows(
    model: RiskModel, frame: pd.DataFrame, source: str, purpose: str = "evaluate"
) -> tuple[Cohort, dict[Any, str]]:
    """The cohort of the rows that can be read, and each other row's problems; a problem of the
    whole file (a missing outcome column) is a user error."""
    try:
        return _read_cohort(model, frame, source), {}
    except CohortValidationError as exc:
        rowless = [p for p in exc.problems if p.row is None]
        if rowless:
            why = _competing_reason(model)
            raise UserInputError(
                "\n".join(
                    f"{source}: cannot {purpose} the {model.endpoint.upper()} model: {_problem(p)}"
                    + (why if p.column in competing_columns(model) else "")
                    for p in rowless
                )
            ) from None
        bad: dict[Any, list[Problem]] = {}
        for p in exc.problems:
            bad.setdefault(p.row, []).append(p)
    kept = frame.drop(index=list(bad))
    if len(kept) == 0:
        raise UserInputError(f"{source}: no row can be read ({len(bad)} rows with errors)")
    return _read_cohort(model, kept, source), {r: "; ".join(map(_problem, ps)) for r, ps in bad.items()}


def _competing_reason(model: RiskModel) -> str:
    words = model.event_labels
    return (
        f" (a competing-risks model: its competing event, {words.competing}, comes from this column; "
        f"without it the cumulative incidence of {words.event} cannot be validated)"
    )


def _problem(p: Problem) -> str:
    return str(Problem(p.rule, column=p.column, value=p.value)).removeprefix("error: ")


def labelled_data(model: RiskModel, frame: pd.DataFrame, source: str, purpose: str = "evaluate") -> LabelledData:
    """``frame`` read through ``model``'s declaration with its outcomes, from its landmark
    (``purpose``, the command's verb, words a problem of the whole file)."""
    cohort, bad = _valid_rows(model, frame, source, purpose)
    sd = survival_data(
        cohort,
        model.endpoint,
        landmark_months=model.landmark_months,
        feature_columns=model.input_columns,
        competing=model.competing,
    )
    if model.competing and not is_competing(sd.y):
        raise UserInputError(
            f"{source}: cannot {purpose} the {model.endpoint.upper()} competing-risks model: these data give no "
            f"competing event for {model.endpoint.upper()} (its declaration names none, or an outcome is missing); "
            f"a CIF model needs each patient's cause: {model.event_labels.event}, "
            f"{model.event_labels.competing}, or censored"
        )
    digest = hashlib.sha256(cohort.data.to_csv(index=False).encode()).hexdigest()[:16]
    return LabelledData(cohort, sd.X, sd.y, len(frame), bad, len(cohort.data) - len(sd.y), digest)


def check_horizons(model: RiskModel, data: LabelledData, horizons: Sequence[float], source: str) -> list[str]:
    """Refuse a horizon at or beyond the validation follow-up, or the model's; note thin ones."""
    time = np.asarray(data.y["time"], float)
    if not data.y["event"].any():
        raise UserInputError(f"{source}: no {model.endpoint.upper()} event after the landmark; nothing to validate")
    notes = []
    for h in horizons:
        if not math.isfinite(h) or h <= 0:
            raise UserInputError(f"--horizons: {h:g} is not a positive number of months")
        if h >= time.max():
            raise UserInputError(
                f"--horizons: {h:g} months is beyond the validation follow-up of {source} (longest "
                f"{time.max():.3g} months after the model's time zero: {model.time_origin})"
            )
        if h > model.max_time:
            raise UserInputError(
                f"--horizons: {h:g} months is beyond the model's training follow-up ({model.max_time:.3g} months)"
            )
        followed = int((time >= h).sum())
        if followed < MIN_AT_RISK:
            notes.append(f"only {followed} patients were followed to {h:g} months: its measures are unstable")
    return notes


def _development_c(model: RiskModel, development: Path | None, X: pd.DataFrame) -> tuple[float | None, str]:
    if development is None:
        return None, (
            "not computed: it needs the development patients, which a model file never holds "
            "(give them with --development-data)"
        )
    frame = read_patients(development, declared=model.declaration is not None)
    dev, bad = model.split_valid(frame)
    if len(dev) < 2:
        raise UserInputError(f"--development-data {development}: fewer than 2 rows can be read")
    value = membership_c(model.features.transform(dev), model.features.transform(X))
    left = f"; {len(bad)} development rows that could not be read were left out" if bad else ""
    return value, f"{len(dev)} development patients against {len(X)} validation patients{left}"


def evaluate_one(
    uri: str,
    model: RiskModel,
    frame: pd.DataFrame,
    source: str,
    *,
    horizons: Sequence[float] | None,
    development: Path | None,
    n_boot: int,
    seed: int,
) -> tuple[EvaluatedModel, LabelledData]:
    """One model validated on one labelled table (no file written)."""
    data = labelled_data(model, frame, source)
    chosen = [float(h) for h in (horizons or model.horizons)]
    try:
        notes = check_horizons(model, data, chosen, source)
    except UserInputError as exc:
        if horizons:
            raise
        raise UserInputError(f"{exc} (the model's own horizons; choose others with --horizons)") from None
    if model.competing:
        result = competing_external_validation(model, data.X, data.y, chosen, n_boot=n_boot, seed=seed)
    else:
        result = external_validation(model, data.X, data.y, chosen, n_boot=n_boot, seed=seed)
    age = model.is_age
    smd = standardised_differences(data.X, model.input_summaries, age) if model.input_summaries else None
    share, outside = outside_ranges(data.X, model.numeric_ranges, model.categories, age)
    c_member, member_note = _development_c(model, development, data.X)
    facts = EvaluatedModel(
        uri=uri,
        endpoint=model.endpoint,
        family=model.family,
        time_origin=model.time_origin,
        source=Path(source).name,
        rows_read=data.rows_read,
        bad_rows=len(data.bad_rows),
        not_at_risk=data.not_at_risk,
        validation=result,
        standardised_differences=smd,
        outside_share=share,
        outside=outside,
        membership_c=c_member,
        membership_note=member_note,
        notes=[*data.notes, *notes, *result.notes],
        competing=model.event_labels if model.competing else None,
        n_competing=int((data.y["cause"] == 2).sum()) if model.competing else 0,
    )
    return facts, data


def _write_outputs(stage: Path, evaluated: list[EvaluatedModel]) -> None:
    """metrics.json, the CSV tables (one folder per model) and validation_report.html."""
    payload = []
    for i, e in enumerate(evaluated, 1):
        folder = stage / e.folder_name(i)
        folder.mkdir()
        v = e.validation
        table = v.table
        if e.competing is not None:  # the keys keep the survival names; the column says what each measures
            table = table.assign(meaning=[measure_label(m, e.competing) for m in table["measure"]])
        (folder / "metrics.csv").write_text(safe_csv_text(table, index=False), encoding="utf-8")
        for h in v.horizons:
            cal = v.calibration[h]
            (folder / f"calibration_groups_{h:g}.csv").write_text(safe_csv_text(cal.groups, index=False), "utf-8")
            (folder / f"calibration_smooth_{h:g}.csv").write_text(safe_csv_text(cal.smooth, index=False), "utf-8")
            (folder / f"decision_curve_{h:g}.csv").write_text(safe_csv_text(v.decision[h], index=False), "utf-8")
        if e.standardised_differences is not None:
            (folder / "case_mix.csv").write_text(safe_csv_text(e.standardised_differences, index=False), "utf-8")
        (folder / "outside_ranges.csv").write_text(safe_csv_text(e.outside, index=False), "utf-8")
        payload.append(e.summary(i))
    text = json.dumps(json_safe({"models": payload}), indent=2, allow_nan=False)
    (stage / "metrics.json").write_text(text + "\n", encoding="utf-8")
    (stage / "validation_report.html").write_text(render_validation_report(evaluated), encoding="utf-8")


def evaluate_models(
    model_uris: Sequence[str],
    data: str | Path,
    *,
    horizons: Sequence[float] | None = None,
    out: str | Path = "evaluation",
    development_data: str | Path | None = None,
    n_boot: int = 200,
    seed: int = 0,
    tracking_uri: str | None = None,
    mapping: str | Path | None = None,
    track: bool = True,
) -> list[EvaluatedModel]:
    """Validate each model on the labelled cohort ``data``; write ``out`` and track each as a run.

    Returns the evaluated models (their ``run_id`` set when tracked).
    """
    if n_boot < 0:
        raise UserInputError(f"--n-boot must be ≥ 0, got {n_boot}")
    require_writable(out, folder=True, option="--out")
    models = [(str(u), load_model(u, tracking_uri=tracking_uri)) for u in model_uris]
    declared = {m.declaration is not None for _, m in models}
    if len(declared) > 1:
        raise UserInputError("evaluate models of declared cohorts and of the built-in contract in separate commands")
    frame = read_patients(data, mapping=mapping, declared=declared.pop())
    dev = None if development_data is None else Path(development_data)
    evaluated: list[EvaluatedModel] = []
    guard = PhiGuard()
    for uri, model in models:
        facts, labelled = evaluate_one(
            uri, model, frame, str(data), horizons=horizons, development=dev, n_boot=n_boot, seed=seed
        )
        facts.bad_row_messages = dict(labelled.bad_rows)
        facts.digest = labelled.digest
        facts.development_run = source_run_id(uri, tracking_uri)
        guard = PhiGuard.for_cohort(labelled.cohort)
        evaluated.append(facts)
    with staged_folder(out, merge=True) as stage:
        _write_outputs(stage, evaluated)
        guard.check_tree(stage, "evaluation")
    if track:
        for i, facts in enumerate(evaluated, 1):
            _track(facts, i, Path(out), tracking_uri, guard)
    return evaluated


def _track(facts: EvaluatedModel, index: int, out: Path, tracking_uri: str | None, guard: PhiGuard) -> None:
    """The evaluation run of one model: tags, measures with their CIs, the tables and the report."""
    v = facts.validation
    metrics: dict[str, float] = {}
    for r in v.table.to_dict(orient="records"):
        metrics.update({r["key"]: r["estimate"], f"{r['key']}_low": r["low"], f"{r['key']}_high": r["high"]})
    metrics["outside_training_ranges"] = facts.outside_share
    if facts.membership_c is not None:
        metrics["membership_c"] = facts.membership_c
    tags = {
        "command": "evaluate",
        "model_uri": facts.uri,
        "model_run_id": facts.development_run or "none (a model folder)",
        "data_digest": facts.digest,
        "endpoint": facts.endpoint,
        "family": facts.family,
        "time_origin": facts.time_origin,
        "n_patients": str(v.n_patients),
        "n_events": str(v.n_events),
        "left_out_rows": str(facts.bad_rows),
        "horizons": ",".join(f"{h:g}" for h in v.horizons),
        "bootstrap_resamples": str(v.n_boot),
    }
    if facts.competing is not None:  # every measure is of the CIF of the event of interest: said per metric
        tags["analysis"] = "competing"
        tags["competing_event"] = facts.competing.competing
        tags["n_competing_events"] = str(facts.n_competing)
        tags.update({f"metric.{m}": measure_label(m, facts.competing) for m in dict.fromkeys(v.table["measure"])})
    folder = out / facts.folder_name(index)
    artifacts = {f"tables/{p.name}": p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.csv"))}
    artifacts["validation_report.html"] = (out / "validation_report.html").read_text(encoding="utf-8")
    artifacts["metrics.json"] = (out / "metrics.json").read_text(encoding="utf-8")
    facts.run_id, _ = record_evaluation(
        EVALUATE_EXPERIMENT,
        f"evaluate-{facts.endpoint}-{facts.family}",
        tags=tags,
        metrics=metrics,
        artifacts=artifacts,
        development_run=facts.development_run,
        tracking_uri=tracking_uri,
        guard=guard,
    )
