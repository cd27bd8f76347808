"""The evaluation plan of ``riskmodel train``: the rule (events → scheme), explicit settings winning,
no optimism bootstrap for tree ensembles, the held-out split, and the plan and progress printed to a
redirected stderr."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import StratifiedShuffleSplit
from sksurv.metrics import concordance_index_censored

from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.models import CoxPH
from riskmodel.stats import survival_array
from riskmodel.validation.crossval import holdout_validate
from riskmodel.workflow import train
from riskmodel.workflow.plan import ProgressLines, fit_seconds, scheme_for
from riskmodel.workflow.prepare import override
from tests.conftest import REPO


def config(**evaluation: Any) -> ExperimentConfig:
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump(exclude={"evaluation"})
    raw["evaluation"] = evaluation
    return ExperimentConfig.model_validate(raw, strict=False)


@pytest.mark.parametrize(
    ("events", "splits", "repeats", "cox_bootstrap"),
    [(13, 3, 10, 200), (99, 3, 10, 200), (100, 5, 2, 100), (999, 5, 2, 100), (1000, 5, 1, 0), (9999, 5, 1, 0)],
)
def test_the_rule_sizes_cv_and_the_cox_bootstrap_to_the_events(
    events: int, splits: int, repeats: int, cox_bootstrap: int
) -> None:
    cox = scheme_for(config(), "os", "cox", events)
    assert (cox.n_splits, cox.n_repeats, cox.bootstrap) == (splits, repeats, cox_bootstrap)
    assert cox.fits == splits * repeats + cox_bootstrap + 1
    if not cox_bootstrap:
        assert "negligible" in cox.describe_bootstrap()


def test_ten_thousand_events_get_one_held_out_fifth() -> None:
    s = scheme_for(config(), "os", "cox", 10_000)
    assert (s.n_splits, s.holdout, s.bootstrap, s.fits) == (0, 0.2, 0, 2)
    assert s.describe_cv() == "one held-out split (80/20, stratified)"


@pytest.mark.parametrize("family", ["rsf", "gbm"])
@pytest.mark.parametrize("events", [13, 500])
def test_tree_ensembles_get_no_optimism_bootstrap_and_say_why(family: str, events: int) -> None:
    s = scheme_for(config(), "lc", family, events)
    assert s.bootstrap == 0
    assert "under-corrects" in s.describe_bootstrap()
    assert s.estimators()["estimator.honest"] == "cross-validated (_mean)"
    assert scheme_for(config(), "lc", "cox", events).bootstrap > 0  # the regression model keeps it


def test_the_default_experiment_leaves_the_scheme_to_the_plan_through_override() -> None:
    loaded = load_experiment(REPO / "experiments" / "default.yaml")
    assert loaded.evaluation.model_fields_set == {"plan"}
    assert override(loaded, data=None, endpoints=["os"], models=["cox"]).evaluation.model_fields_set == {"plan"}


def test_explicit_evaluation_settings_win_over_the_plan() -> None:
    s = scheme_for(config(n_splits=4, bootstrap=7), "os", "rsf", 50_000)
    assert (s.n_splits, s.n_repeats, s.bootstrap) == (4, 1, 7)  # K-fold instead of the held-out split
    assert scheme_for(config(n_repeats=3), "os", "cox", 5000).n_repeats == 3
    assert scheme_for(config(bootstrap=0), "os", "cox", 13).bootstrap == 0
    held = scheme_for(config(holdout=0.3), "os", "cox", 13)
    assert (held.n_splits, held.holdout) == (0, 0.3)
    fixed = scheme_for(config(plan="fixed"), "os", "gbm", 50_000)
    assert (fixed.n_splits, fixed.n_repeats, fixed.bootstrap) == (3, 10, 200)  # the config's values as written


def test_the_held_out_c_is_harrells_c_of_a_fit_on_the_other_patients() -> None:
    """Reference: scikit-survival's Harrell C of an independent refit on the same stratified split."""
    rng = np.random.default_rng(3)
    n = 400
    X = rng.normal(size=(n, 3))
    time = rng.exponential(np.exp(-X @ np.array([0.8, -0.5, 0.0])) * 10)
    censor = rng.exponential(15, n)
    y = survival_array(time <= censor, np.minimum(time, censor))
    import pandas as pd
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    pipe = Pipeline([("features", FunctionTransformer()), ("model", CoxPH(penalty=0.0))])
    cv = holdout_validate(pipe, frame, y, [5.0], test_fraction=0.25, seed=11)
    assert cv.n_splits == 1
    assert len(cv.folds) == 1
    train_rows, test_rows = next(
        StratifiedShuffleSplit(1, test_size=0.25, random_state=11).split(X, y["event"].astype(int))
    )
    assert len(test_rows) == 100
    risk = CoxPH(penalty=0.0).fit(X[train_rows], y[train_rows]).predict_risk(X[test_rows])
    reference = concordance_index_censored(y["event"][test_rows], y["time"][test_rows], risk)[0]
    assert abs(cv.folds["harrell_c"].iloc[0] - reference) < 1e-12


def test_progress_lines_at_each_tenth_with_an_eta() -> None:
    out = io.StringIO()
    lines = ProgressLines(out, every_seconds=3600, every_fraction=0.1)
    for done in range(1, 101):
        lines(done, 100, "OS cox")
    text = out.getvalue().splitlines()
    assert len(text) == 10  # 10 %, 20 %, ... 100 %: not one line a fit
    assert text[-1].startswith("train: 100/100 fits (100%), OS cox, elapsed ")
    assert text[-1].endswith("ETA 0:00:00")


def test_no_eta_from_the_first_fits_alone() -> None:
    """Before: the first of 586 fits, 10 s after the start (worker processes starting), printed an
    ETA of 1:40:28 for a train that took 35 s."""
    out = io.StringIO()
    lines = ProgressLines(out, every_seconds=0.0, every_fraction=0.1)
    lines(1, 586, "LC cox")
    lines(30, 586, "LC cox")
    first, later = out.getvalue().splitlines()
    assert first.endswith("ETA ?")
    assert "ETA ?" not in later


def test_a_quiet_step_after_a_fit_gets_a_still_working_line_naming_it() -> None:
    out = io.StringIO()
    lines = ProgressLines(out, every_seconds=3600, every_fraction=0.25, heartbeat_seconds=3600)
    lines(1, 4, "LC rsf")  # the first fit: printed
    lines(1, 4, "LC rsf: recording the run")  # a stage, not a fit: within every_seconds, not printed
    lines.heartbeat()  # a minute has not passed: nothing
    assert out.getvalue().count("\n") == 1
    lines.heartbeat_seconds = 0.0
    lines.heartbeat()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("train: 1/4 fits (25%), LC rsf: recording the run, elapsed ")
    assert last.endswith(", still working")


def test_the_heartbeat_thread_speaks_between_fits_and_stops_with_the_block() -> None:
    out = io.StringIO()
    with ProgressLines(out, every_seconds=3600, every_fraction=0.5, heartbeat_seconds=0.05) as lines:
        lines(2, 4, "OS rsf")
        deadline = time.monotonic() + 30
        while "still working" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "train: 2/4 fits (50%), OS rsf, elapsed " in out.getvalue()
    assert "still working" in out.getvalue()
    assert not any(t.name == "riskmodel-progress" for t in threading.enumerate())
    before = out.getvalue()
    time.sleep(0.2)
    assert out.getvalue() == before  # stopped: no line after the block


@pytest.mark.slow
def test_a_tree_trained_by_the_plan_has_no_bootstrap_metrics_and_its_run_says_why(tmp_path: Path) -> None:
    import mlflow

    raw = config().model_dump(exclude={"evaluation"})
    raw["evaluation"] = {"n_splits": 3, "n_repeats": 1}
    raw["models"] = {"cox": None, "rsf": {"n_estimators": 10, "min_samples_leaf": 3}, "gbm": None}
    raw["endpoints"] = ["os"]
    result = train(ExperimentConfig.model_validate(raw, strict=False), tracking_uri=f"sqlite:///{tmp_path}/m.db")
    (run,) = result.runs
    assert not any(k.endswith("_corrected") for k in run.metrics)
    assert run.metrics["harrell_c_folds"] == 3
    assert any("OS rsf: no bootstrap: a tree ensemble" in n for n in result.notes)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/m.db")
    tags = mlflow.get_run(run.run_id).data.tags
    assert "under-corrects" in tags["riskmodel.estimator.bootstrap"]
    assert tags["riskmodel.estimator.mean_sd_folds"] == "3-fold cross-validation once"
    params = mlflow.get_run(result.parent_run_id).data.params
    assert params["plan.os.rsf"].startswith("3-fold cross-validation once; no bootstrap")


@pytest.mark.slow
def test_train_with_output_redirected_prints_the_plan_and_progress_to_stderr(tmp_path: Path) -> None:
    experiment = tmp_path / "quick.yaml"
    experiment.write_text(
        "name: quick\nendpoints: [os]\nfeatures: {set: study}\nlandmark_months: 3\n"
        "models:\n  cox: {penalty: 0.1}\n  rsf: null\n  gbm: null\n"
        "evaluation: {n_splits: 3, n_repeats: 2, bootstrap: 0}\n"
        "horizons: [6, 12]\nseed: 1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RISKMODEL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "riskmodel", "train", str(experiment), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert err[0] == "evaluation plan (auto): 1 endpoint(s) × 1 family = 1 models, 7 fits"
    assert err[1].startswith("  OS cox: 25 events; 3-fold cross-validation repeated 2 times; no bootstrap:")
    assert err[2].startswith("  estimated duration of the fits ≈ ")
    progress = [line for line in err if line.startswith("train: ")]
    assert progress
    assert progress[-1].startswith("train: 7/7 fits (100%), OS cox")
    assert "evaluation plan" not in proc.stdout


def test_a_fit_is_timed_by_the_clock_given() -> None:
    # train times its fits by the thread's CPU time while its workers start: the clock must be the one passed
    class Fit:
        def fit(self, X: object, y: object) -> None:
            pass

    ticks = iter([10.0, 13.0, 20.0, 22.5])  # two fits: 3 s, then 2.5 s by this clock
    assert fit_seconds(Fit(), None, None, times=2, clock=lambda: next(ticks)) == 2.5
