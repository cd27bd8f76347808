"""``riskmodel evaluate`` of a competing-risks (CIF) model (issue 18).

* A cause-specific Cox model of synthetic LC (death competing; the generator's cause-specific
  Weibull hazards) evaluated on an independent synthetic sample: Wolbers C equals
  ``survival::concordance`` with competing events censored past every time, the AUC and IPCW Brier
  of the CIF (and the Aalen-Johansen null's Brier) equal ``riskRegression::Score``, O/E equals
  ``cmprsk::cuminc``'s Aalen-Johansen CIF over the mean prediction, and the calibration slope equals
  ``cmprsk::crr`` on cloglog of the predicted CIF. Tolerances: 1e-8 absolute for C, AUC, Brier and
  O/E (measured at most 2e-15); 1e-5 for the slope (measured 9e-7: crr stops its Newton steps at
  its default tolerance, 1e-6).
  The validation times get a tiny per-patient offset (< 1e-3 months, the same for LC and death)
  so that no two patients tie: survival::concordance counts a tied event/censoring pair as
  comparable and Wolbers' definition does not.
* The CLI end to end: the bundled LC model (Cox, death competing, fitted and logged as train
  does) evaluated on a perturbed copy of the bundled cohort with new identifiers: exit 0, the
  report names every measure as one of the CIF, and no identifier reaches the evaluation run's
  tags, metrics or artifacts.
* Refusals: one line, exit 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort.synthetic import generate
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.errors import UserInputError
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.models.registry import build_family
from riskmodel.reporting.validation_report import render_validation_report
from riskmodel.scoring import RiskModel, read_patients
from riskmodel.tracking import Tracker
from riskmodel.workflow.evaluate import evaluate_one
from riskmodel.workflow.prepare import load_cohort, make_pipeline, prepare_endpoints
from tests.conftest import REPO
from tests.study_models import study_model

HAS_R = shutil.which("Rscript") is not None
HORIZONS = (12.0, 24.0)
TOL = 1e-8
runner = CliRunner()


def _jittered(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """No tied times between patients; within a patient LC and death keep their order and equality."""
    offset = np.random.default_rng(seed).permutation(len(frame)) * 1e-3 / len(frame) + 1e-6
    return frame.assign(lc_months=frame["lc_months"] + offset, os_months=frame["os_months"] + offset)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A cause-specific Cox LC model of 400 synthetic patients; 300 others as the validation file."""
    root = tmp_path_factory.mktemp("evaluate_competing")
    dev = generate(400, 21)
    model, _ = study_model(
        dev,
        "lc",
        CauseSpecificCox(penalty=0.0),
        family="cox",
        horizons=HORIZONS,
        feature_columns=["response_3mo"],
        competing=True,
        quiet=True,
    )
    validation = _jittered(generate(300, 23), 5)
    path = root / "validation.csv"
    validation.to_csv(path, index=False, float_format="%.17g")
    facts, data = evaluate_one(
        "m", model, read_patients(path), str(path), horizons=None, development=None, n_boot=20, seed=1
    )
    return {"root": root, "model": model, "facts": facts, "data": data, "validation": validation}


R_SCRIPT = """
suppressMessages({library(riskRegression); library(prodlim); library(survival); library(cmprsk)})
args <- commandArgs(TRUE)
d <- read.csv(args[1]); hs <- as.numeric(strsplit(args[2], ",")[[1]])
f <- function(key, x) cat(key, formatC(x, digits = 17, format = "g"), "\\n")
pred <- as.matrix(d[, paste0("cif", seq_along(hs))])
s <- Score(list(m = pred), Hist(time, status) ~ 1, data = d, times = hs, metrics = c("auc", "brier"),
           cause = 1, null.model = TRUE, se.fit = FALSE, cens.model = "marginal")
f("auc", s$AUC$score[model == "m"]$AUC)
f("brier", s$Brier$score[model == "m"]$Brier)
f("null", s$Brier$score[model == "Null model"]$Brier)
moved <- transform(d, time = ifelse(status == 2, max(time) + 1, time), event = as.integer(status == 1))
f("wolbers", concordance(Surv(time, event) ~ risk, data = moved, reverse = TRUE)$concordance)
ci <- cuminc(d$time, d$status, cencode = 0)
aj <- timepoints(ci, hs)$est["1 1", ]
f("oe", aj / colMeans(pred))
slope <- sapply(seq_along(hs), function(k) {
  p <- pmin(pmax(pred[, k], 1e-10), 1 - 1e-10)
  st <- ifelse(d$time > hs[k], 0, d$status)
  crr(pmin(d$time, hs[k]), st, cbind(log(-log(1 - p))), failcode = 1, cencode = 0)$coef[1]
})
f("slope", slope)
"""


@pytest.mark.skipif(not HAS_R, reason="R is not installed (.ci/run installs r-cran-riskregression, r-cran-cmprsk)")
def test_wolbers_c_auc_brier_oe_and_slope_equal_r_on_the_same_predictions(synthetic: dict[str, Any]) -> None:
    model: RiskModel = synthetic["model"]
    y = synthetic["data"].y
    assert (y["cause"] == 2).sum() > 20
    assert (y["cause"] == 1).sum() > 20
    Z = model.features.transform(synthetic["data"].X)
    cif = model.estimator.predict_cif(Z, list(HORIZONS)).to_numpy()
    frame = pd.DataFrame({"time": y["time"], "status": y["cause"], "risk": model.estimator.predict_risk(Z)})
    for k in range(len(HORIZONS)):
        frame[f"cif{k + 1}"] = cif[:, k]
    frame.to_csv(synthetic["root"] / "r.csv", index=False, float_format="%.17g")
    (synthetic["root"] / "check.R").write_text(R_SCRIPT)
    run = subprocess.run(
        ["Rscript", str(synthetic["root"] / "check.R"), str(synthetic["root"] / "r.csv"), "12,24"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    r = {key: np.array(values, float) for key, *values in map(str.split, run.stdout.splitlines())}
    got = synthetic["facts"].validation.estimates()
    assert got["harrell_c"] == pytest.approx(float(r["wolbers"][0]), abs=TOL)
    for k, h in enumerate(HORIZONS):
        assert got[f"td_auc_{h:g}"] == pytest.approx(r["auc"][k], abs=TOL)
        assert got[f"brier_{h:g}"] == pytest.approx(r["brier"][k], abs=TOL)
        assert got[f"brier_km_{h:g}"] == pytest.approx(r["null"][k], abs=TOL)
        assert got[f"scaled_brier_{h:g}"] == pytest.approx(1 - r["brier"][k] / r["null"][k], abs=TOL)
        assert got[f"oe_{h:g}"] == pytest.approx(r["oe"][k], abs=TOL)
        assert got[f"slope_{h:g}"] == pytest.approx(r["slope"][k], abs=1e-5)


def test_the_target_is_the_competing_view_from_the_landmark_and_every_measure_has_an_interval(
    synthetic: dict[str, Any],
) -> None:
    v = synthetic["validation"]
    # by hand: a death after the last LC assessment is a competing event at death (the bundled rule)
    cause = np.where(v["lc_event"] == 1, 1, np.where(v["os_event"] == 1, 2, 0))
    time = np.where((v["lc_event"] == 0) & (v["os_event"] == 1), v["os_months"], v["lc_months"])
    kept = time > 3
    y = synthetic["data"].y
    np.testing.assert_array_equal(y["cause"], cause[kept])
    np.testing.assert_allclose(y["time"], time[kept] - 3, atol=1e-12)
    facts = synthetic["facts"]
    assert facts.n_competing == int((cause[kept] == 2).sum())
    table = facts.validation.table.set_index("key")
    for key in ("harrell_c", "uno_c", "td_auc_12", "brier_24", "oe_12", "slope_24", "ici_12"):
        assert table.at[key, "low"] <= table.at[key, "high"], key
    assert 0.5 < table.at["harrell_c", "estimate"] < 0.8
    assert 0.5 < table.at["uno_c", "estimate"] < 0.8
    assert set(facts.validation.decision[12.0].columns) == {"threshold", "model", "treat_all", "treat_none"}
    groups = facts.validation.calibration[12.0].groups
    assert groups["patients"].sum() == len(y)  # aggregated: groups, never one row per patient


def test_the_report_names_each_measure_as_one_of_the_cif(synthetic: dict[str, Any]) -> None:
    page = render_validation_report([synthetic["facts"]])
    for words in (
        "Wolbers C (death without local failure competing)",
        "AUC of the CIF of local failure (Blanche definition 2)",
        "Brier score of the CIF of local failure (IPCW)",
        "Brier score of the Aalen-Johansen null",
        "O/E (observed Aalen-Johansen CIF of local failure / mean predicted CIF)",
        "CIF of local failure at 12 months",
        "never of a survival probability",
    ):
        assert words in page, words
    for survival_words in ("Harrell's C", "Kaplan-Meier null", "observed KM risk", "Uno's C"):
        assert survival_words not in page, survival_words
    summary = synthetic["facts"].summary(1)
    assert summary["analysis"]["meanings"]["harrell_c"].startswith("Wolbers C")
    assert summary["patients"]["competing_events"] == synthetic["facts"].n_competing


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bundled LC model (Cox, death competing) as train builds and logs it; a perturbed copy of
    the cohort. (The model is fitted as ``train`` fits it, without its cross-validation: not needed here.)"""
    root = tmp_path_factory.mktemp("bundled_competing")
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump()
    raw.update(endpoints=["lc"], horizons=[6.0, 12.0], models={"cox": {"penalty": 0.1}, "rsf": None, "gbm": None})
    config = ExperimentConfig.model_validate(raw, strict=False)
    prep = prepare_endpoints(config, load_cohort(config))["lc"]
    assert prep.competing
    pipe = make_pipeline(config, build_family("cox", {"penalty": 0.1}, config.seed, competing=True))
    pipe.fit(prep.data.X, prep.data.y)
    model = RiskModel.from_training(
        endpoint="lc",
        family="cox",
        experiment=config.name,
        landmark_months=config.landmark_months,
        horizons=[6.0, 12.0],
        features=pipe.named_steps["features"],
        estimator=pipe.named_steps["model"],
        X=prep.data.X,
    )
    store = f"sqlite:///{root}/mlflow.db"
    tracker = Tracker("development", store)
    with tracker.parent("development", {}):
        uri = tracker.log_model(model, model.save(root / "riskmodel"))
    cohort = pd.read_csv(REPO / "data" / "reconstructed_cohort.csv")
    rng = np.random.default_rng(3)
    stretch = rng.uniform(
        1.0, 1.2, len(cohort)
    )  # per patient: LC and death keep their order; none moves before 3 months
    external = cohort.assign(
        patient_id=[f"EXT-{700 + 7 * i}" for i in range(len(cohort))],
        d90_gy=(cohort["d90_gy"] * rng.uniform(0.9, 1.1, len(cohort))).round(1),
        lc_months=(cohort["lc_months"] * stretch).round(2),
        os_months=(cohort["os_months"] * stretch).round(2),
    )
    path = root / "external.csv"
    external.to_csv(path, index=False)
    return {"root": root, "store": store, "uri": uri, "data": path, "cohort": cohort, "external": external}


def _evaluate(bundled: dict[str, Any], data: Path, out: Path, *extra: str) -> tuple[int, str]:
    args = ["evaluate", "--model", bundled["uri"], "--data", str(data), "--out", str(out)]
    args += ["--horizons", "6,12", "--tracking-uri", bundled["store"], *extra]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.slow
def test_cli_evaluates_the_bundled_lc_model_and_keeps_identifiers_out_of_mlflow(
    bundled: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow

    out = tmp_path / "out"
    code, text = _evaluate(bundled, bundled["data"], out, "--n-boot", "20")
    assert code == 0, text
    report = (out / "validation_report.html").read_text()
    assert "Wolbers C (death without local failure competing)" in report
    assert "CIF of local failure at 6 months" in report
    assert "Kaplan-Meier" not in report
    assert "Harrell" not in report
    assert "Wolbers C = " in text
    assert "local failure events" in text
    assert "Harrell" not in text
    metrics = json.loads((out / "metrics.json").read_text())["models"][0]
    assert metrics["analysis"]["kind"] == "competing risks"
    assert metrics["patients"]["events"] > 0
    assert metrics["patients"]["competing_events"] > 0
    table = pd.read_csv(next(out.glob("1-lc-*")) / "metrics.csv")
    assert table.loc[table["key"] == "harrell_c", "meaning"].iloc[0].startswith("Wolbers C")

    mlflow.set_tracking_uri(bundled["store"])
    experiment = mlflow.get_experiment_by_name("evaluate")
    assert experiment is not None
    (found,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert found.data.tags["riskmodel.analysis"] == "competing"
    assert found.data.tags["riskmodel.metric.harrell_c"].startswith("Wolbers C")
    assert {"harrell_c", "brier_12", "brier_km_12", "oe_6", "ici_12", "td_auc_6_low"} <= set(found.data.metrics)
    folder = Path(mlflow.artifacts.download_artifacts(run_id=found.info.run_id, dst_path=str(tmp_path / "a")))
    texts = [p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file()]
    texts.append(json.dumps({**found.data.tags, **found.data.params}))
    ids = [*bundled["external"]["patient_id"], *bundled["cohort"]["patient_id"]]
    leaked = [i for i in ids for t in texts if i in t]
    assert not leaked, leaked[:3]
    assert len(texts) >= 5  # the report, metrics.json and the CSV tables were all scanned


@pytest.mark.slow
def test_data_without_the_competing_event_is_refused_in_one_line(bundled: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "no_death.csv"
    bundled["external"].drop(columns=["os_months", "os_event"]).to_csv(data, index=False)
    code, text = _evaluate(bundled, data, tmp_path / "o", "--n-boot", "0")
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 2, text  # one per missing column
    assert all("cannot evaluate the LC model" in line and "competing event" in line for line in lines)
    assert "Traceback" not in text


def test_a_survival_target_for_a_competing_model_is_refused(synthetic: dict[str, Any]) -> None:
    """A declared cohort whose endpoint names no competing event cannot give a CIF model's target."""
    from dataclasses import replace

    from riskmodel.cohort.declaration import CohortDeclaration

    model: RiskModel = synthetic["model"]
    declared = _declaration_without_competing()
    frame = synthetic["validation"]
    with pytest.raises(UserInputError, match=r"no competing event for LC .* needs each patient's cause") as exc:
        evaluate_one(
            "m", replace(model, declaration=declared), frame, "v.csv", horizons=None, development=None, n_boot=0, seed=0
        )
    assert "\n" not in str(exc.value)
    assert isinstance(declared, CohortDeclaration)


def _declaration_without_competing() -> Any:
    from riskmodel.cohort.builtin import builtin_declaration

    d = builtin_declaration()
    plain = {"competing_endpoint": None, "competing_codes": [], "competing_after_censoring": None}
    endpoints = [e.model_copy(update=plain) for e in d.endpoints]
    return d.model_copy(update={"endpoints": endpoints})
