"""``riskmodel tune``: Optuna studies of one family's hyperparameters, tracked in MLflow.

* **Objective.** A survival metric on held-out folds of repeated stratified (on the event)
  cross-validation: Uno's C (default), the integrated Brier score, or td-AUC at a horizon. The
  whole pipeline (features and model) is refitted in every fold. The splits come from the
  experiment's seed, so every trial sees the same folds and trials are comparable. After each
  fold the running mean is reported, and the pruner (median by default) can stop a poor trial.
* **Search spaces.** :data:`DEFAULT_SPACES`, overridden per parameter by the experiment's
  ``tune.space.<family>``. The experiment's own parameters are trial 0, so the best trial is
  never worse in cross-validation than the untuned model.
* **Tracking.** One MLflow parent run per study and one nested run per trial (params, per-fold
  metrics, state). The best trial is refitted on all patients and logged as the study's model,
  optionally registered. Runs are tagged with the study name and storage, and each trial carries
  its MLflow run ID as an Optuna user attribute (the study carries the parent's).
* **Storage and resuming.** Default: ``mlruns/optuna.db`` (SQLite). ``--trials N`` is the total
  of finished (COMPLETE or PRUNED) trials: running the command again resumes the study and runs
  only what is missing. Ctrl-C or SIGTERM ends the running trial as FAIL (its MLflow run KILLED);
  finished trials are kept. A trial left RUNNING by a crash is failed at the next start: at once
  when its process on this host is gone, otherwise after the heartbeat's grace period.
* **Distributed.** With ``--storage postgresql://…`` any number of workers, on any hosts, share
  the study. Each worker claims a trial slot before it starts work, so the study ends with exactly
  N finished trials; a worker that loses the race for the last slot records that trial as FAIL
  (user attribute ``surplus``) and stops.
* **Nested validation.** :class:`TunedSurvival` is an estimator whose ``fit`` runs a whole
  in-memory study on its training data. Wrapped in the feature pipeline it goes through
  :func:`riskmodel.evaluate.cross_validate` (``riskmodel tune --nested-cv K``) or the bootstrap
  optimism validation, so the tuning itself is validated.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from riskmodel._atomic import process_alive, retry_first_use, sqlite_setup_lock
from riskmodel.config import BoostingConfig, CoxConfig, ExperimentConfig, ForestConfig, ParamSpace, load_experiment
from riskmodel.errors import UserInputError
from riskmodel.models.base import SurvivalEstimator

__all__ = ["DEFAULT_SPACES", "TuneResult", "TunedSurvival", "default_storage", "search_space", "tune"]

DEFAULT_SPACES: dict[str, dict[str, ParamSpace]] = {
    "cox": {
        "penalty": ParamSpace(low=1e-3, high=10.0, log=True),
        "l1_ratio": ParamSpace(low=0.0, high=1.0),
    },
    "rsf": {
        "n_estimators": ParamSpace(low=100, high=500, step=50, integer=True),
        "min_samples_leaf": ParamSpace(low=1, high=20, integer=True),
        "max_features": ParamSpace(choices=["sqrt", 0.5, 1.0]),
        "max_depth": ParamSpace(choices=[None, 3, 5, 8]),
        "time_grid": ParamSpace(choices=["auto", 25, 50, 100]),
    },
    "gbm": {
        "learning_rate": ParamSpace(low=0.01, high=0.3, log=True),
        "max_depth": ParamSpace(low=1, high=5, integer=True),
        "n_estimators": ParamSpace(low=50, high=500, step=50, integer=True),
        "subsample": ParamSpace(low=0.5, high=1.0),
        "min_child_weight": ParamSpace(low=0.1, high=10.0, log=True),
        "reg_lambda": ParamSpace(low=1e-3, high=10.0, log=True),
        "reg_alpha": ParamSpace(choices=[0.0, 0.01, 0.1, 1.0]),
    },
}
FAMILY_CONFIGS: dict[str, Any] = {"cox": CoxConfig, "rsf": ForestConfig, "gbm": BoostingConfig}
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 30  # a trial whose heartbeat is older than this is failed (crashed worker, any host)
UNCLAIMED_SECONDS = 10  # a live worker names itself on a new trial within milliseconds
FINISHED = ("COMPLETE", "PRUNED")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UserInputError("tuning needs optuna: pip install optuna") from exc
    # a failed trial is recorded in the study and its MLflow run; optuna would also print a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def search_space(config: ExperimentConfig, family: str) -> dict[str, ParamSpace]:
    """The family's default space with the experiment's ``tune.space.<family>`` entries applied."""
    if family not in DEFAULT_SPACES:
        raise UserInputError(f"unknown model family {family!r}; choose from cox, rsf, gbm")
    return {**DEFAULT_SPACES[family], **config.tune.space.get(family, {})}  # type: ignore[call-overload]


def _suggest(trial: Any, name: str, spec: ParamSpace) -> Any:
    if spec.choices is not None:
        return trial.suggest_categorical(name, spec.choices)
    assert spec.low is not None
    assert spec.high is not None
    if spec.integer:
        step = int(spec.step or 1)
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log and step == 1)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log and spec.step is None)


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///<folder of the MLflow store>/optuna.db``, else ``sqlite:///mlruns/optuna.db``."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
        return f"sqlite:///{folder / 'optuna.db'}"
    return "sqlite:///mlruns/optuna.db"


def shareable_storage(url: str) -> str:
    """The storage URL without its password, for tags and messages.

    >>> shareable_storage("postgresql://ann:secret@db.example:5432/optuna")
    'postgresql://ann@db.example:5432/optuna'
    """
    import re

    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1@", url)


# --------------------------------------------------------------------------- the objective
def _splits(y: np.ndarray, n_splits: int, n_repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The CV folds of every trial: :func:`riskmodel.evaluate.stratified_splitter`'s, fixed once."""
    from riskmodel.evaluate import stratified_splitter

    event = np.asarray(y["event"], bool)
    return list(stratified_splitter(event, n_splits, n_repeats, seed).split(np.zeros(len(y)), event))


def _fold_score(
    model: Any, X: Any, y: np.ndarray, train: np.ndarray, test: np.ndarray, metric: str, h: float, span: float
) -> float:
    """The objective on one held-out fold (NaN when the fold cannot give it).

    Uno's C and the IBS cover follow-up up to ``span`` months (``inf``: all of it); td-AUC is at ``h``.
    """

    from sklearn.pipeline import Pipeline

    from riskmodel.errors import RiskModelWarning
    from riskmodel.evaluate import survival_metrics

    def pick(A: Any, idx: np.ndarray) -> Any:
        return A.iloc[idx] if isinstance(A, pd.DataFrame) else A[idx]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RiskModelWarning)
            fitted = model.fit(pick(X, train), y[train])
            if isinstance(fitted, Pipeline):
                Z, estimator = fitted[:-1].transform(pick(X, test)), fitted[-1]
            else:
                Z, estimator = pick(X, test), fitted
            horizons = [t for t in sorted({h, span}) if t <= estimator.max_time_] or [estimator.max_time_]
            if metric == "td_auc" and h > estimator.max_time_:
                return math.nan

            def survival(grid: np.ndarray) -> np.ndarray:
                return np.asarray(estimator.predict_survival(Z, grid).to_numpy())

            values = survival_metrics(y[train], y[test], estimator.predict_risk(Z), survival, horizons)
    except (ValueError, np.linalg.LinAlgError, ArithmeticError):
        return math.nan
    key = f"td_auc_{h:g}" if metric == "td_auc" else metric
    return float(values.get(key, math.nan))


def _direction(metric: str) -> str:
    return "minimize" if metric == "ibs" else "maximize"


class _Surplus(Exception):
    """The study already has its trials: this one is not run."""


def _run_folds(
    trial: Any,
    make: Callable[[dict[str, Any]], Any],
    X: Any,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    metric: str,
    horizon: float,
    span: float,
    space: Mapping[str, ParamSpace],
    on_fold: Callable[[int, float], None] | None = None,
) -> tuple[float, list[float]]:
    """Suggest the trial's parameters, score them fold by fold (reporting for pruning)."""
    optuna = _optuna()
    params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
    scores: list[float] = []
    for k, (train, test) in enumerate(splits):
        value = _fold_score(make(params), X, y, train, test, metric, horizon, span)
        scores.append(value)
        if on_fold:
            on_fold(k, value)
        if np.isfinite(scores).any():
            trial.report(float(np.nanmean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
    if not np.isfinite(scores).any():
        raise ValueError(f"no fold gave a value of {metric}")
    trial.set_user_attr("fold_scores", [None if not math.isfinite(v) else v for v in scores])
    return float(np.nanmean(scores)), scores


def _select(study: Any, defaults_first: bool = True) -> tuple[Any, str | None]:
    """The trial to refit: the best one, unless it beats the experiment's own parameters (trial 0)
    by less than one standard error of the paired fold differences; then trial 0 (a note says so).

    With few patients the best of many noisy trials is partly luck (the winner's curse); this
    keeps the defaults unless the evidence for the winner is at least that strong.
    """
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial
    base = next((t for t in complete if t.user_attrs.get("experiment_defaults")), None)
    if base is None or best.number == base.number:
        return best, None
    a = np.array(best.user_attrs.get("fold_scores", []), dtype=float)
    b = np.array(base.user_attrs.get("fold_scores", []), dtype=float)
    if len(a) != len(b) or len(a) < 2:
        return best, None
    diff = a - b if study.direction.name == "MAXIMIZE" else b - a
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2:
        return best, None
    se = float(diff.std(ddof=1) / math.sqrt(len(diff)))
    if diff.mean() < se:
        return base, (
            f"trial {best.number} beat the experiment's parameters by {diff.mean():.4f}, less than one standard error "
            f"({se:.4f}) over the folds: the experiment's parameters (trial {base.number}) are kept"
        )
    return best, None


# --------------------------------------------------------------------------- the command
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


def _fail_dead_trials(study: Any) -> int:
    """FAIL the RUNNING trials left by crashed workers, so that they free their slots now.

    A trial names its worker (``owner``: host and pid) as its first write. Failed here: trials of
    a process on this host that is gone, and trials that never named a worker (a worker killed
    between creating and naming one) once they are older than :data:`UNCLAIMED_SECONDS`. Trials of
    other hosts are left to the heartbeat (failed after :data:`GRACE_SECONDS` without one).
    """
    import datetime as dt

    optuna = _optuna()
    host, failed = socket.gethostname(), 0
    deadline = time.monotonic() + UNCLAIMED_SECONDS + 1
    while True:
        unclaimed = False
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            owner = str(t.user_attrs.get("owner", ""))
            name, _, pid = owner.rpartition(":")
            dead = name == host and pid.isdigit() and not process_alive(int(pid))
            if not owner and t.datetime_start is not None:
                age = (dt.datetime.now() - t.datetime_start).total_seconds()
                dead = age > UNCLAIMED_SECONDS
                unclaimed = unclaimed or not dead
            if dead:
                study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
                failed += 1
        if not unclaimed or time.monotonic() > deadline:
            return failed
        time.sleep(1.0)


def _abandon_own_trials(study: Any, tracker: Any, me: str) -> None:
    """After Ctrl-C or SIGTERM: FAIL this worker's trials still RUNNING, and KILL their MLflow runs.

    Optuna fails a trial interrupted inside the objective, but not one interrupted while it is
    created or recorded. Ours are those naming this process; an unnamed one still unnamed half a
    second later is ours too (a live worker names its trial within milliseconds).
    """
    optuna = _optuna()

    def running() -> list[Any]:
        return list(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))

    unnamed = {t._trial_id for t in running() if "owner" not in t.user_attrs}
    if unnamed:
        time.sleep(0.5)
    for t in running():
        owner = t.user_attrs.get("owner")
        if owner == me or (owner is None and t._trial_id in unnamed):
            study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
            run_id = t.user_attrs.get("mlflow_run_id")
            if run_id and tracker.run_status(run_id) == "RUNNING":
                tracker.close_run(run_id, "KILLED")


def _count(study: Any, states: Sequence[str]) -> int:
    optuna = _optuna()
    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


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
) -> TuneResult:
    """Run (or resume) the study until it holds ``trials`` finished trials; see the module docstring."""
    from riskmodel.cohort import bundled_cohort_path, load, survival_data
    from riskmodel.features import FEATURE_BLOCKS, resolve_blocks
    from riskmodel.privacy import PhiGuard
    from riskmodel.tracking import Tracker, resolve_tracking_uri
    from riskmodel.training import _pipeline, _shareable_config, build_estimator

    optuna = _optuna()
    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    if trials < 1:
        raise UserInputError(f"--trials must be at least 1, got {trials}")
    if n_jobs < 1:
        raise UserInputError(f"--n-jobs must be at least 1, got {n_jobs}")
    enabled = config.models.enabled()
    family = family or next(iter(enabled), "cox")
    if family not in ("cox", "rsf", "gbm"):
        raise UserInputError(f"--model: unknown family {family!r}; choose from cox, rsf, gbm")
    endpoint = endpoint or config.endpoints[0]
    if endpoint not in ("lc", "os"):
        raise UserInputError(f"--endpoint: unknown {endpoint!r}; choose from lc, os")
    space = search_space(config, family)
    fixed = (enabled.get(family) or FAMILY_CONFIGS[family]()).model_dump()
    unknown = sorted(set(space) - set(fixed))
    if unknown:
        raise UserInputError(f"tune.space.{family}: {', '.join(unknown)} is not a {family} parameter")
    path = Path(data) if data is not None else Path(config.data.path or bundled_cohort_path())
    if not path.exists():
        raise UserInputError(f"--data: file not found: {path}")
    cohort = load(path, mapping=config.data.mapping, response_rule=config.data.response_rule)
    used = sorted({c for b in resolve_blocks(config.features.set) for c in FEATURE_BLOCKS[b]})
    sd = survival_data(cohort, endpoint, landmark_months=config.landmark_months, feature_columns=used)  # type: ignore[arg-type]
    metric = config.tune.metric
    horizon = config.tune.horizon or config.horizons[0]  # td-AUC's
    span = max(config.horizons)  # Uno's C and the IBS: up to the longest clinical horizon
    splits = _splits(sd.y, config.tune.n_splits, config.tune.n_repeats, config.seed)

    uri = resolve_tracking_uri(tracking_uri)
    storage_url = storage or default_storage(uri)
    name = study_name or f"{config.name}-{endpoint}-{family}"
    if storage_url.startswith("sqlite:///"):
        Path(storage_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), sqlite_setup_lock(storage_url):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental API
            rdb = retry_first_use(
                lambda: optuna.storages.RDBStorage(
                    storage_url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
                )
            )
    except Exception as exc:
        raise UserInputError(f"--storage: cannot open {shareable_storage(storage_url)}: {exc}") from None
    pruner = (
        optuna.pruners.MedianPruner(n_warmup_steps=1) if config.tune.pruner == "median" else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=name,
        storage=rdb,
        direction=_direction(metric),
        sampler=optuna.samplers.TPESampler(seed=None),
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection[_direction(metric).upper()]:
        raise UserInputError(f"study {name!r} exists with another direction; choose another --study-name")
    result = TuneResult(name, shareable_storage(storage_url), "", metric, _direction(metric), 0, 0, 0)
    revived = _fail_dead_trials(study)
    if revived:
        result.notes.append(f"failed {revived} trial(s) left RUNNING by an ended process on this host")

    tracker = Tracker(config.name, uri, guard=PhiGuard.for_cohort(cohort))
    if tracker.stale_runs:
        result.notes.append(f"closed {len(tracker.stale_runs)} MLflow run(s) left RUNNING by an ended process")
    tags = {
        "optuna_study": name,
        "optuna_storage": result.storage,
        "endpoint": endpoint,
        "family": family,
        "metric": metric,
        "exploratory": "true",
    }
    result.parent_run_id = _parent_run(study, tracker, f"tune-{name}", tags)
    # tags, not params: a resumed study may ask for more trials, and MLflow params never change
    tracker.log_to(result.parent_run_id, tags={"target_trials": str(trials), "direction": _direction(metric)})
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial({k: fixed[k] for k in space}, user_attrs={"experiment_defaults": True})

    host, pid = socket.gethostname(), os.getpid()
    stop = threading.Event()

    def make(params: dict[str, Any]) -> Any:
        return _pipeline(config, build_estimator(family, {**fixed, **params}, config.seed))

    def objective(trial: Any) -> float:
        claimed = len(
            [
                t
                for t in study.get_trials(deepcopy=False)
                if t.number < trial.number and t.state.name in ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
            ]
        )
        trial.set_user_attr("owner", f"{host}:{pid}")  # first: a crash after it is traced to this process
        if claimed >= trials or stop.is_set():
            trial.set_user_attr("surplus", True)
            study.stop()
            raise _Surplus()
        run_id = tracker.open_run(
            f"trial-{trial.number}", {**tags, "optuna_trial": str(trial.number)}, parent_id=result.parent_run_id
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        status, state = "FAILED", "FAIL"

        def on_fold(k: int, value: float) -> None:
            tracker.log_to(run_id, metrics={f"fold_{metric}": value}, step=k)

        try:
            value, scores = _run_folds(trial, make, sd.X, sd.y, splits, metric, horizon, span, space, on_fold)
            tracker.log_to(
                run_id,
                params=trial.params,
                metrics={f"{metric}_mean": value, f"{metric}_sd": float(np.nanstd(scores))},
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
        finished = _count(study, FINISHED)
        if progress:
            progress(min(finished, trials), trials)
        if finished >= trials:
            study.stop()

    before = _count(study, FINISHED)
    deadline = None if timeout is None else time.monotonic() + timeout
    idle_rounds = 0
    try:
        # failed trials (a fit error) use up optimize's n_trials without finishing: go round again
        while not stop.is_set() and idle_rounds < 3:
            claimed = _count(study, (*FINISHED, "RUNNING", "WAITING"))
            left = None if deadline is None else deadline - time.monotonic()
            if claimed >= trials or (left is not None and left <= 0):
                break
            finished_before = _count(study, FINISHED)
            study.optimize(
                objective,
                n_trials=trials - claimed,
                timeout=left,
                n_jobs=n_jobs,
                catch=(_Surplus, ValueError),
                callbacks=[after],
                gc_after_trial=False,
            )
            idle_rounds = idle_rounds + 1 if _count(study, FINISHED) == finished_before else 0
    except KeyboardInterrupt:
        _abandon_own_trials(study, tracker, f"{host}:{pid}")
        tracker.close_run(result.parent_run_id, "KILLED")
        raise
    result.ran_here = _count(study, FINISHED) - before
    result.finished = _count(study, FINISHED)
    result.failed = _count(study, ("FAIL",))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    defaults = [t for t in complete if t.user_attrs.get("experiment_defaults")]
    result.default_value = float(defaults[0].value) if defaults else None
    if complete:
        best, why = _select(study)
        if why:
            result.notes.append(why)
        result.best_value, result.best_params, result.best_trial = float(best.value), dict(best.params), best.number
        tracker.log_to(
            result.parent_run_id,
            metrics={f"best_{metric}": result.best_value, "trials_finished": result.finished},
            tags={"best_trial": str(best.number)},
        )
        model = _refit_best(config, family, endpoint, sd, dict(best.params), make)
        result.model_uri = tracker.log_model_to(result.parent_run_id, model)
        study.set_user_attr("best_model_uri", result.model_uri)
        if register:
            result.registered = tracker.register(result.model_uri, register)
    if nested_cv:
        inner = max(trials // 2, 5)
        result.nested = _nested(config, family, sd, space, fixed, nested_cv, inner, metric, horizon, span)
        folds = result.nested[["harrell_c", "uno_c"]].astype(float)
        nested_metrics = {f"nested_{m}_mean": float(np.nanmean(folds[m].to_numpy())) for m in folds}
        nested_metrics.update({f"nested_{m}_sd": float(np.nanstd(folds[m].to_numpy(), ddof=1)) for m in folds})
        tracker.log_to(result.parent_run_id, metrics=nested_metrics)
        tracker.log_text_to(result.parent_run_id, result.nested.to_csv(index=False), "nested_cv.csv")
    tracker.log_text_to(result.parent_run_id, yaml.safe_dump(_shareable_config(config), sort_keys=False), "config.yaml")
    done = result.finished >= trials
    tracker.close_run(result.parent_run_id, "FINISHED" if done else "KILLED")
    if not done:
        result.notes.append(f"the study holds {result.finished} of {trials} trials (timeout); run again to go on")
    return result


def _parent_run(study: Any, tracker: Any, name: str, tags: Mapping[str, str]) -> str:
    """The study's one MLflow parent run: reopened when it exists, else created and recorded.

    Two workers starting together may both create one; both record theirs, wait, read back the
    winner, and the loser ends its own run as KILLED (tagged ``superseded``).
    """
    known = study.user_attrs.get("mlflow_parent_run_id")
    if known:
        try:
            return str(tracker.open_run(name, tags, run_id=known))
        except Exception:  # the tracking store was wiped or changed: start a new parent
            pass
    mine = tracker.open_run(name, tags)
    study.set_user_attr("mlflow_parent_run_id", mine)
    time.sleep(1.0)
    winner = study.user_attrs.get("mlflow_parent_run_id")
    if winner != mine:
        tracker.log_to(mine, tags={"superseded": str(winner)})
        tracker.close_run(mine, "KILLED")
        return str(tracker.open_run(name, tags, run_id=winner))
    return str(mine)


def _refit_best(
    config: ExperimentConfig, family: str, endpoint: str, sd: Any, params: dict[str, Any], make: Any
) -> Any:
    """The best parameters refitted on every patient, as a RiskModel."""

    from riskmodel.errors import RiskModelWarning
    from riskmodel.scoring import RiskModel

    horizons = [h for h in config.horizons if h <= sd.y["time"].max()] or [float(sd.y["time"].max())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        fitted = make(params).fit(sd.X, sd.y)
    return RiskModel.from_training(
        endpoint=endpoint,
        family=family,
        experiment=config.name,
        landmark_months=config.landmark_months,
        horizons=horizons,
        features=fitted.named_steps["features"],
        estimator=fitted.named_steps["model"],
        X=sd.X,
        risk_cutoffs=config.risk_group_cutoffs,
    )


# --------------------------------------------------------------------------- nested validation
class TunedSurvival(SurvivalEstimator):
    """An estimator whose ``fit`` tunes ``family`` by an in-memory Optuna study, then refits the best.

    Inside a pipeline it lets cross-validation or the bootstrap validate the tuning itself.
    """

    def __init__(
        self,
        family: str = "cox",
        space: Mapping[str, ParamSpace] | None = None,
        fixed: Mapping[str, Any] | None = None,
        n_trials: int = 10,
        n_splits: int = 3,
        metric: str = "uno_c",
        horizon: float = 12.0,
        random_state: int = 0,
        n_repeats: int = 2,
        span: float = math.inf,
    ) -> None:
        self.family = family
        self.space = space
        self.fixed = fixed
        self.n_trials = n_trials
        self.n_splits = n_splits
        self.metric = metric
        self.horizon = horizon
        self.random_state = random_state
        self.n_repeats = n_repeats
        self.span = span

    def fit(self, X: Any, y: Any) -> TunedSurvival:
        """Tune on (X, y) with inner cross-validation, then fit the best parameters on all of it."""
        from riskmodel.training import build_estimator

        optuna = _optuna()
        self._fit_target(y)
        space = dict(self.space or DEFAULT_SPACES[self.family])
        fixed = dict(self.fixed or {})
        Xa = np.asarray(X, dtype=float)
        splits = _splits(y, self.n_splits, self.n_repeats, self.random_state)

        def make(params: dict[str, Any]) -> Any:
            return build_estimator(self.family, {**fixed, **params}, self.random_state)

        study = optuna.create_study(
            direction=_direction(self.metric), sampler=optuna.samplers.TPESampler(seed=self.random_state)
        )
        if fixed:
            study.enqueue_trial({k: fixed[k] for k in space if k in fixed}, user_attrs={"experiment_defaults": True})
        study.optimize(
            lambda t: _run_folds(t, make, Xa, y, splits, self.metric, self.horizon, self.span, space)[0],
            n_trials=self.n_trials,
            catch=(ValueError,),
        )
        chosen, self.selection_note_ = _select(study)
        self.best_params_ = dict(chosen.params)
        self.best_estimator_ = make(self.best_params_).fit(Xa, y)
        self.n_features_in_ = Xa.shape[1]
        return self

    def predict_risk(self, X: Any) -> np.ndarray:
        """The tuned model's risk score."""
        return np.asarray(self.best_estimator_.predict_risk(np.asarray(X, dtype=float)), dtype=float)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        return np.asarray(self.best_estimator_._survival_matrix(np.asarray(X, dtype=float), times))


def _nested(
    config: ExperimentConfig,
    family: str,
    sd: Any,
    space: Mapping[str, ParamSpace],
    fixed: Mapping[str, Any],
    outer: int,
    inner_trials: int,
    metric: str,
    horizon: float,
    span: float,
) -> pd.DataFrame:
    """Outer stratified K-fold around the whole tuning: one row of held-out metrics per outer fold."""
    from riskmodel.evaluate import cross_validate
    from riskmodel.training import _pipeline

    tuned = TunedSurvival(
        family, space, fixed, inner_trials, config.tune.n_splits, metric, horizon, config.seed, span=span
    )
    horizons = [h for h in config.horizons if h <= sd.y["time"].max()]
    cv = cross_validate(_pipeline(config, tuned), sd.X, sd.y, horizons, n_splits=outer, n_repeats=1, seed=config.seed)
    return cv.folds
