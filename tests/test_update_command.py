"""``riskmodel update``: a miscalibrated model updated on a new setting's patients.

The section-4 check: a Cox model whose baseline hazard was doubled, updated by ``baseline`` on
5,000 new patients, has O/E within 1 ± 0.05 on an independent 20,000-patient sample (O/E by hand:
lifelines' Kaplan-Meier risk over the mean predicted risk), and ``riskmodel evaluate`` on another
independent sample puts 1 inside the updated model's O/E interval (and outside the parent's).
``refit`` equals training from scratch; the lineage is in the model file and the MLflow run; bad
input is one line with exit code 2.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.models.recalibrated import Recalibrated
from riskmodel.scoring import RiskModel
from riskmodel.tracking import Tracker, load_model
from riskmodel.workflow.update import update_model
from tests.study_models import study_model

runner = CliRunner()
HORIZONS = (12.0, 24.0)


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _oe_by_hand(model: RiskModel, frame: pd.DataFrame, h: float) -> float:
    """Kaplan-Meier risk (lifelines) over the mean predicted risk, patients from the 3-month landmark."""
    kept = frame[frame["os_months"] > 3]
    km = KaplanMeierFitter().fit(kept["os_months"] - 3, kept["os_event"].astype(bool))
    s = model.estimator.predict_survival(model.features.transform(kept), [h]).to_numpy()[:, 0]
    return float((1 - km.predict(h)) / np.mean(1 - s))


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A Cox OS model of 2,000 patients with its baseline hazard doubled, logged as a development
    run; 5,000 new patients to update it on."""
    root = tmp_path_factory.mktemp("update")
    sd = survival_data(generate(2000, 41), "os", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    estimator = CoxPH(penalty=0.0).fit(features.transform(sd.X), sd.y)
    estimator.baseline_cumhaz_ = 2.0 * estimator.baseline_cumhaz_  # deliberately miscalibrated
    model = RiskModel.from_training(
        endpoint="os",
        family="cox",
        experiment="t",
        landmark_months=3,
        horizons=list(HORIZONS),
        features=features,
        estimator=estimator,
        X=sd.X,
    )
    store = f"sqlite:///{root / 'mlflow.db'}"
    tracker = Tracker("development", store)
    with tracker.parent("development", {}) as run_id, tempfile.TemporaryDirectory() as tmp:
        uri = tracker.log_model(model, model.save(Path(tmp) / "riskmodel"))
    data = root / "hospital_b.csv"
    generate(5000, 42).to_csv(data, index=False)
    return {"root": root, "store": store, "model": model, "uri": uri, "run_id": run_id, "data": data}


@pytest.fixture(scope="module")
def updated(setting) -> tuple[int, str, Path]:  # type: ignore[no-untyped-def]
    out = Path(setting["root"]) / "out"
    code, text = cli(
        "update",
        "--model",
        str(setting["uri"]),
        "--data",
        str(setting["data"]),
        "--method",
        "baseline",
        "--out",
        str(out),
        "--n-boot",
        "10",
        "--register",
        "os-cox-hospital-b",
        "--tracking-uri",
        str(setting["store"]),
    )
    return code, text, out


@pytest.mark.slow
def test_baseline_update_restores_oe_on_an_independent_sample(setting, updated) -> None:  # type: ignore[no-untyped-def]
    """Section 4: O/E of the parent is off; after the update, within 1 ± 0.05 on 20,000 new patients."""
    code, text, out = updated
    assert code == 0, text
    independent = generate(20000, 43)
    parent: RiskModel = setting["model"]
    new = RiskModel.load(out / "model")
    assert isinstance(new.estimator, Recalibrated)
    for h in HORIZONS:
        assert _oe_by_hand(parent, independent, h) < 0.95  # the doubled hazard over-predicts risk
        assert abs(_oe_by_hand(new, independent, h) - 1.0) < 0.05, h
    # the bootstrap's optimism-corrected O/E on the update data says the same
    table = pd.read_csv(out / "update_performance.csv").set_index("key")
    for h in HORIZONS:
        assert abs(table.loc[f"oe_{h:g}", "updated_corrected"] - 1.0) < 0.05
        assert table.loc[f"oe_{h:g}", "parent_high"] < 0.95
        assert int(table.loc[f"oe_{h:g}", "resamples"]) == 10


@pytest.mark.slow
def test_evaluate_puts_one_inside_the_updated_models_oe_interval(setting, updated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What will be checked: riskmodel evaluate on an independent sample of 1,000; 1 within the
    updated model's 95% interval of O/E at both horizons, outside the parent's at 12 months.

    The interval holds the validation sample's noise, not the update's own error: here O/E is
    1.00-1.03 on 40,000 independent patients after updates on five different 5,000-patient
    samples (the Cox model does not fit the generator exactly), so a validation sample of tens of
    thousands would see that 2% and exclude 1; 1,000 patients give an interval of about ± 0.04."""
    code, text, out = updated
    assert code == 0, text
    data = tmp_path / "independent.csv"
    generate(1000, 44).to_csv(data, index=False)
    intervals = {}
    for name, model in (("parent", str(setting["uri"])), ("updated", str(out / "model"))):
        code, text = cli(
            "evaluate",
            "--model",
            model,
            "--data",
            str(data),
            "--out",
            str(tmp_path / name),
            "--n-boot",
            "30",
            "--tracking-uri",
            str(setting["store"]),
        )
        assert code == 0, text
        measures = json.loads((tmp_path / name / "metrics.json").read_text())["models"][0]["measures"]
        intervals[name] = {h: (measures[f"oe_{h:g}"]["low"], measures[f"oe_{h:g}"]["high"]) for h in HORIZONS}
    for h in HORIZONS:
        low, high = intervals["updated"][h]
        assert low <= 1.0 <= high, (h, low, high)
    assert intervals["parent"][12.0][1] < 1.0


@pytest.mark.slow
def test_lineage_is_in_the_model_file_and_the_mlflow_run(setting, updated) -> None:  # type: ignore[no-untyped-def]
    code, text, out = updated
    assert code == 0, text
    meta = json.loads((out / "model" / "model.json").read_text())
    lineage = meta["lineage"]
    assert lineage["parent_model"] == setting["uri"]
    assert lineage["parent_run_id"] == setting["run_id"]
    assert lineage["method"] == "baseline"
    assert lineage["slope"] == 1.0
    assert len(lineage["data_digest"]) == 16
    assert lineage["n_patients"] > 4900
    summary = json.loads((out / "update.json").read_text())
    assert summary["lineage"] == lineage

    import mlflow

    mlflow.set_tracking_uri(str(setting["store"]))
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("update")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    tags = run.data.tags
    assert tags["riskmodel.command"] == "update"
    assert tags["riskmodel.method"] == "baseline"
    assert tags["riskmodel.parent_run_id"] == setting["run_id"]
    assert tags["riskmodel.parent_model_uri"] == setting["uri"]
    assert tags["riskmodel.data_digest"] == lineage["data_digest"]
    assert setting["run_id"] in tags["mlflow.note.content"]
    assert run.data.metrics["parent_oe_12"] < 0.95
    # the new model version: logged with the run, registered, the same predictions as the folder
    assert f"new model models:/os-cox-hospital-b/1; run {run.info.run_id}" in text
    patients = generate(10, 45)
    logged = load_model("models:/os-cox-hospital-b/1", tracking_uri=str(setting["store"]))
    assert logged.lineage == lineage
    pd.testing.assert_frame_equal(
        logged.predict_frame(patients), RiskModel.load(out / "model").predict_frame(patients), check_exact=True
    )


@pytest.mark.parametrize("kind", ["cox", "rsf"])
def test_refit_equals_training_from_scratch(setting, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    """Same features and settings (the forest's seed too) fitted on the update data: identical predictions."""
    frame = generate(400, 46)
    parent: RiskModel = setting["model"]
    if kind == "rsf":
        forest = SurvivalForest(n_estimators=5, random_state=7)
        parent, _ = study_model(frame, "os", forest, family="rsf", horizons=HORIZONS, feature_columns=["response_3mo"])
    parent.save(tmp_path / "parent")
    new_data = generate(500, 47)
    new_data.to_csv(tmp_path / "new.csv", index=False)
    result = update_model(
        str(tmp_path / "parent"), tmp_path / "new.csv", method="refit", out=tmp_path / "out", n_boot=2, track=False
    )
    fresh_estimator = CoxPH(penalty=0.0) if kind == "cox" else SurvivalForest(n_estimators=5, random_state=7)
    new_sd = survival_data(new_data, "os", landmark_months=3, feature_columns=["response_3mo"])
    scratch = Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", fresh_estimator)])
    scratch.fit(new_sd.X, new_sd.y)
    refit = RiskModel.load(tmp_path / "out" / "model")
    patients = generate(50, 48)
    Z = scratch.named_steps["features"].transform(patients)
    expected = scratch.named_steps["model"].predict_survival(Z, list(HORIZONS)).to_numpy()
    got = refit.estimator.predict_survival(refit.features.transform(patients), list(HORIZONS)).to_numpy()
    assert np.max(np.abs(got - expected)) < 1e-12
    assert result.model.lineage is not None
    assert result.model.lineage["method"] == "refit"


def _without_outcomes(path: Path) -> None:
    generate(300, 49).drop(columns=["os_months", "os_event"]).to_csv(path, index=False)


BAD = {
    "unknown method": (["--method", "intercept"], "--method: 'intercept' is not one of baseline, slope, refit"),
    "model not found": (["--model", "/no/such/model"], "/no/such/model: no such model"),
    "run not found": (["--model", "runs:/0123456789abcdef0123456789abcdef/model"], "0123456789abcdef"),
    "data without outcomes": (["--data", "NOOUTCOMES"], "cannot update the OS model: column os_months"),
    "horizon beyond follow-up": (["--horizons", "40"], "beyond the validation follow-up"),
    "negative resamples": (["--n-boot", "-1"], "--n-boot must be ≥ 0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(setting, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    change, expected = BAD[case]
    small = tmp_path / "small.csv"
    generate(300, 50).to_csv(small, index=False)
    _without_outcomes(tmp_path / "no_outcomes.csv")
    options = {
        "--model": str(setting["uri"]),
        "--data": str(small),
        "--method": "baseline",
        "--out": str(tmp_path / "out"),
        "--n-boot": "2",
        "--tracking-uri": str(setting["store"]),
    }
    for key, value in zip(change[::2], change[1::2], strict=True):
        options[key] = str(tmp_path / "no_outcomes.csv") if value == "NOOUTCOMES" else value
    args = [item for pair in options.items() for item in pair]
    code, text = cli("update", *args)
    assert code == 2, text
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == (2 if case == "data without outcomes" else 1), text  # one line per problem
    assert expected in lines[0], text
    if case == "data without outcomes":
        assert "column os_event: required column is missing" in lines[1]


def test_a_forest_is_recalibrated_through_its_cloglog_survival_at_its_largest_horizon(tmp_path: Path) -> None:
    """A forest's risk is not a log hazard: r = log(−log S(24)), and γ = 1 keeps its S(24) where
    the new baseline's S0(24) is e^−1: S_new(24) = exp(−H0_new(24) · (−log S(24))) to 1e-9
    (module docstring of riskmodel.models.recalibrated)."""
    forest = SurvivalForest(n_estimators=5, random_state=3)
    parent, _ = study_model(
        generate(400, 61), "os", forest, family="rsf", horizons=HORIZONS, feature_columns=["response_3mo"]
    )
    parent.save(tmp_path / "parent")
    generate(600, 62).to_csv(tmp_path / "new.csv", index=False)
    result = update_model(
        str(tmp_path / "parent"), tmp_path / "new.csv", method="baseline", out=tmp_path / "out", n_boot=3, track=False
    )
    estimator = result.model.estimator
    assert isinstance(estimator, Recalibrated)
    assert estimator.reference_horizon_ == 24.0
    patients = generate(30, 63)
    Z = parent.features.transform(patients)
    s_parent = np.clip(forest.predict_survival(Z, [24.0]).to_numpy()[:, 0], 1e-12, 1 - 1e-12)  # as documented
    s_new = estimator.predict_survival(Z, [24.0]).to_numpy()[:, 0]
    h0 = float(estimator.baseline_cumhaz_[np.searchsorted(estimator.event_times_, 24.0, side="right") - 1])
    assert np.max(np.abs(s_new - np.exp(-h0 * (-np.log(s_parent))))) < 1e-9
    assert int(pd.read_csv(tmp_path / "out" / "update_performance.csv")["resamples"].min()) == 3
