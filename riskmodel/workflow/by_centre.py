"""``riskmodel train --by centre``: internal-external cross-validation by centre, pooled across centres.

With a centre column declared (``cohort.centre``) and ``evaluation: {by: centre}`` in the experiment
or ``--by centre`` on the command line, each centre is held out in turn. The whole pipeline (the
experiment's features and each family with its settings, exactly as ``train`` builds them:
:func:`riskmodel.workflow.prepare.make_pipeline`) is developed on the other centres, and validated
on the held-out one with ``riskmodel evaluate``'s measures (:mod:`riskmodel.validation.external`;
bootstrap of the held-out patients, the model fixed, ``evaluation.bootstrap`` resamples). C (logit),
the calibration slope and O/E at the main horizon (log) are then pooled across centres by a
random-effects meta-analysis, REML by default (:mod:`riskmodel.validation.iecv`), with tau², I²
and the 95 % prediction interval for a new centre, and drawn as forest plots.

The main horizon is the largest of the model's horizons that at least ``evaluation.min_at_risk``
patients of every centre were followed to (else the largest that every centre's follow-up passes).

**Events per centre.** A held-out centre with fewer than :data:`MIN_CENTRE_EVENTS` (5) events
after the landmark is refused by name: its C and O/E would rest on a handful of patients and
their bootstrap SEs would be degenerate. One with fewer than :data:`FEW_CENTRE_EVENTS` (10) is
pooled with a warning (Collins, Ogundimu & Altman, *Stat Med* 2016;35:214-26, recommend at least
100 events for a validation; a small centre's estimate weighs little in the pooling, but its
interval is unreliable). Patients without a centre stay in every development set and are never
held out.

Tracking: one run per (endpoint, family) under the experiment, named ``iecv-<endpoint>-<family>``:
per-centre metrics ``iecv.<centre>.<measure>`` (centre labels are institutions, not patients, and
pass the PHI guard like everything else), pooled metrics (:func:`~riskmodel.validation.iecv.pooled_metrics`),
the per-centre tables, the pooled table and a forest plot per measure. No final model is saved:
``riskmodel train`` without ``--by`` develops it on every centre.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort import Cohort
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.core.csvout import safe_csv_text
from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.models.registry import build_family
from riskmodel.privacy import PhiGuard
from riskmodel.reporting.forest import meta_forest_plot
from riskmodel.reporting.plots import figure_png
from riskmodel.stats.meta import Method, PooledMeasure
from riskmodel.tracking import Tracker
from riskmodel.validation.external import fixed_predictions, validate_predictions
from riskmodel.validation.external_competing import fixed_cif_predictions, validate_cif_predictions
from riskmodel.validation.iecv import (
    COMPETING_MEASURE_NAMES,
    MEASURES,
    centre_row,
    forest_table,
    pool_centres,
    pooled_metrics,
    pooled_table,
)
from riskmodel.workflow.prepare import (
    PreparedEndpoint,
    drop_uninformative,
    load_cohort,
    make_pipeline,
    override,
    prepare_endpoints,
)
from riskmodel.workflow.record import RunContext

__all__ = [
    "FEW_CENTRE_EVENTS",
    "MIN_CENTRE_EVENTS",
    "CentreRun",
    "CentreValidation",
    "held_out_centres",
    "internal_external",
    "metric_keys",
]

MIN_CENTRE_EVENTS = 5  # below: the centre is refused by name
FEW_CENTRE_EVENTS = 10  # below: pooled, with a warning
MIN_RESAMPLES = 20  # bootstrap resamples for a centre's standard errors

Progress = Callable[[int, int, str], None]


@dataclass
class CentreRun:
    """One (endpoint, family) validated by centre: per-centre rows, the pooled measures, its run."""

    endpoint: str
    family: str
    horizon: float
    table: pd.DataFrame  # one row per held-out centre (validation.iecv.centre_row)
    measures: pd.DataFrame  # every measure of every centre with its percentile bootstrap CI
    pooled: dict[str, PooledMeasure]
    run_id: str = ""
    competing: bool = False  # a CIF model: c is Wolbers C, slope and oe are of the CIF

    @property
    def metrics(self) -> dict[str, float]:
        """What the run logs: per-centre (``iecv.<centre>.<measure>``) and pooled metrics."""
        out = pooled_metrics(self.pooled)
        for key, row in zip(metric_keys(list(self.table["centre"])), self.table.to_dict(orient="records"), strict=True):
            for name in ("c", "c_se", "slope", "slope_se", "oe", "log_oe_se", "uno_c", "patients", "events"):
                out[f"iecv.{key}.{name}"] = float(row[name])
        return out


@dataclass
class CentreValidation:
    """What ``train --by centre`` did: one :class:`CentreRun` per (endpoint, family), and notes."""

    experiment: str
    tracking_uri: str
    centre_column: str
    runs: list[CentreRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``--summary-json`` payload: per-centre rows and pooled measures (aggregates only)."""

        def finite(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "experiment": self.experiment,
            "tracking_uri": self.tracking_uri,
            "by": "centre",
            "runs": [
                {
                    "endpoint": r.endpoint,
                    "family": r.family,
                    "run_id": r.run_id,
                    "horizon": r.horizon,
                    "centres": [{k: finite(v) for k, v in row.items()} for row in r.table.to_dict(orient="records")],
                    "pooled": [
                        {k: finite(v) for k, v in row.items()} for row in pooled_table(r.pooled).to_dict("records")
                    ],
                }
                for r in self.runs
            ],
        }


def metric_keys(centres: Sequence[Any]) -> list[str]:
    """Each centre's label as an MLflow metric-name part (letters, digits, ``_``, ``-``), made unique."""
    keys: list[str] = []
    for label in centres:
        key = re.sub(r"[^A-Za-z0-9_-]+", "_", str(label)).strip("_")[:40] or "centre"
        base, n = key, 2
        while key in keys:
            key, n = f"{base}_{n}", n + 1
        keys.append(key)
    return keys


def held_out_centres(prep: PreparedEndpoint, column: str, source: str) -> tuple[list[str], pd.Series, list[str]]:
    """The endpoint's centres (sorted), each patient's centre, and notes; the refusals of the module docstring."""
    centre = prep.data.X["centre"].astype("string") if "centre" in prep.data.X.columns else None
    if centre is None:
        raise UserInputError(f"{source}: column {column} (cohort.centre) was not read; declare it in the cohort")
    labels = sorted(str(c) for c in centre.dropna().unique())
    ep = prep.endpoint.upper()
    if len(labels) < 2:
        only = f" ({labels[0]})" if labels else ""
        raise UserInputError(
            f"{source}, column {column}: a single centre{only} among the {ep} patients; internal-external "
            "validation by centre needs at least 2 centres (train without --by centre)"
        )
    event = np.asarray(prep.data.y["event"], bool)
    events = {c: int(event[(centre == c).fillna(False).to_numpy()].sum()) for c in labels}
    short = [c for c in labels if events[c] < MIN_CENTRE_EVENTS]
    if short:
        listed = ", ".join(f"{c} ({events[c]})" for c in short)
        raise UserInputError(
            f"{source}, column {column}: centre {listed} has fewer than {MIN_CENTRE_EVENTS} {ep} events after "
            "the landmark; a held-out centre needs at least 5 (merge it with another centre or leave it out)"
        )
    notes = [
        f"WARNING {ep}: centre {c} has only {events[c]} events (< {FEW_CENTRE_EVENTS}); its estimates are "
        "imprecise and it is pooled with little weight"
        for c in labels
        if events[c] < FEW_CENTRE_EVENTS
    ]
    unassigned = int(centre.isna().sum())
    if unassigned:
        notes.append(f"{ep}: {unassigned} patients without a centre are in every development set, never held out")
    return labels, centre, notes


def _main_horizon(prep: PreparedEndpoint, centre: pd.Series, labels: list[str], min_at_risk: int) -> float:
    """The largest model horizon every centre's patients were followed to (see the module docstring)."""
    time = np.asarray(prep.data.y["time"], float)
    masks = [(centre == c).fillna(False).to_numpy() for c in labels]
    horizons = sorted(prep.horizons or prep.prediction_horizons)
    passed = [h for h in horizons if all(time[m].max() > h for m in masks)]
    followed = [h for h in passed if all(int((time[m] >= h).sum()) >= min_at_risk for m in masks)]
    if followed:
        return followed[-1]
    if passed:
        return passed[-1]
    shortest = min(float(time[m].max()) for m in masks)
    raise UserInputError(
        f"{prep.endpoint.upper()}: no horizon of the experiment ({', '.join(f'{h:g}' for h in horizons)} months) "
        f"lies within every centre's follow-up (the shortest ends at {shortest:.3g} months); choose shorter horizons"
    )


def _validate_family(
    config: ExperimentConfig,
    prep: PreparedEndpoint,
    family: str,
    params: dict[str, Any],
    centres: tuple[list[str], pd.Series],
    horizon: float,
    tick: Callable[[str], None],
) -> CentreRun:
    """Hold out each centre, develop the pipeline on the rest, validate it there; pool across centres."""
    labels, centre = centres
    X, y = prep.data.X, prep.data.y
    competing = bool(prep.data.competing)
    rows, measures = [], []
    horizons = sorted({*(h for h in prep.horizons if h <= horizon), horizon})
    for label in labels:
        held = (centre == label).fillna(False).to_numpy()
        pipe = make_pipeline(config, build_family(family, params, config.seed, competing=competing))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RiskModelWarning)  # a fold's convergence notes: the pooling says enough
            fitted = pipe.fit(X[~held], y[~held])
        Z = fitted.named_steps["features"].transform(X[held])
        boot = config.evaluation.bootstrap
        if competing:  # Wolbers C, the IPCW Brier, O/E and slope of the CIF (riskmodel evaluate's)
            q = fixed_cif_predictions(fitted.named_steps["model"], Z, y[held], horizons)
            v = validate_cif_predictions(y[held], q, n_boot=boot, seed=config.seed)
        else:
            p = fixed_predictions(fitted.named_steps["model"], Z, y[held], horizons)
            v = validate_predictions(y[held], p, n_boot=boot, seed=config.seed, band_resamples=0)
        rows.append(centre_row(label, v, horizon, competing=competing))
        measures.append(v.table.assign(centre=label))
        tick(f"{prep.endpoint.upper()} {family} {label}")
    table = pd.DataFrame(rows)
    measured = pd.concat(measures, ignore_index=True)
    return CentreRun(prep.endpoint, family, horizon, table, measured, {}, competing=competing)


def internal_external(
    config: ExperimentConfig | str | Path,
    *,
    data: str | Path | pd.DataFrame | None = None,
    endpoints: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    method: Method = "REML",
) -> CentreValidation:
    """Internal-external cross-validation by the declared centre, pooled across centres and tracked.

    See the module docstring. ``data``, ``endpoints`` and ``models`` override the experiment's, as
    for :func:`riskmodel.workflow.train`; ``method``: REML (default) or DL for tau².
    """
    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    frame = data if isinstance(data, pd.DataFrame) else None
    path = None if isinstance(data, pd.DataFrame) else data
    config = override(config, data=path, endpoints=endpoints, models=models)
    column = config.cohort.centre if config.cohort is not None else None
    if not column:
        raise UserInputError(
            "cohort.centre: validation by centre needs the centre column declared in the experiment's cohort "
            "(cohort: {centre: <column>}; riskmodel init --centre <column>)"
        )
    if config.evaluation.bootstrap < MIN_RESAMPLES:
        raise UserInputError(
            f"evaluation.bootstrap: {config.evaluation.bootstrap}; validation by centre estimates each centre's "
            f"standard errors from bootstrap resamples: set it to at least {MIN_RESAMPLES}"
        )
    cohort = load_cohort(config, frame)
    config, dropped = drop_uninformative(config, cohort)
    prepared = prepare_endpoints(config, cohort)
    result = CentreValidation(config.name, "", column, notes=list(dropped))
    plans = {}
    for ep, prep in prepared.items():
        labels, centre, notes = held_out_centres(prep, column, cohort.source)
        horizon = _main_horizon(prep, centre, labels, config.evaluation.min_at_risk)
        what = "Wolbers C, and the slope and O/E of the CIF," if prep.data.competing else "C, slope and O/E"
        notes.append(
            f"{ep.upper()}: {len(labels)} centres held out in turn; {what} at {horizon:g} months pooled "
            f"by random-effects meta-analysis ({method}); SEs from {config.evaluation.bootstrap} bootstrap resamples"
        )
        result.notes += notes
        plans[ep] = (labels, centre, horizon)
    families = config.models.enabled()
    total = sum(len(p[0]) for p in plans.values()) * len(families)
    done = [0]

    def tick(label: str) -> None:
        done[0] += 1
        if progress:
            progress(done[0], total, label)

    for ep, (labels, centre, horizon) in plans.items():
        for family, params in families.items():
            run = _validate_family(config, prepared[ep], family, params.model_dump(), (labels, centre), horizon, tick)
            run.pooled = pool_centres(run.table, method)
            result.runs.append(run)
    _track(result, config, cohort, tracking_uri)
    return result


def _track(result: CentreValidation, config: ExperimentConfig, cohort: Cohort, tracking_uri: str | None) -> None:
    """One run per (endpoint, family): tags, per-centre and pooled metrics, tables and forest plots."""
    from riskmodel.workflow.prepare import shareable_config

    tracker = Tracker(config.name, tracking_uri, guard=PhiGuard.for_cohort(cohort, own=shareable_config(config)))
    result.tracking_uri = tracker.shown_uri
    ctx = RunContext.create(config, cohort)
    for run in result.runs:
        tags = {
            **ctx.base_tags,
            "command": "train --by centre",
            "evaluation_by": "centre",
            "centre_column": result.centre_column,
            "endpoint": run.endpoint,
            "family": run.family,
            "n_centres": str(len(run.table)),
            "main_horizon": f"{run.horizon:g}",
            "meta_method": next(iter(run.pooled.values())).meta.method,
            "se_method": f"bootstrap ({config.evaluation.bootstrap} resamples of each held-out centre)",
        }
        competing = run.competing
        if competing:  # the same keys; every measure is of the CIF of the event of interest
            tags.update(analysis="competing", **{f"metric.{k}": v for k, v in COMPETING_MEASURE_NAMES.items()})
        label = f"{run.endpoint.upper()} {run.family}"
        with tracker.parent(f"iecv-{run.endpoint}-{run.family}", tags) as run_id:
            run.run_id = run_id
            tracker.log(params=ctx.flat_config, metrics=run.metrics)
            tracker.log_text(ctx.config_yaml(), "config.yaml")
            tracker.log_text(safe_csv_text(run.table, index=False), "iecv/centres.csv")
            tracker.log_text(safe_csv_text(run.measures, index=False), "iecv/centre_measures.csv")
            tracker.log_text(safe_csv_text(pooled_table(run.pooled), index=False), "iecv/pooled.csv")
            for key, pooled in run.pooled.items():
                name = COMPETING_MEASURE_NAMES[key] if competing else MEASURES[key][2]
                title = f"{label}: {name} by held-out centre" + (f" at {run.horizon:g} months" if key != "c" else "")
                figure = meta_forest_plot(forest_table(run.table, key), pooled, title)
                tracker.log_bytes(figure_png(figure), f"iecv/forest_{key}.png")
