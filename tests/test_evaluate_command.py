"""``riskmodel evaluate`` end to end: a model of two centres evaluated on the third.

Its C and O/E equal an independent computation on the same patients (scikit-survival, lifelines);
bad rows are reported by row and left out; the report renders in headless Chromium with every
figure and no identifier; the MLflow run sits under ``evaluate``, tagged with the model's run and
the data digest, and links to the development run; bad input is one line with exit code 2.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from sksurv.metrics import concordance_index_censored
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort.synthetic import generate
from riskmodel.models import CoxPH
from riskmodel.scoring import RiskModel
from riskmodel.stats import survival_array
from riskmodel.tracking import Tracker
from tests.browser import CHROMIUM, rendered_images
from tests.study_models import study_model

runner = CliRunner()
BAD_ROWS = {5: ("d90_gy", "-40"), 9: ("os_months", "soon")}  # spreadsheet rows (header = row 1)


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def centres(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A Cox OS model of centres 1 and 2 saved as a folder; centre 3 as a CSV with two bad rows."""
    root = tmp_path_factory.mktemp("evaluate")
    dev = pd.concat([generate(150, 21), generate(150, 22)], ignore_index=True)
    model, _ = study_model(
        dev, "os", CoxPH(), family="cox", horizons=[12.0, 24.0], feature_columns=["response_3mo"], quiet=True
    )
    centre3 = generate(200, 23)
    centre3["patient_id"] = [f"HOSP3-{i:04d}" for i in range(len(centre3))]
    raw = centre3.astype(object)
    for row, (column, value) in BAD_ROWS.items():
        raw.loc[row - 2, column] = value
    data = root / "centre3.csv"
    raw.to_csv(data, index=False)
    folder = model.save(root / "model")
    store = f"sqlite:///{root / 'mlflow.db'}"
    return {"root": root, "store": store, "model": model, "folder": folder, "centre3": centre3, "data": data}


@pytest.fixture(scope="module")
def study(centres):  # type: ignore[no-untyped-def]
    """The same model logged to a fresh MLflow store, as train logs one (a development run)."""
    model: RiskModel = centres["model"]
    tracker = Tracker("development", str(centres["store"]))
    with tracker.parent("development", {}) as run_id, tempfile.TemporaryDirectory() as tmp:
        uri = tracker.log_model(model, model.save(Path(tmp) / "riskmodel"))
    return {**centres, "run_id": run_id, "uri": uri}


@pytest.fixture(scope="module")
def evaluated(study) -> tuple[int, str, Path]:  # type: ignore[no-untyped-def]
    out = Path(study["root"]) / "out"
    code, text = cli(
        "evaluate",
        "--model",
        str(study["uri"]),
        "--data",
        str(study["data"]),
        "--out",
        str(out),
        "--n-boot",
        "30",
        "--tracking-uri",
        str(study["store"]),
    )
    return code, text, out


@pytest.mark.slow
def test_c_and_oe_agree_with_an_independent_computation(study, evaluated) -> None:  # type: ignore[no-untyped-def]
    code, text, out = evaluated
    assert code == 0, text
    metrics = json.loads((out / "metrics.json").read_text())["models"][0]
    # the same patients by hand: the two bad rows out, the 3-month landmark applied
    kept = study["centre3"].drop(index=[r - 2 for r in BAD_ROWS])
    kept = kept[kept["os_months"] > 3]
    y = survival_array(kept["os_event"].to_numpy(bool), kept["os_months"].to_numpy(float) - 3)
    model: RiskModel = study["model"]
    Z = model.features.transform(kept)
    harrell = concordance_index_censored(y["event"], y["time"], model.estimator.predict_risk(Z))[0]
    assert abs(metrics["measures"]["harrell_c"]["estimate"] - harrell) < 1e-12
    km = KaplanMeierFitter().fit(y["time"], y["event"])
    for h in (12.0, 24.0):
        s = model.estimator.predict_survival(Z, [h]).to_numpy()[:, 0]
        oe = (1 - km.predict(h)) / np.mean(1 - s)
        measure = metrics["measures"][f"oe_{h:g}"]
        assert abs(measure["estimate"] - oe) < 1e-12
        assert measure["low"] < measure["estimate"] < measure["high"]
    assert metrics["patients"] == {
        "rows_read": 200,
        "left_out_bad_rows": 2,
        "not_at_risk_after_landmark": 198 - len(kept),
        "analysed": len(kept),
        "events": int(y["event"].sum()),
    }
    for row, (column, _) in BAD_ROWS.items():
        assert f"row {row}: left out of the OS cox evaluation" in text
        assert column in text
    tables = out / metrics["tables"]
    names = ("metrics.csv", "case_mix.csv", "outside_ranges.csv", "calibration_groups_12.csv", "decision_curve_24.csv")
    for name in names:
        assert (tables / name).is_file()
    assert metrics["case_mix"]["membership_c"] is None
    assert "--development-data" in metrics["case_mix"]["membership_note"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
def test_report_renders_every_figure_and_no_identifier(study, evaluated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, out = evaluated
    report = out / "validation_report.html"
    loaded, total = rendered_images(report, tmp_path)
    assert total == 5  # calibration and decision curve at 12 and 24 months, and the case-mix plot
    assert loaded == total
    text = report.read_text()
    assert "HOSP3-" not in text
    assert "HOSP3-" not in (out / "metrics.json").read_text()
    for item in ("TRIPOD+AI 12e", "TRIPOD+AI 16, 20c", "TRIPOD+AI 23a", "TRIPOD+AI 12g", "TRIPOD+AI 12f, 24"):
        assert item in text


@pytest.mark.slow
def test_run_under_evaluate_tagged_and_linked_to_the_development_run(study, evaluated) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(str(study["store"]))
    experiment = mlflow.get_experiment_by_name("evaluate")
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert len(runs) == 1
    tags, metrics = runs[0].data.tags, runs[0].data.metrics
    assert tags["riskmodel.model_run_id"] == study["run_id"]
    assert tags["riskmodel.development_run_id"] == study["run_id"]
    assert study["run_id"] in tags["mlflow.note.content"]
    assert len(tags["riskmodel.data_digest"]) == 16
    assert tags["riskmodel.left_out_rows"] == "2"
    assert {"harrell_c", "harrell_c_low", "oe_12", "oe_12_high", "ici_24"} <= set(metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}
    assert {"validation_report.html", "metrics.json", "tables"} <= artifacts


@pytest.mark.slow
def test_development_data_gives_the_membership_c(centres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study, folder = centres, centres["folder"]
    dev = generate(150, 21)
    dev.to_csv(tmp_path / "dev.csv", index=False)
    out = tmp_path / "out"
    code, text = cli(
        "evaluate", "--model", str(folder), "--data", str(study["data"]), "--out", str(out),
        "--development-data", str(tmp_path / "dev.csv"), "--n-boot", "0", "--horizons", "12",
        "--tracking-uri", str(study["store"]),
    )  # fmt: skip
    assert code == 0, text
    case_mix = json.loads((out / "metrics.json").read_text())["models"][0]["case_mix"]
    assert 0.5 <= case_mix["membership_c"] < 0.7  # the same generator: hard to tell apart


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("no outcomes", "os_months"),
        ("no such model", "no such model"),
        ("horizon beyond follow-up", "beyond the validation follow-up"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(centres, tmp_path: Path, change: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    study = centres
    data, model, horizons = Path(study["data"]), str(study["folder"]), "12"
    if change == "no outcomes":
        data = tmp_path / "no_outcomes.csv"
        study["centre3"].drop(columns=["os_months", "os_event", "lc_months", "lc_event"]).to_csv(data, index=False)
    elif change == "no such model":
        model = str(tmp_path / "missing-model")
    else:
        horizons = "60"
    code, text = cli(
        "evaluate", "--model", model, "--data", str(data), "--horizons", horizons, "--out", str(tmp_path / "o"),
        "--n-boot", "0", "--tracking-uri", str(study["store"]),
    )  # fmt: skip
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    if change == "no outcomes":  # one line per problem: each missing outcome column
        assert len(lines) == 2, text
        assert "os_months" in lines[0]
        assert "os_event" in lines[1]
        assert all("cannot evaluate the OS model" in line for line in lines)
    else:
        assert len(lines) == 1, text
        assert expected in lines[0]
    assert "Traceback" not in text


def test_a_model_file_without_training_aggregates_says_case_mix_is_unavailable(centres) -> None:  # type: ignore[no-untyped-def]
    """A model saved before riskmodel kept means, SDs and level shares: no standardised differences, said so."""
    from dataclasses import replace

    from riskmodel.reporting.validation_report import render_validation_report
    from riskmodel.scoring import read_patients
    from riskmodel.workflow.evaluate import evaluate_one

    old = replace(centres["model"], input_summaries={})
    frame = read_patients(Path(centres["data"]))
    facts, data = evaluate_one(
        "old-model", old, frame, str(centres["data"]), horizons=[12.0], development=None, n_boot=0, seed=0
    )
    assert facts.standardised_differences is None
    assert len(data.bad_rows) == 2
    assert "Standardised differences: unavailable" in render_validation_report([facts])
    assert facts.summary(1)["case_mix"]["max_abs_standardised_difference"] is None
