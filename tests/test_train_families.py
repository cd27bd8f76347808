"""``train`` develops its models on worker processes (riskmodel.workflow.families): every number,
table and figure must be the one the serial run gives, warnings must still reach the user, an error
must keep its type, and a large cohort or a cluster keeps the serial path."""

from __future__ import annotations

import hashlib
import importlib
import json
import sqlite3
import zipfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.core.workers import WarmWorkers
from riskmodel.errors import RiskModelWarning, UserInputError
from riskmodel.workflow import train
from riskmodel.workflow.families import Developments, Unit, family_jobs
from riskmodel.workflow.plan import scheme_for
from riskmodel.workflow.prepare import load_cohort, prepare_endpoints, sample_size
from riskmodel.workflow.record import RunContext
from tests.conftest import REPO

train_module = importlib.import_module("riskmodel.workflow.train")  # the module, not its function


def small_config() -> ExperimentConfig:
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump()
    raw["evaluation"] = {"n_splits": 3, "n_repeats": 1, "bootstrap": 4}
    raw["models"]["rsf"]["n_estimators"] = 10  # a small forest: its model folder is compared all the same
    raw["models"]["gbm"]["n_estimators"] = 10
    return ExperimentConfig.model_validate(raw, strict=False)


def record_context(config: ExperimentConfig) -> RunContext:
    return RunContext.create(config, load_cohort(config, None))


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
        # the logged model (MLflow 3 keeps it apart from the run's artifacts): every file of riskmodel's
        # folder and MLflow's environment files; MLmodel is left out (it names the run, the model ID and the time)
        for (location,) in con.execute("select artifact_location from logged_models where source_run_id = ?", (run,)):
            folder = Path(location.removeprefix("file://"))
            files.update(
                {
                    f"logged model/{f.relative_to(folder)}": model_file_digest(f)
                    for f in sorted(folder.rglob("*"))
                    if f.is_file() and f.name != "MLmodel"
                }
            )
        out[name] = {"metrics": metrics, "params": params, "tags": tags, "files": files}
    return out


def model_file_digest(path: Path) -> str:
    """A model file's SHA-256; of a skops zip, its arrays' (sorted: skops names each array after the
    object's id() and stamps the time, so no two saves of one forest are the same bytes), and of the
    manifest, with the skops files' checksums left out for the same reason."""
    if path.suffix == ".skops":
        with zipfile.ZipFile(path) as z:
            arrays = sorted(hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist() if i.filename != "schema.json")
        return hashlib.sha256(" ".join(arrays).encode()).hexdigest()
    if path.name == "manifest.json":
        manifest = json.loads(path.read_text())
        manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.endswith(".skops")}
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_models_developed_on_workers_give_every_number_table_and_figure_of_the_serial_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_config()
    runs = {}
    pools: list[Any] = []  # the pool each train's Developments was given
    given = Developments.__init__

    def spy(self: Developments, *args: Any, **kwargs: Any) -> None:
        given(self, *args, **kwargs)
        pools.append(self._warm)

    monkeypatch.setattr(Developments, "__init__", spy)
    # serially; on two workers started by the train; on two started before it (riskmodel train's
    # WarmWorkers, importing while the train loads)
    for mode, jobs in (("serial", 1), ("workers", 2), ("warm", 2)):
        monkeypatch.setattr(train_module, "family_jobs", lambda prepared, n, jobs=jobs: jobs)
        warm = WarmWorkers(2, "riskmodel.workflow.families") if mode == "warm" else None
        uri = f"sqlite:///{tmp_path}/{mode}/mlflow.db"
        result = train(config, models=["cox", "rsf"], tracking_uri=uri, workers=warm)
        assert len(result.runs) == 4  # LC: competing (cause-specific) Cox and forests; OS: survival ones
        runs[mode] = stored(tmp_path / mode / "mlflow.db")
        if warm is not None:
            assert pools[-1] is not None, "the warm workers developed the models"
            assert warm.pool is None
    serial = runs["serial"]
    assert set(serial) == {"train-default", "lc-cox", "os-cox", "lc-rsf", "os-rsf"}
    for parallel in (runs["workers"], runs["warm"]):
        assert set(parallel) == set(serial)
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
    # the figures, the report and the model folder are made on the worker: all of them were compared
    assert {"plots/cox_hazard_ratios.png", "plots/calibration_6.png"} <= set(serial["os-cox"]["files"])
    assert {"logged model/artifacts/riskmodel/model.json", "logged model/requirements.txt"} <= set(
        serial["os-rsf"]["files"]
    )
    assert any(f.startswith("logged model/artifacts/riskmodel/cause_2/") for f in serial["lc-rsf"]["files"])


def test_a_warning_raised_on_a_worker_reaches_the_user_and_a_model_comes_back_in_order() -> None:
    config = small_config()
    cohort = load_cohort(config, None)
    prepared = prepare_endpoints(config, cohort)
    sizes = {ep: sample_size(config, p) for ep, p in prepared.items()}
    unit = Unit("os", "cox", {"penalty": 0.1}, scheme_for(config, "os", "cox", 10))
    developments = Developments(record_context(config), prepared, sizes, [unit, unit], n_jobs=2)
    developments._pool = object()  # as if submitted: the worker's answers are set below
    for answer in ("first", "second"):
        future: Future[Any] = Future()
        caught = [(f"{answer} model: a warning", RiskModelWarning, "develop.py", 1, None)]
        future.set_result((answer, f"{answer} record", caught))
        developments._futures.append(future)
    ticks: list[int] = []
    with pytest.warns(RiskModelWarning, match="second model: a warning"):
        assert developments.get(1, lambda: ticks.append(1)) == ("second", "second record")
    assert len(ticks) == unit.scheme.fits  # every fit of the model counted once it arrives


def test_an_error_on_a_worker_is_raised_here_with_its_own_type() -> None:
    config = small_config()
    prepared = prepare_endpoints(config, load_cohort(config, None))
    sizes = {ep: sample_size(config, p) for ep, p in prepared.items()}
    bad = Unit("os", "cox", {"penalty": -1.0}, scheme_for(config, "os", "cox", 10))  # a negative penalty
    ctx = record_context(config)
    with Developments(ctx, prepared, sizes, [bad], n_jobs=2) as developments, pytest.raises(UserInputError):
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
