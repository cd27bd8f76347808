"""The PHI guard and the experiment's own settings (issue 17, part 6): a patient ID equal to the
seed does not refuse a train, and a refusal ends the runs it stopped as KILLED with a note, never
FAILED."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from riskmodel.cohort import bundled_cohort_path, load
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.privacy import PhiGuard, PrivacyError
from riskmodel.workflow import train
from tests.conftest import REPO


def _frame(first_id: str) -> pd.DataFrame:
    frame = pd.read_csv(bundled_cohort_path(), dtype=str, keep_default_na=False)
    frame.loc[0, "patient_id"] = first_id
    return frame


def _cheap_config(**changes: object) -> dict:
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump(mode="json")
    raw["models"] = {name: (cfg if name == "cox" else None) for name, cfg in raw["models"].items()}
    raw["endpoints"] = ["os"]
    raw["evaluation"] = {"n_splits": 2, "n_repeats": 1, "bootstrap": 0}
    raw.update(changes)
    return raw


def test_the_config_s_own_values_are_not_identifiers_but_the_other_ids_still_are(tmp_path: Path) -> None:
    data = tmp_path / "cohort.csv"
    frame = _frame("2013")
    frame.loc[1, "patient_id"] = "P-0042"
    frame.to_csv(data, index=False)
    cohort = load(data)
    guard = PhiGuard.for_cohort(cohort, own={"seed": 2013, "horizons": [6.0, 12.0], "name": "default"})
    guard.check("params", {"seed": 2013, "random_state": "2013", "note": "seed 2013"})
    with pytest.raises(PrivacyError, match="patient identifier"):
        guard.check_text("params", "see P-0042")
    with pytest.raises(PrivacyError, match="patient identifier"):  # without the config, 2013 is an ID
        PhiGuard.for_cohort(cohort).check_text("params", "seed 2013")


@pytest.mark.slow
def test_a_patient_id_equal_to_the_seed_does_not_refuse_a_train(tmp_path: Path) -> None:
    import mlflow

    config = ExperimentConfig.model_validate(_cheap_config(seed=2013), strict=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = train(config, data=_frame("2013"), tracking_uri=uri)
    assert len(result.runs) == 1
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_run(result.parent_run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_refusal_ends_the_train_with_exit_2_and_one_line_and_leaves_no_failed_run(tmp_path: Path) -> None:
    import mlflow

    # a patient ID that is also a metric name: the child run's metrics are refused
    data = tmp_path / "cohort.csv"
    _frame("harrell_c_mean").to_csv(data, index=False)
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({**_cheap_config(), "data": {"path": str(data)}}))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {"RISKMODEL_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "riskmodel", "train", str(config), "--tracking-uri", uri],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    # train's evaluation plan and progress lines (informational) aside, the refusal is one line
    plan = ("evaluation plan", "  ", "train: ")
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(plan)]
    assert len(lines) == 1, done.stderr
    assert "refused to write a metric name" in lines[0]
    assert "Traceback" not in done.stderr
    assert "harrell_c_mean" not in done.stderr
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 2  # the parent and the child it stopped in
    assert set(runs["status"]) == {"KILLED"}
    assert runs["tags.riskmodel.refused"].str.contains("refused to write a metric name").all()
