"""``riskmodel tune``: an Optuna study of one family's hyperparameters, tracked in MLflow.

* **Objective.** A survival metric on held-out folds of repeated stratified cross-validation
  (:mod:`riskmodel.tuning.objective`); the whole pipeline is refitted in every fold, and every
  trial sees the same folds.
* **Search spaces.** Each family's default (:mod:`riskmodel.models.registry`), overridden per
  parameter by the experiment's ``tune.space.<family>``. The experiment's own parameters are
  trial 0, so the best trial is never worse in cross-validation than the untuned model.
* **Tracking.** One MLflow parent run per study and one nested run per trial (params, per-fold
  metrics, state). The best trial is refitted on all patients and logged as the study's model,
  optionally registered.
* **Storage and resuming.** Default: ``mlruns/optuna.db`` (SQLite). ``--trials N`` is the total
  of finished (COMPLETE or PRUNED) trials: running the command again resumes the study and runs
  only what is missing. Ctrl-C or SIGTERM ends the running trial as FAIL (its MLflow run KILLED);
  finished trials are kept. A trial left RUNNING by a crash is failed at the next start
  (:mod:`riskmodel.tuning.recovery`).
* **Distributed.** With ``--storage postgresql://…`` any number of workers, on any hosts, share
  the study. Each worker claims a trial slot before it starts work, so the study ends with exactly
  N finished trials; a worker that loses the race for the last slot records that trial as FAIL
  (user attribute ``surplus``) and stops.
* **Nested validation.** ``--nested-cv K`` validates the tuning itself
  (:mod:`riskmodel.tuning.nested`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from riskmodel.cohort.endpoints import ENDPOINTS
from riskmodel.config import MAX_SPLITS, ExperimentConfig, load_experiment
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.limits import check_limit
from riskmodel.errors import RiskModelError, UserInputError, own_warnings_silenced
from riskmodel.models.registry import ParamSpace, build_family, spec
from riskmodel.privacy import PhiGuard, PrivacyError
from riskmodel.scoring import RiskModel
from riskmodel.stats.samplesize import SampleSize
from riskmodel.tracking import Tracker, resolve_tracking_uri
from riskmodel.tuning.conclusion import conclude_once
from riskmodel.tuning.nested import nested_cv
from riskmodel.tuning.objective import NoFoldValue, Surplus, direction, optuna_module, run_folds, splits
from riskmodel.tuning.recovery import FINISHED, abandon_own_trials, await_other_workers, count, fail_dead_trials
from riskmodel.tuning.selection import select_trial
from riskmodel.tuning.spaces import check_space, fixed_params, search_space
from riskmodel.tuning.storage import default_storage, open_storage, parent_run, shareable_storage
from riskmodel.workflow.prepare import (
    PreparedEndpoint,
    drop_uninformative,
    load_cohort,
    make_pipeline,
    override,
    prepare_endpoints,
    sample_size,
    shareable_config,
)
from riskmodel.workflow.record import analysis_tags

__all__ = ["SEED_STRIDE", "TuneResult", "tune"]

SEED_STRIDE = 1000  # worker k seeds its sampler with the experiment's seed + 1000 k
MAX_TRIALS = 10_000  # a safety limit (riskmodel.core.limits)


def _check_options(trials: int, n_jobs: int, worker: int, nested: int) -> None:
    """Refuse, before any work, options out of range or above the safety limits."""
    if trials < 1:
        raise UserInputError(f"--trials must be at least 1, got {trials}")
    for option, value, cap in (("--trials", trials, MAX_TRIALS), ("--nested-cv", nested, MAX_SPLITS)):
        rule = check_limit(value, cap)
        if rule:
            raise UserInputError(f"{option} {value:,}: {rule}")
    if n_jobs < 1:
        raise UserInputError(f"--n-jobs must be at least 1, got {n_jobs}")
    if not 0 <= worker < SEED_STRIDE:
        raise UserInputError(f"--worker-index must be between 0 and {SEED_STRIDE - 1}, got {worker}")


def _sampler_seed(seed: int, worker: int) -> int:
    """The experiment's seed + 1000 × worker, wrapped into numpy's 32-bit seed range."""
    return (seed + SEED_STRIDE * worker) % 2**32


@dataclass
class TuneResult:
    """What one ``tune`` invocation leaves behind."""

    study_name: str
    storage: str  # without password
    parent_run_id: str
    metric: str
    direction: str
    finished: int  # COMPLETE + PRUNED trials in the study
    failed: int
    ran_here: int
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial: int | None = None
    default_value: float | None = None  # trial 0: the experiment's own parameters
    model_uri: str | None = None
    registered: str | None = None
    nested: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    exploratory: bool = False  # the cohort is below Riley et al.'s minimum sample size
    competing: bool = False  # a competing endpoint: CIF models, Wolbers' C under the C keys


@dataclass
class _Setup:
    """What the study tunes: the family, its space and fixed parameters, and the prepared data."""

    config: ExperimentConfig
    family: str
    endpoint: str
    space: dict[str, ParamSpace]
    fixed: dict[str, Any]
    prepared: PreparedEndpoint
    metric: str
    horizon: float  # td-AUC's; one of the window's horizons
    size: SampleSize | None = None  # Riley et al.'s assessment of the cohort (set by tune)

    def make(self, params: dict[str, Any]) -> Any:
        """The pipeline of one trial's parameters (CIF models for a competing endpoint)."""
        estimator = build_family(
            self.family, {**self.fixed, **params}, self.config.seed, competing=self.prepared.competing
        )
        return make_pipeline(self.config, estimator)


def _setup(
    config: ExperimentConfig, family: str | None, endpoint: str | None, data: str | Path | None
) -> tuple[_Setup, Any]:
    enabled = config.models.enabled()
    family = family or next(iter(enabled), "cox")
    spec(family, option="--model")
    endpoint = endpoint or config.endpoints[0]
    known = config.cohort.endpoint_names if config.cohort is not None else list(ENDPOINTS)
    if endpoint not in known:
        raise UserInputError(f"--endpoint: unknown {endpoint!r}; choose from {', '.join(known)}")
    space = search_space(config, family)
    fixed = fixed_params(config, family)
    check_space(space, fixed, family)
    config = override(config, data=data, endpoints=[endpoint], models=None)
    cohort = load_cohort(config)
    config, _ = drop_uninformative(config, cohort)
    prepared = prepare_endpoints(config, cohort, [endpoint])[endpoint]
    metric = config.tune.metric
    window = prepared.window
    horizon = config.tune.horizon or (window.horizons[0] if window.horizons else config.horizons[0])
    if metric == "td_auc" and horizon not in window.horizons:
        raise UserInputError(
            f"tune.horizon: td-AUC at {horizon:g} months needs {window.min_at_risk} patients still followed there; "
            f"{endpoint.upper()} has enough at {', '.join(f'{h:g}' for h in window.horizons) or 'no horizon'} "
            "(choose one of those, or the metric uno_c)"
        )
    setup = _Setup(config, family, endpoint, space, fixed, prepared, metric, horizon)
    return setup, cohort


def tune(
    config: ExperimentConfig | str | Path,
    *,
    trials: int,
    family: str | None = None,
    endpoint: str | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    n_jobs: int = 1,
    register: str | None = None,
    nested_cv: int = 0,
    tracking_uri: str | None = None,
    data: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    worker: int = 0,
) -> TuneResult:
    """Run (or resume) the study until it holds ``trials`` finished trials; see the module docstring.

    The sampler is seeded with the experiment's seed plus ``SEED_STRIDE × worker``: the same
    command gives the same trials, and workers sharing a study (each its own ``worker`` index)
    do not all propose the same parameters.
    """
    optuna = optuna_module()
    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    _check_options(trials, n_jobs, worker, nested_cv)
    s, cohort = _setup(config, family, endpoint, data)
    uri = resolve_tracking_uri(tracking_uri)
    storage_url = storage or default_storage(uri)
    name = study_name or f"{s.config.name}-{s.endpoint}-{s.family}"
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(storage_url),
        direction=direction(s.metric),
        sampler=optuna.samplers.TPESampler(seed=_sampler_seed(s.config.seed, worker)),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=1)
        if s.config.tune.pruner == "median"
        else optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection[direction(s.metric).upper()]:
        raise UserInputError(f"study {name!r} exists with another direction; choose another --study-name")
    result = TuneResult(name, shareable_storage(storage_url), "", s.metric, direction(s.metric), 0, 0, 0)
    revived = fail_dead_trials(study)
    if revived:
        result.notes.append(f"failed {revived} trial(s) left RUNNING by an ended process on this host")
    tracker = Tracker(s.config.name, uri, guard=PhiGuard.for_cohort(cohort, own=shareable_config(s.config)))
    if tracker.stale_runs:
        result.notes.append(f"closed {len(tracker.stale_runs)} MLflow run(s) left RUNNING by an ended process")
    s.size = sample_size(s.config, s.prepared)
    result.exploratory = not s.size.adequate
    result.competing = s.prepared.competing
    tags = {
        "optuna_study": name,
        "optuna_storage": result.storage,
        "endpoint": s.endpoint,
        "family": s.family,
        "metric": s.metric,
        "exploratory": str(result.exploratory).lower(),
        f"sampler_seed_worker_{worker}": str(_sampler_seed(s.config.seed, worker)),
        **{k.replace("evaluation.", "evaluation_"): v for k, v in s.prepared.window.params().items()},
        **analysis_tags(s.config, s.prepared),
    }
    try:
        result.parent_run_id = parent_run(study, tracker, f"tune-{name}", tags)
        # tags, not params: a resumed study may ask for more trials, and MLflow params never change
        tracker.log_to(result.parent_run_id, tags={"target_trials": str(trials), "direction": direction(s.metric)})
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial({k: s.fixed[k] for k in s.space}, user_attrs={"experiment_defaults": True})
        before = count(study, FINISHED)
        _optimize(study, s, tracker, result.parent_run_id, tags, trials, timeout, n_jobs, progress)
        result.ran_here = count(study, FINISHED) - before
        await_other_workers(study, trials, progress)
        result.finished = count(study, FINISHED)
        result.failed = count(study, ("FAIL",))
        try:
            _conclude(study, s, tracker, result, register, nested_cv, trials)
        except PrivacyError as exc:  # the refit's model or a table refused: KILLED with a note, never FAILED
            tracker.refused(result.parent_run_id, exc)
            raise
        done = result.finished >= trials
        tracker.close_run(result.parent_run_id, "FINISHED" if done else "KILLED")
        if not done:
            result.notes.append(f"the study holds {result.finished} of {trials} trials (timeout); run again to go on")
    except KeyboardInterrupt:  # wherever it lands (a run being opened, the refit): no run of ours stays RUNNING
        tracker.close_own_runs("KILLED")
        raise
    return result


def _optimize(
    study: Any,
    s: _Setup,
    tracker: Tracker,
    parent_id: str,
    tags: dict[str, str],
    trials: int,
    timeout: float | None,
    n_jobs: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Run trials until the study holds ``trials`` finished ones (or the timeout); each an MLflow run."""
    optuna = optuna_module()
    me = f"{socket.gethostname()}:{os.getpid()}"
    stop = threading.Event()
    folds = splits(s.prepared.data.y, s.config.tune.n_splits, s.config.tune.n_repeats, s.config.seed)
    X, y = s.prepared.data.X, s.prepared.data.y

    def objective(trial: Any) -> float:
        claimed = len(
            [
                t
                for t in study.get_trials(deepcopy=False)
                if t.number < trial.number and t.state.name in ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
            ]
        )
        trial.set_user_attr("owner", me)  # first: a crash after it is traced to this process
        if claimed >= trials or stop.is_set():
            trial.set_user_attr("surplus", True)
            study.stop()
            raise Surplus()
        run_id = tracker.open_run(
            f"trial-{trial.number}", {**tags, "optuna_trial": str(trial.number)}, parent_id=parent_id
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        status, state = "FAILED", "FAIL"

        def on_fold(k: int, value: float) -> None:
            tracker.log_to(run_id, metrics={f"fold_{s.metric}": value}, step=k)

        try:
            value, scores = run_folds(
                trial, s.make, X, y, folds, s.metric, s.prepared.window, s.horizon, s.space, on_fold
            )
            tracker.log_to(
                run_id,
                params=trial.params,
                metrics={f"{s.metric}_mean": value, f"{s.metric}_sd": float(np.nanstd(scores))},
            )
            status, state = "FINISHED", "COMPLETE"
            return value
        except optuna.TrialPruned:
            tracker.log_to(run_id, params=trial.params)
            status, state = "FINISHED", "PRUNED"
            raise
        except KeyboardInterrupt:
            status = "KILLED"
            stop.set()
            raise
        finally:
            tracker.log_to(run_id, tags={"optuna_state": state})
            tracker.close_run(run_id, status)

    def after(study: Any, trial: Any) -> None:
        finished = count(study, FINISHED)
        if progress:
            progress(min(finished, trials), trials)
        if finished >= trials:
            study.stop()

    try:
        _rounds(study, objective, after, stop, trials, timeout, n_jobs)
    except KeyboardInterrupt:
        abandon_own_trials(study, tracker, me)
        tracker.close_run(parent_id, "KILLED")
        raise
    except PrivacyError as exc:  # a refusal, not a failure: the parent ends KILLED with a note
        abandon_own_trials(study, tracker, me)
        tracker.refused(parent_id, exc)
        raise
    except RiskModelError:
        abandon_own_trials(study, tracker, me)
        tracker.close_run(parent_id, "FAILED")
        raise


def _interrupted(exc: BaseException) -> bool:
    """Whether a Ctrl-C or SIGTERM (a KeyboardInterrupt) is behind ``exc``: an interrupt landing
    while Optuna records a trial makes its ``finally`` block raise an AssertionError instead."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _rounds(
    study: Any,
    objective: Callable[[Any], float],
    after: Callable[[Any, Any], None],
    stop: threading.Event,
    trials: int,
    timeout: float | None,
    n_jobs: int,
) -> None:
    """Call Optuna until the study holds ``trials`` claimed trials, the timeout passes, or three
    rounds in a row finish nothing: failed trials (a fit error) use up optimize's ``n_trials``
    without finishing, so it is called again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    idle_rounds = 0
    while not stop.is_set() and idle_rounds < 3:
        claimed = count(study, (*FINISHED, "RUNNING", "WAITING"))
        left = None if deadline is None else deadline - time.monotonic()
        if claimed >= trials or (left is not None and left <= 0):
            return
        finished_before = count(study, FINISHED)
        try:
            study.optimize(
                objective,
                n_trials=trials - claimed,
                timeout=left,
                n_jobs=n_jobs,
                catch=(Surplus, NoFoldValue),  # a failed fit fails its trial; a user error stops the study
                callbacks=[after],
                gc_after_trial=False,
            )
        except Exception as exc:
            if _interrupted(exc):  # Optuna's bookkeeping turned an interrupt into another error
                raise KeyboardInterrupt from None
            raise
        idle_rounds = idle_rounds + 1 if count(study, FINISHED) == finished_before else 0


def _conclude(
    study: Any, s: _Setup, tracker: Tracker, result: TuneResult, register: str | None, nested: int, trials: int
) -> None:
    """Pick the trial to keep; one of the workers sharing the study refits it on all patients, logs
    it as the study's model (registered if asked), runs the nested validation if asked and logs the
    configuration (:mod:`riskmodel.tuning.conclusion`); the others report what it logged."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    defaults = [t for t in complete if t.user_attrs.get("experiment_defaults")]
    result.default_value = float(defaults[0].value) if defaults else None
    best = None
    if complete:
        best, why = select_trial(study)
        if why:
            result.notes.append(why)
        result.best_value, result.best_params, result.best_trial = float(best.value), dict(best.params), best.number
    me = f"{socket.gethostname()}:{os.getpid()}"

    def work() -> dict[str, Any]:
        record: dict[str, Any] = {}
        if best is not None:
            tracker.log_to(
                result.parent_run_id,
                metrics={f"best_{s.metric}": float(best.value), "trials_finished": result.finished},
                tags={"best_trial": str(best.number)},
            )
            record["model_uri"] = tracker.log_model_to(result.parent_run_id, _refit(s, dict(best.params)))
            study.set_user_attr("best_model_uri", record["model_uri"])
            if register:
                record["registered"] = tracker.register(record["model_uri"], register)
        if nested:
            _nested(s, tracker, result, trials, nested)
        tracker.log_text_to(
            result.parent_run_id, yaml.safe_dump(shareable_config(s.config), sort_keys=False), "config.yaml"
        )
        return record

    state = f"{result.parent_run_id}/{result.finished}/{best.number if best is not None else '-'}"
    record, by = conclude_once(study, state, me, work)
    result.model_uri, result.registered = record.get("model_uri"), record.get("registered")
    if by == me:
        return
    result.notes.append(f"the study's conclusion (refit, model, configuration) was written by worker {by}")
    if nested:
        result.notes.append("--nested: its folds are in the parent run (nested_cv.csv), computed by that worker")
    if register and result.model_uri and not result.registered:
        result.registered = tracker.register(result.model_uri, register)


def _refit(s: _Setup, params: dict[str, Any]) -> RiskModel:
    """The chosen parameters refitted on every patient, as a RiskModel."""
    sd = s.prepared.data
    with own_warnings_silenced():
        fitted = s.make(params).fit(sd.X, sd.y)
    return RiskModel.from_training(
        endpoint=s.endpoint,
        family=s.family,
        experiment=s.config.name,
        landmark_months=s.config.landmark_months,
        horizons=s.prepared.prediction_horizons,
        features=fitted.named_steps["features"],
        estimator=fitted.named_steps["model"],
        X=sd.X,
        risk_cutoffs=s.config.risk_group_cutoffs,
        reliable_until=s.prepared.window.reliable_until,
        min_at_risk=s.prepared.window.min_at_risk,
        declaration=s.config.cohort,
        size=s.size,
    )


def _nested(s: _Setup, tracker: Tracker, result: TuneResult, trials: int, outer: int) -> None:
    """Nested CV of the whole tuning, logged on the study's parent run. A competing endpoint's is of
    its CIF models, with the competing-risk measures under the same names (Wolbers' C as harrell_c)."""
    inner = max(trials // 2, 5)
    result.nested = nested_cv(s.config, s.family, s.prepared, s.space, s.fixed, outer, inner, s.metric, s.horizon)
    folds = result.nested[["harrell_c", "uno_c"]].astype(float)
    nested_metrics = {f"nested_{m}_mean": float(np.nanmean(folds[m].to_numpy())) for m in folds}
    nested_metrics.update({f"nested_{m}_sd": float(np.nanstd(folds[m].to_numpy(), ddof=1)) for m in folds})
    tracker.log_to(result.parent_run_id, metrics=nested_metrics)
    tracker.log_text_to(result.parent_run_id, safe_csv_text(result.nested, index=False), "nested_cv.csv")
