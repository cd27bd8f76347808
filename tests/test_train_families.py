"""``train`` develops its models on worker processes (riskmodel.workflow.families): every number,
table and figure must be the one the serial run gives, warnings must still reach the user, an error
must keep its type, and a large cohort or a cluster keeps the serial path."""

from __future__ import annotations

import hashlib
import importlib
import sqlite3
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.workflow import train
from riskmodel.workflow.families import Developments, Unit, family_jobs
from riskmodel.workflow.plan import scheme_for
from riskmodel.workflow.prepare import load_cohort, prepare_endpoints, sample_size
from tests.conftest import REPO

train_module = importlib.import_module("riskmodel.workflow.train")  # the module, not its function


def small_config() -> ExperimentConfig:
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump()
    raw["evaluation"] = {"n_splits": 3, "n_repeats": 1, "bootstrap": 4}
    return ExperimentConfig.model_validate(raw, strict=False)


def stored(db: Path) -> dict[str, Any]:
    """Each run's metrics, params, riskmodel tags and artifact bytes (by run name), from the store itself."""
    con = sqlite3.connect(db)
    out: dict[str, Any] = {}
    for run, name, uri in con.execute("select run_uuid, name, artifact_uri from runs"):
        metrics = dict(con.execute("select key, value from latest_metrics where run_uuid = ?", (run,)).fetchall())
        params = dict(con.execute("select key, value from params where run_uuid = ?", (run,)).fetchall())
        tags = {
            k: v
            for k, v in con.execute("select key, value from tags where run_uuid = ?", (run,)).fetchall()
            if k.startswith("riskmodel.") and k not in ("riskmodel.pid", "riskmodel.model_uri")
        }
        root = Path(uri.removeprefix("file://"))
        files = {
            str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*"))
            if f.is_file()
        }
        params.pop("plan.estimated_seconds", None)  # a timing, not a result
        files.pop("evaluation_plan.txt", None)  # says the same timing in words
        out[name] = {"metrics": metrics, "params": params, "tags": tags, "files": files}
    return out


@pytest.mark.slow
def test_models_developed_on_workers_give_every_number_table_and_figure_of_the_serial_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_config()
    runs = {}
    for jobs in (1, 2):
        monkeypatch.setattr(train_module, "family_jobs", lambda prepared, n, jobs=jobs: jobs)
        result = train(config, models=["cox"], tracking_uri=f"sqlite:///{tmp_path}/{jobs}/mlflow.db")
        assert len(result.runs) == 2  # LC: a competing (cause-specific) Cox; OS: a survival Cox
        runs[jobs] = stored(tmp_path / str(jobs) / "mlflow.db")
    serial, parallel = runs[1], runs[2]
    assert set(serial) == set(parallel) == {"train-default", "lc-cox", "os-cox"}
    for name, run in serial.items():
        assert parallel[name]["metrics"] == run["metrics"], name  # tolerance 0: the same floats
        assert parallel[name]["params"] == run["params"], name
        assert parallel[name]["tags"] == run["tags"], name
        # every CSV, PNG, text artifact and model report, byte for byte
        assert parallel[name]["files"] == run["files"], name
    metrics = serial["os-cox"]["metrics"]  # CV, bootstrap, in-sample and SHAP: all of them compared
    assert {"harrell_c_mean", "harrell_c_corrected", "calibration_slope_corrected"} <= set(metrics)
    assert any(name.startswith("shap_mean_abs") for name in metrics)
    assert {"model_report.html", "plots/shap_beeswarm.png", "cv_folds.csv"} <= set(serial["lc-cox"]["files"])


def test_a_warning_raised_on_a_worker_reaches_the_user_and_a_model_comes_back_in_order() -> None:
    config = small_config()
    cohort = load_cohort(config, None)
    prepared = prepare_endpoints(config, cohort)
    sizes = {ep: sample_size(config, p) for ep, p in prepared.items()}
    unit = Unit("os", "cox", {"penalty": 0.1}, scheme_for(config, "os", "cox", 10))
    developments = Developments(config, prepared, sizes, [unit, unit], n_jobs=2)
    developments._pool = object()  # as if submitted: the worker's answers are set below
    for answer in ("first", "second"):
        future: Future[Any] = Future()
        future.set_result((answer, [(f"{answer} model: a warning", RiskModelWarning, "develop.py", 1, None)]))
        developments._futures.append(future)
    ticks: list[int] = []
    with pytest.warns(RiskModelWarning, match="second model: a warning"):
        assert developments.get(1, lambda: ticks.append(1)) == "second"
    assert len(ticks) == unit.scheme.fits  # every fit of the model counted once it arrives


def test_an_error_on_a_worker_is_raised_here_with_its_own_type() -> None:
    config = small_config()
    prepared = prepare_endpoints(config, load_cohort(config, None))
    sizes = {ep: sample_size(config, p) for ep, p in prepared.items()}
    bad = Unit("os", "cox", {"penalty": -1.0}, scheme_for(config, "os", "cox", 10))  # a negative penalty
    with Developments(config, prepared, sizes, [bad], n_jobs=2) as developments, pytest.raises(UserInputError):
        developments.get(0, lambda: None)


def test_the_serial_path_stays_for_a_large_cohort_one_model_or_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_config()
    prepared = prepare_endpoints(config, load_cohort(config, None))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert family_jobs(prepared, 6) == 2
    assert family_jobs(prepared, 1) == 1
    monkeypatch.setattr("riskmodel.workflow.families.LARGE_COHORT", 30)  # the bundled cohort counts as large
    monkeypatch.setattr("riskmodel.workflow.footprint.available_memory", lambda: 0)  # two would not fit
    assert family_jobs(prepared, 6) == 1
    monkeypatch.setattr("riskmodel.workflow.families.LARGE_COHORT", 10_000)
    monkeypatch.setattr("riskmodel.workflow.families.current_cluster", lambda: object())
    assert family_jobs(prepared, 6) == 1
