"""End to end: train into a temporary MLflow store, then score through every door."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import bundled_cohort_path
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.errors import UserInputError
from riskmodel.scoring import ModelFileError, RiskModel
from riskmodel.tracking import load_model
from riskmodel.workflow import TrainResult, train
from tests.conftest import REPO


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlruns")


@pytest.fixture(scope="module")
def trained(store: Path) -> TrainResult:
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump()
    # every step of the protocol (cross-validation, the optimism bootstrap, the final fit), each run the
    # fewest times its checks need: 3-fold CV once, 10 resamples (the corrected C stays below the apparent
    # one on every run), a 50-tree forest (no check here counts trees)
    raw["evaluation"] = {"n_splits": 3, "n_repeats": 1, "bootstrap": 10}
    raw["models"]["rsf"]["n_estimators"] = 50
    # this file holds the survival path (S(t), hazard ratios, survival pages) to account; LC with death
    # competing, the default, is trained end to end in test_competing_e2e.py and test_competing_train.py
    raw["competing_risks"] = False
    config = ExperimentConfig.model_validate(raw, strict=False)
    return train(config, tracking_uri=f"sqlite:///{store}/mlflow.db")


@pytest.fixture(scope="module")
def new_patients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New patients, written independently of the training code: plain CSV text."""
    path = tmp_path_factory.mktemp("patients") / "new.csv"
    path.write_text(
        "patient_id,age_years,sex,kps,pathological_grade,t_stage,n_stage,m_stage,recurrence_interval_months,"
        "lesion_volume_cm3,d90_gy,response_3mo\n"
        "N1,61,M,80,low,T2,N1,M0,12.5,18.0,115,PR\n"
        "N2,70,F,70,moderate,T3,N2,M1,4.0,40.0,190,SD\n"
        "N3,55,M,90,high,T1,N0,M0,30.0,9.5,95,CR\n"
    )
    return path


def test_six_child_runs_with_metrics_tags_and_models(trained: TrainResult, store: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    children = runs[runs["tags.mlflow.parentRunId"] == trained.parent_run_id]
    assert len(children) == 6
    assert set(zip(children["tags.riskmodel.endpoint"], children["tags.riskmodel.family"], strict=True)) == {
        (e, f) for e in ("lc", "os") for f in ("cox", "rsf", "gbm")
    }
    for col in ("metrics.harrell_c_mean", "metrics.uno_c_mean", "metrics.ibs_mean", "metrics.ibs_km_mean"):
        assert children[col].notna().all(), col
    # After the 3-month landmark, 7 LC patients are still followed at 6 months and 7 OS patients at
    # 12 (counted from the bundled CSV in test_no_horizon_with_few_patients_followed_shows_a_metric):
    # a horizon metric exists only where at least 10 are followed.
    is_os = children["tags.riskmodel.endpoint"] == "os"
    assert children.loc[is_os, "metrics.td_auc_6_mean"].notna().all()
    assert children.loc[~is_os, "metrics.td_auc_6_mean"].isna().all()
    assert not any(c.startswith(("metrics.td_auc_12", "metrics.td_auc_24")) for c in children.columns)
    for tag in ("git_commit", "riskmodel_version", "data_digest", "n_patients", "n_events"):
        assert children[f"tags.riskmodel.{tag}"].notna().all(), tag
    assert (children["params.feature_names"].str.contains("d90_gy")).all()
    assert all(r.model_uri == f"runs:/{r.run_id}/model" for r in trained.runs)
    assert json.loads(json.dumps(trained.summary()))["runs"][0].keys() == {
        "endpoint",
        "family",
        "run_id",
        "model_uri",
        "metrics",
    }


def test_scores_agree_between_cli_python_and_pyfunc(
    trained: TrainResult, store: Path, new_patients: Path, tmp_path: Path
) -> None:
    import mlflow

    uri = f"sqlite:///{store}/mlflow.db"
    frame = pd.read_csv(new_patients)
    for run in trained.runs:
        model = load_model(run.model_uri, tracking_uri=uri)
        api = model.predict_survival(frame)
        assert ((api.to_numpy() >= 0) & (api.to_numpy() <= 1)).all()
        assert (np.diff(api.to_numpy(), axis=1) <= 1e-12).all()
        mlflow.set_tracking_uri(uri)
        pyfunc = mlflow.pyfunc.load_model(run.model_uri).predict(frame)
        np.testing.assert_array_equal(
            pyfunc[[c for c in pyfunc.columns if c.startswith("S_")]].to_numpy(), api.to_numpy()
        )
        out = tmp_path / f"{run.run_id}.json"
        result = CliRunner().invoke(
            app,
            [
                "score",
                "--model",
                run.model_uri,
                "--patients",
                str(new_patients),
                "--out",
                str(out),
                "--tracking-uri",
                uri,
            ],
        )
        assert result.exit_code == 0, result.output
        cli = json.loads(out.read_text())
        np.testing.assert_array_equal(
            np.array([[r["survival"][f"{h:g}"] for h in model.horizons] for r in cli]), api.to_numpy()
        )
        assert [r["risk_score"] for r in cli] == list(model.predict_risk(frame))


def test_out_of_range_d90_is_flagged_and_far_horizons_refused(
    trained: TrainResult, store: Path, new_patients: Path
) -> None:
    from riskmodel.scoring import read_patients

    model = load_model(trained.runs[-1].model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db")
    records = model.score(read_patients(new_patients))
    assert any("d90_gy 190 is above the middle of the training data" in f for f in records[1]["flags"])
    # OS: 7 patients followed at 12 months and 1 at 24, fewer than 10: those predictions are flagged
    assert [f.split(":")[0] for f in records[0]["flags"]] == ["S(12)", "S(24)"]
    assert "fewer than 10 training patients were followed to 24 months" in records[0]["flags"][1]
    assert model.score(read_patients(new_patients), [6])[0]["flags"] == []
    assert records[0]["risk_group"] in ("low", "intermediate", "high")
    with pytest.raises(UserInputError, match="beyond the training follow-up"):
        model.score(read_patients(new_patients), [model.max_time + 1])
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--model",
            trained.runs[-1].model_uri,
            "--patients",
            str(new_patients),
            "--horizons",
            "240",
            "--tracking-uri",
            f"sqlite:///{store}/mlflow.db",
        ],
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_a_bad_row_does_not_stop_the_others(trained: TrainResult, store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "mixed.csv"
    bad.write_text(
        "patient_id,age_years,sex,kps,pathological_grade,t_stage,n_stage,m_stage,recurrence_interval_months,"
        "lesion_volume_cm3,d90_gy,response_3mo\n"
        "G1,61,M,80,low,T2,N1,M0,12.5,18.0,115,PR\n"
        "B1,61,M,80,low,T2,N1,M0,12.5,18.0,lots,PR\n"
        "G2,55,M,90,high,T1,N0,M0,30.0,9.5,95,CR\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--model",
            trained.runs[0].model_uri,
            "--patients",
            str(bad),
            "--tracking-uri",
            f"sqlite:///{store}/mlflow.db",
        ],
    )
    assert result.exit_code == 1
    assert "2 of 3 patients scored" in result.output
    assert "row 3: not scored: column d90_gy, value 'lots': must be a number" in result.output


def test_no_patient_identifier_reaches_the_tracking_store(trained: TrainResult, store: Path) -> None:
    ids = pd.read_csv(bundled_cohort_path())["patient_id"]
    blobs = [p.read_bytes() for p in store.rglob("*") if p.is_file()]
    assert blobs
    for pid in ids:
        assert not any(pid.encode() in blob for blob in blobs), pid


def test_model_directory_round_trip_and_tamper_checks(
    trained: TrainResult, store: Path, tmp_path: Path, new_patients: Path
) -> None:
    frame = pd.read_csv(new_patients)
    for run in trained.runs:
        model = load_model(run.model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db")
        folder = model.save(tmp_path / run.run_id)
        again = RiskModel.load(folder)
        pd.testing.assert_frame_equal(again.predict_frame(frame), model.predict_frame(frame))
        victim = next(p for p in folder.iterdir() if p.name not in ("manifest.json",))
        victim.write_bytes(victim.read_bytes() + b" ")
        with pytest.raises(ModelFileError, match="does not match its SHA-256"):
            RiskModel.load(folder)
    (folder / "extra.pkl").write_bytes(b"not welcome")
    with pytest.raises(ModelFileError, match="unexpected files"):
        RiskModel.load(folder)
    with pytest.raises(ModelFileError, match="not a riskmodel model directory"):
        RiskModel.load(tmp_path)


def test_skops_types_outside_the_allow_list_are_refused(trained: TrainResult, store: Path, tmp_path: Path) -> None:
    import hashlib

    import skops.io as sio
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    rsf = next(r for r in trained.runs if r.family == "rsf")
    folder = load_model(rsf.model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db").save(tmp_path / "rsf")
    # An attacker who controls the whole folder can fix the manifest; the allow-list still holds
    # for an estimator.skops (the format of forest folders written before forest.npz)
    sio.dump(CoxPHSurvivalAnalysis(), folder / "estimator.skops")
    (folder / "forest.npz").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["forest.npz"]
    manifest["files"]["estimator.skops"] = hashlib.sha256((folder / "estimator.skops").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"outside the allow-list: sksurv\.linear_model"):
        RiskModel.load(folder)


def test_summary_json_and_models_list(trained: TrainResult, store: Path) -> None:
    result = CliRunner().invoke(app, ["models", "list", "--tracking-uri", f"sqlite:///{store}/mlflow.db"])
    assert result.exit_code == 0
    assert all(r.run_id in result.output for r in trained.runs)


@pytest.mark.slow
def test_train_with_no_arguments_in_a_fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`riskmodel train` alone: the default experiment, bundled cohort, ./mlruns/mlflow.db.

    The default experiment as shipped (every family with its default settings, LC with death competing)
    under a smaller automatic plan (3-fold CV once, 5 Cox resamples instead of 3-fold × 10 and 200): what
    is checked here is what the bare command resolves, not the plan's counts (tests/test_plan.py)."""
    from riskmodel.workflow import plan

    monkeypatch.setattr(plan, "RULE", ((math.inf, 3, 1, 5),))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["train", "--summary-json", "summary.json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["runs"]) == 6
    assert "EXPLORATORY" in result.output
    assert summary["parent_run_id"] in result.output


def test_scoring_needs_only_the_columns_the_model_reads(trained: TrainResult, store: Path, tmp_path: Path) -> None:
    minimal = tmp_path / "minimal.csv"
    minimal.write_text(
        "patient_id,t_stage,n_stage,m_stage,recurrence_interval_months,lesion_volume_cm3,d90_gy,response_3mo\n"
        "M1,T2,N1,M0,12.5,18.0,115,PR\n"
    )
    model = load_model(trained.runs[0].model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db")
    assert set(model.input_columns) == {
        "d90_gy",
        "response_3mo",
        "recurrence_interval_months",
        "t_stage",
        "n_stage",
        "m_stage",
        "lesion_volume_cm3",
    }
    from riskmodel.scoring import read_patients

    (record,) = model.score(read_patients(minimal))
    assert "error" not in record
    assert 0 <= record["survival"]["6"] <= 1
    # a column the model reads is still required, and one it does not read is still checked if given
    with pytest.raises(UserInputError, match="column d90_gy: required column is missing"):
        model.score(pd.read_csv(minimal).drop(columns="d90_gy"))
    (bad,) = model.score(pd.read_csv(minimal).assign(kps="high"))
    assert "column kps, value 'high'" in bad["error"]


def test_registered_models_load_by_name_and_version(trained: TrainResult, store: Path, new_patients: Path) -> None:
    import mlflow

    uri = f"sqlite:///{store}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    version = mlflow.register_model(trained.runs[0].model_uri, "riskmodel-test").version
    by_name = load_model(f"models:/riskmodel-test/{version}", tracking_uri=uri)
    by_run = load_model(trained.runs[0].model_uri, tracking_uri=uri)
    frame = pd.read_csv(new_patients)
    pd.testing.assert_frame_equal(by_name.predict_frame(frame), by_run.predict_frame(frame))


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    from riskmodel.tracking import DEFAULT_TRACKING_URI, resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_tracking_uri() == "sqlite:///elsewhere.db"
    assert resolve_tracking_uri("sqlite:///option.db") == "sqlite:///option.db"


def test_unknown_model_uri_is_a_user_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["score", "--model", str(tmp_path / "nope"), "--patients", str(tmp_path)])
    assert result.exit_code == 2
    assert "no such model" in result.output


def test_cox_model_carries_the_unpenalised_table_matching_lifelines(trained: TrainResult, store: Path) -> None:
    from lifelines import CoxPHFitter

    from riskmodel.cohort import load_bundled, survival_data

    for run in (r for r in trained.runs if r.family == "cox"):
        model = load_model(run.model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db")
        assert model.hazard_ratios is not None
        data = survival_data(load_bundled(), run.endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
        design = pd.DataFrame(model.features.transform(data.X), columns=model.features.get_feature_names_out())
        ref = (
            CoxPHFitter()
            .fit(
                design.assign(T=data.y["time"], E=data.y["event"]),
                "T",
                "E",
                fit_options={"precision": 1e-12, "max_steps": 500},
            )
            .summary
        )  # to convergence
        table = model.hazard_ratios
        np.testing.assert_allclose(table["hr"], ref["exp(coef)"], rtol=1e-4)
        np.testing.assert_allclose(table["hr_lower_95"], ref["exp(coef) lower 95%"], rtol=1e-4)
        np.testing.assert_allclose(table["hr_upper_95"], ref["exp(coef) upper 95%"], rtol=1e-4)
        np.testing.assert_allclose(table["p"], ref["p"], rtol=1e-4, atol=1e-6)


def test_a_pickle_payload_listed_in_a_rewritten_manifest_is_never_executed(
    trained: TrainResult, store: Path, tmp_path: Path
) -> None:
    import hashlib
    import pickle

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self) -> tuple:  # type: ignore[type-arg]
            return (Path.write_text, (marker, "executed"))

    folder = load_model(trained.runs[0].model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db").save(tmp_path / "m")
    for name in ("model.pkl", "estimator.skops.pkl"):
        (folder / name).write_bytes(pickle.dumps(Payload()))
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelFileError, match="files riskmodel never writes"):
            RiskModel.load(folder)
    assert not marker.exists()


def test_every_run_carries_optimism_corrected_metrics_and_the_sample_size_verdict(
    trained: TrainResult, store: Path
) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    children = runs[runs["tags.mlflow.parentRunId"] == trained.parent_run_id]
    for col in ("harrell_c_corrected", "harrell_c_corrected_ci_low", "calibration_slope_corrected"):
        assert children[f"metrics.{col}"].notna().all(), col
    is_os = children["tags.riskmodel.endpoint"] == "os"
    assert children.loc[is_os, "metrics.calibration_slope_6_corrected"].notna().all()
    assert children.loc[~is_os, "metrics.calibration_slope_6_corrected"].isna().all()  # 7 LC patients at 6
    assert (children["metrics.validation_resamples"] == 10).all()
    assert (children["metrics.harrell_c_corrected"] <= children["metrics.harrell_c_apparent"]).all()
    # 36 patients with 7 parameters are far below Riley et al.'s minimum: flagged, never silently fine
    assert (children["tags.riskmodel.riley_adequate"] == "false").all()
    assert (children["metrics.riley_expected_shrinkage"] < 0.9).all()
    assert any(n.startswith("WARNING OS: EXPLORATORY ONLY") for n in trained.notes)
    assert "C corrected (≈95% interval)" in trained.table().columns


def test_strict_refuses_a_cohort_below_the_minimum_sample_size(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from riskmodel.cli import app

    result = CliRunner().invoke(
        app, ["train", "--strict", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--models", "cox"]
    )
    assert result.exit_code == 2
    assert "Riley et al.'s minimum sample size" in result.output
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was opened


def test_apparent_calibration_and_decision_curves_are_logged_as_aggregates(trained: TrainResult, store: Path) -> None:
    import mlflow

    from riskmodel.cohort import load_bundled, survival_data
    from riskmodel.validation import smooth_calibration

    uri = f"sqlite:///{store}/mlflow.db"
    client = mlflow.tracking.MlflowClient(uri)
    for run in trained.runs:
        names = {a.path for a in client.list_artifacts(run.run_id)}
        expected = {f"{kind}_{h:g}.csv" for h in run.horizons for kind in ("calibration", "decision_curve")}
        assert {n for n in names if n.startswith(("calibration_", "decision_curve_"))} - {
            f"calibration_smooth_{h:g}.csv" for h in run.horizons
        } == expected  # only at horizons with enough patients followed (none for LC)
        if run.endpoint == "lc":
            assert not any(k.startswith("calibration_ici_") for k in run.metrics)
            continue
        # the logged ICI is the saved model's, on the patients it was trained on
        data = survival_data(load_bundled(), "os", landmark_months=3, feature_columns=["response_3mo"])
        s6 = load_model(run.model_uri, tracking_uri=uri).predict_survival(data.X, [6]).to_numpy()[:, 0]
        assert run.metrics["calibration_ici_6_apparent"] == pytest.approx(smooth_calibration(data.y, s6, 6).ici)
        curve = pd.read_csv(client.download_artifacts(run.run_id, "decision_curve_6.csv"))
        assert list(curve.columns) == ["threshold", "model", "treat_all", "treat_none"]
        groups = pd.read_csv(client.download_artifacts(run.run_id, "calibration_6.csv"))
        assert groups["patients"].sum() == run.n_patients  # grouped, never one row per patient
        assert (groups["patients"] >= 3).all()


def test_every_run_logs_a_tripod_model_report_that_renders(trained: TrainResult, store: Path, tmp_path: Path) -> None:
    import mlflow

    from tests.browser import CHROMIUM, rendered_images

    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}/mlflow.db")
    for run in trained.runs:
        names = {a.path for a in client.list_artifacts(run.run_id, "plots")}
        assert {f"plots/calibration_{h:g}.png" for h in run.horizons} <= names
        assert {f"plots/decision_curve_{h:g}.png" for h in run.horizons} <= names
        page = Path(client.download_artifacts(run.run_id, "model_report.html", str(tmp_path)))
        text = page.read_text(encoding="utf-8")
        assert "2013 to 2019" in text  # years only
        assert f"EPV {run.n_events / run.n_parameters:.1f}" in text  # a generated limitation
        assert "RECON-" not in text  # no patient identifier
        assert ("Baseline survival" in text) == (run.family == "cox")
        assert ("<h3>Nomogram</h3>" in text) == (run.family == "cox")
        if CHROMIUM is not None and run.family == "cox":
            loaded, total = rendered_images(page, tmp_path)
            # calibration and decision curves, the nomogram, the dose-response, the SHAP figures (6)
            assert total == 2 * len(run.horizons) + 1 + 1 + 6
            assert loaded == total


def test_every_run_logs_global_explanations_as_aggregates(trained: TrainResult, store: Path) -> None:
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}/mlflow.db")
    for run in trained.runs:
        plots = {a.path for a in client.list_artifacts(run.run_id, "plots")}
        assert {"plots/shap_beeswarm.png", "plots/shap_bar.png", "plots/permutation_importance.png"} <= plots
        assert "plots/shap_dependence_d90_gy.png" in plots
        assert ("plots/cox_hazard_ratios.png" in plots) == (run.family == "cox")
        features = client.get_run(run.run_id).data.params["feature_names"].split(",")
        shap_means = {k.removeprefix("shap_mean_abs_"): v for k, v in run.metrics.items() if k.startswith("shap_")}
        assert set(shap_means) == set(features)
        if run.family == "cox":  # linear SHAP: mean |SHAP_j| = |coef_j| · mean |x_j − mean_j| on the cohort
            model = load_model(run.model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db")
            Z = model.features.transform(model.validate_patients(_training_rows(run.endpoint)))
            expected = np.abs(model.estimator.coef_) * np.abs(Z - Z.mean(axis=0)).mean(axis=0)
            got = np.array([shap_means[f] for f in features])
            np.testing.assert_allclose(got, expected, rtol=1e-9)
        importance = pd.read_csv(client.download_artifacts(run.run_id, "permutation_importance.csv"))
        assert sorted(importance["feature"]) == sorted(features)  # one row per feature, never per patient
        assert (importance["repeats"] == 20).all()
        # shuffling the feature the model leans on most (largest mean |SHAP|) costs it concordance
        top = max(shap_means, key=shap_means.__getitem__)
        assert importance.set_index("feature").at[top, "c_drop"] > 0


def test_score_report_writes_one_pseudonymous_page_per_patient(
    trained: TrainResult, store: Path, new_patients: Path, tmp_path: Path
) -> None:
    from riskmodel.privacy import pseudonym
    from tests.browser import CHROMIUM, rendered_images

    lc = next(r for r in trained.runs if r.endpoint == "lc" and r.family == "cox")
    os_ = next(r for r in trained.runs if r.endpoint == "os" and r.family == "rsf")
    patients = tmp_path / "p.csv"
    patients.write_text(new_patients.read_text().replace("N1,61", "MRN-55501,61").replace("N2,70", "MRN-55502,70"))
    out = tmp_path / "reports"
    args = ["score", "--model", lc.model_uri, "--model", os_.model_uri, "--patients", str(patients)]
    args += ["--tracking-uri", f"sqlite:///{store}/mlflow.db", "--report", str(out), "--out", str(tmp_path / "s.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    pages = sorted(out.glob("patient_*.html"))
    assert len(pages) == 3
    assert (out / "index.html").exists()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "MRN-555" not in text
        assert "MRN-555" not in page.name
        assert "not a causal dose-response" in text
        assert "band: 2.5th-97.5th percentile of the forest" in text
        assert "sampling uncertainty (normal approximation" in text
    texts = " ".join(p.read_text(encoding="utf-8") for p in pages)
    assert pseudonym("MRN-55501") in texts
    if CHROMIUM is not None:
        loaded, total = rendered_images(pages[0], tmp_path)
        assert total == 1 + 4 + 1  # curves, two waterfalls per model, the what-if curve
        assert loaded == total


def _training_rows(endpoint: str) -> pd.DataFrame:
    from riskmodel.cohort import load_bundled, survival_data

    return survival_data(load_bundled(), endpoint, landmark_months=3, feature_columns=["response_3mo"]).X


def test_no_horizon_with_few_patients_followed_shows_a_metric(trained: TrainResult) -> None:
    """Counted from the bundled CSV with pandas alone: patients still followed after the landmark."""
    raw = pd.read_csv(REPO / "data" / "reconstructed_cohort.csv")
    for run in trained.runs:
        time = raw[f"{run.endpoint}_months"]
        after = time[time > 3] - 3
        followed = {h: int((after >= h).sum()) for h in (6.0, 12.0, 24.0)}
        assert run.horizons == [h for h, n in followed.items() if n >= 10]
        for h, n in followed.items():
            shown = [k for k in run.metrics if k.endswith((f"_{h:g}_mean", f"_{h:g}_corrected", f"_{h:g}_apparent"))]
            assert bool(shown) == (n >= 10), (run.endpoint, h, n, shown)


def test_separation_under_multiple_imputation_gives_hazard_ratios_without_intervals_not_a_crash() -> None:
    from sklearn.preprocessing import FunctionTransformer

    from riskmodel.models import CoxPH, MultipleImputationSurvival
    from riskmodel.stats import survival_array
    from riskmodel.workflow.develop import pooled_table

    rng = np.random.default_rng(0)
    flag = (np.arange(80) % 2).astype(float)  # every patient flagged has the event, no other: separation
    x = rng.normal(size=80)
    x[rng.random(80) < 0.3] = np.nan
    X, y = pd.DataFrame({"flag": flag, "x": x}), survival_array(flag == 1, rng.exponential(10, 80))
    encoding = FunctionTransformer(feature_names_out="one-to-one")
    mi = MultipleImputationSurvival(encoding, CoxPH(), impute=["x"], n_imputations=3, n_iter=2).fit(X, y)
    table = pooled_table(mi, X, y)
    assert list(table.index) == ["flag", "x"]
    assert table["hr"].gt(0).all()
    assert table[["se", "hr_lower_95", "hr_upper_95", "p", "fmi"]].isna().all().all()
    assert "did not converge" in table.attrs["note"]
    assert "without intervals" in table.attrs["method"]


def test_a_trained_model_records_its_development_size_and_says_it_is_exploratory(
    trained: TrainResult, store: Path
) -> None:
    """The bundled cohort is below Riley et al.'s minimum: the model file says so, with the counts
    the run's tags hold, and every page's note is read from it."""
    import mlflow

    for run in trained.runs:
        model = load_model(run.model_uri, tracking_uri=f"sqlite:///{store}/mlflow.db")
        tags = mlflow.MlflowClient(f"sqlite:///{store}/mlflow.db").get_run(run.run_id).data.tags
        assert model.development is not None
        assert model.development["n_patients"] == int(tags["riskmodel.n_patients"])
        assert model.development["n_events"] == int(tags["riskmodel.n_events"])
        assert model.development["exploratory"] is (tags["riskmodel.exploratory"] == "true") is True
        assert model.development["minimum_n"] > model.development["n_patients"]
        assert model.development_note().startswith(f"Exploratory: developed on {model.development['n_patients']} ")
