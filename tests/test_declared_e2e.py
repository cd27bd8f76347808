"""A messy multi-centre export through ``riskmodel init`` → ``train`` → ``score`` (issue 16).

The export (:mod:`tests.declared_export`, 800 patients) has days as the time unit, status codes
0/1/2 (2 a competing event), headers with units, text category codes, an identifier, a
next-of-kin column, dates, an empty column, and ECOG and albumin missing at random. ``init``
declares it; the only edits are the test's small protocol (3-fold CV once, no bootstrap, m = 3)
and, if ``init`` had not chosen it, ``missing: impute`` for those two. Then every declared
covariate is used, the Cox model's cross-validated Harrell C is within 0.02 of the true linear
predictor's C on the same patients, every family is tracked and scores a raw export with extra
columns and missing values, no identifier reaches MLflow, and the pooled Cox table is Rubin's
rules over the very datasets the model was fitted on (and, where R and mice are installed, what
``mice::pool`` gives on them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sksurv.metrics import concordance_index_censored

from riskmodel.cohort.declared import load_declared
from riskmodel.cohort.endpoints import survival_data
from riskmodel.config import load_experiment
from riskmodel.models import CoxPH, pooled_hazard_ratios
from riskmodel.tracking import load_model
from tests.declared_export import COLUMNS, TRUE_LOG_HR, Export, messy_export

pytestmark = pytest.mark.slow

# 800 patients: at 400, the cross-validated C of this design fell more than 0.02 below the true C
# for 3 of 10 cohort seeds (mean gap 0.017: 3-fold splitting ~0.007, estimating 7 coefficients
# from 267 patients ~0.010, the information the missing values take ~0.006; an oracle Cox fit on
# the complete data fell 0.017 short on one of them). At 800 the gap was 0.005-0.014 (mean 0.008).
N, SEED = 800, 16
FAMILIES = ("cox", "rsf", "gbm")
IMPUTED = {COLUMNS["ecog"]: "ecog", COLUMNS["albumin"]: "albumin"}


@dataclass
class Trained:
    folder: Path
    export: Export
    experiment: Path
    declared: dict
    init_policies: dict[str, str]
    uri: str
    summary: dict
    output: str


def _riskmodel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RISKMODEL_SALT": "e2e16-salt"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "riskmodel", *args], capture_output=True, text=True, timeout=900, cwd=cwd, env=env
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    import json

    folder = tmp_path_factory.mktemp("e2e16")
    (folder / "data").mkdir()
    (folder / "run").mkdir()
    export = messy_export(N, SEED)
    data = folder / "data" / "export.csv"
    export.raw.to_csv(data, index=False)
    experiment = folder / "data" / "exp.yaml"
    init = _riskmodel(
        "init",
        str(data),
        "--time",
        COLUMNS["time"],
        "--event",
        COLUMNS["status"],
        "--time-unit",
        "days",
        "--event-codes",
        "1",
        "--competing-codes",
        "2",
        "--id",
        COLUMNS["id"],
        "--centre",
        COLUMNS["centre"],
        "--endpoint",
        "os",
        "--out",
        str(experiment),
        cwd=folder / "run",
    )
    assert init.returncode == 0, init.stdout + init.stderr
    declared = yaml.safe_load(experiment.read_text())
    policies = {}
    for c in declared["cohort"]["covariates"]:
        if c["column"] in IMPUTED:
            policies[c["column"]] = c["missing"]
            c["missing"] = "impute"
    declared["evaluation"] = {"n_splits": 3, "n_repeats": 1, "bootstrap": 0}
    # the cause-specific view this file checks (issue 16); competing risks of the same export are
    # trained end to end in test_competing_e2e.py
    declared["competing_risks"] = False
    declared["imputation"] = {"n_imputations": 3}
    experiment.write_text(yaml.safe_dump(declared, sort_keys=False))
    uri = f"sqlite:///{folder}/run/mlflow.db"
    summary = folder / "data" / "s.json"
    train = _riskmodel(
        "train", str(experiment), "--tracking-uri", uri, "--summary-json", str(summary), cwd=folder / "run"
    )
    assert train.returncode == 0, train.stdout + train.stderr
    return Trained(
        folder,
        export,
        experiment,
        declared,
        policies,
        uri,
        json.loads(summary.read_text()),
        train.stdout + train.stderr,
    )


def runs_by_family(trained: Trained) -> dict[str, dict]:
    return {r["family"]: r for r in trained.summary["runs"]}


def test_init_declared_the_two_incomplete_covariates_impute_and_every_other_column_sensibly(trained: Trained) -> None:
    assert trained.init_policies == {COLUMNS["ecog"]: "impute", COLUMNS["albumin"]: "impute"}
    kinds = {c["name"]: c["kind"] for c in trained.declared["cohort"]["covariates"]}
    assert kinds == {
        "age_at_diagnosis": "numeric",
        "sex": "categorical",
        "histology": "categorical",
        "ecog": "ordinal",
        "albumin": "numeric",
        "smoker": "binary",
    }
    [endpoint] = trained.declared["cohort"]["endpoints"]
    assert endpoint["time_unit"] == "days"
    assert (endpoint["event_codes"], endpoint["competing_codes"]) == ([1], [2])


def test_every_family_is_tracked_and_uses_every_declared_covariate(trained: Trained) -> None:
    import mlflow

    runs = runs_by_family(trained)
    assert sorted(runs) == sorted(FAMILIES)
    declared = [c["name"] for c in trained.declared["cohort"]["covariates"]]
    client = mlflow.MlflowClient(trained.uri)
    for family, run in runs.items():
        info = client.get_run(run["run_id"])
        assert info.info.status == "FINISHED", family
        assert info.data.tags["riskmodel.family"] == family
        features = info.data.params["feature_names"].split(",")
        for name in declared:
            assert any(f == name or f.startswith(f"{name}_") for f in features), (family, name, features)
        model = load_model(run["model_uri"], tracking_uri=trained.uri)
        assert model.input_columns == declared


def test_the_cox_models_cross_validated_c_is_within_002_of_the_true_models_c(trained: Trained) -> None:
    """The true model's C: Harrell's C of the generator's linear predictor on the same 800
    patients (scikit-survival; a competing event is censored for the event of interest)."""
    raw = trained.export.raw
    event = raw[COLUMNS["status"]].to_numpy() == 1
    time = raw[COLUMNS["time"]].to_numpy(float)
    true_c = concordance_index_censored(event, time, trained.export.true_lp)[0]
    cox = runs_by_family(trained)["cox"]["metrics"]
    assert cox["harrell_c_folds"] == 3
    assert abs(cox["harrell_c_mean"] - true_c) < 0.02, (cox["harrell_c_mean"], true_c)
    for family in ("rsf", "gbm"):  # the others learn something, if less
        assert runs_by_family(trained)[family]["metrics"]["harrell_c_mean"] > 0.6


def score(trained: Trained, family: str, patients: Path) -> tuple[subprocess.CompletedProcess[str], pd.DataFrame]:
    out = trained.folder / "data" / f"scores_{family}.csv"
    run = runs_by_family(trained)[family]
    proc = _riskmodel(
        "score",
        "--model",
        run["model_uri"],
        "--patients",
        str(patients),
        "--tracking-uri",
        trained.uri,
        "--out",
        str(out),
        cwd=trained.folder / "run",
    )
    return proc, (pd.read_csv(out) if out.exists() else pd.DataFrame())


@pytest.fixture(scope="module")
def new_patients(trained: Trained) -> tuple[Path, pd.DataFrame]:
    """60 new patients as another export of the same hospitals: every column of the export, the
    outcome included (extra columns to ignore), and ECOG and albumin missing for some."""
    raw = messy_export(60, seed=SEED + 1).raw.assign(**{"Referring ward": "B4"})
    raw[COLUMNS["id"]] = [f"NEW{i:03d}" for i in range(60)]
    path = trained.folder / "data" / "new.csv"
    raw.to_csv(path, index=False)
    return path, raw


@pytest.mark.parametrize("family", FAMILIES)
def test_each_familys_model_uri_scores_a_raw_export_with_extra_columns_and_missing_values(
    trained: Trained, new_patients: tuple[Path, pd.DataFrame], family: str
) -> None:
    path, raw = new_patients
    assert raw[list(IMPUTED)].isna().any(axis=1).sum() >= 10
    proc, scores = score(trained, family, path)
    assert proc.returncode == 0, proc.stderr
    assert "60 of 60 patients scored" in proc.stderr
    assert f"(OS, {family}, time zero" in proc.stderr
    assert scores["patient_id"].tolist() == raw[COLUMNS["id"]].tolist()
    horizons = [c for c in scores.columns if c.startswith("S_")]
    assert len(horizons) >= 2
    surv = scores[horizons].to_numpy()
    assert np.isfinite(surv).all()
    assert ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 1e-12).all()
    assert np.isfinite(scores["risk_score"]).all()
    # risk tracks the truth for new patients too (ρ of a ~0.7-C model on 60 patients: loose)
    truth = messy_export(60, seed=SEED + 1).true_lp
    assert np.corrcoef(scores["risk_score"], truth)[0, 1] > 0.3


def test_imputed_values_are_flagged_in_the_score_output(
    trained: Trained, new_patients: tuple[Path, pd.DataFrame]
) -> None:
    path, raw = new_patients
    _, scores = score(trained, "cox", path)
    flags = scores["flags"].fillna("")
    for column, name in IMPUTED.items():
        missing = raw[column].isna().to_numpy()
        assert missing.any()
        assert all(name in f and "imputed" in f for f in flags[missing]), (name, flags[missing].tolist())
        assert not any(f"{name} imputed" in f for f in flags[~missing])


def _all_bytes(folder: Path) -> bytes:
    chunks = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        chunks.append(path.read_bytes())
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                chunks += [archive.read(name) for name in archive.namelist()]
    return b"\n".join(chunks)


def test_no_patient_identifier_next_of_kin_or_date_reaches_mlflow(trained: Trained) -> None:
    stored = _all_bytes(trained.folder / "run").decode("latin-1")
    assert len(stored) > 100_000  # the scan saw the store and its artifacts
    assert len(list((trained.folder / "run").rglob("model_report.html"))) == len(FAMILIES)
    raw = trained.export.raw
    # every canary has a shape, so one pass finds every candidate, then the canaries among them
    searches = {
        "identifier": (r"KX\d+", set(raw[COLUMNS["id"]])),
        "next of kin": (r"Quillfeather \d+", {v.removeprefix("Ms ") for v in raw[COLUMNS["kin"]]}),
        "date": (r"\d{4}-\d{2}-\d{2}", set(raw[COLUMNS["diagnosed"]])),
    }
    for what, (pattern, canaries) in searches.items():
        for text in (stored, trained.output):
            assert not set(re.findall(pattern, text)) & canaries, f"a patient's {what} reached MLflow or the output"
    assert "e2e16-salt" not in stored + trained.output


R_POOL = """
args <- commandArgs(trailingOnly = TRUE)
suppressMessages({library(mice); library(survival)})
d <- read.csv(args[1], check.names = FALSE)
fits <- lapply(split(d, d$.imp), function(g) coxph(Surv(time, status) ~ ., data = g[, setdiff(names(g), ".imp")],
                                                   ties = "efron"))
p <- pool(as.mira(fits))
s <- summary(p, conf.int = TRUE)
g <- function(x) if (is.numeric(x)) sprintf("%.17g", x) else as.character(x)
write.csv(data.frame(lapply(cbind(s, p$pooled[, c("df", "riv", "fmi", "dfcom")]), g), check.names = FALSE),
          args[2], row.names = FALSE, quote = FALSE)
"""


def test_the_pooled_cox_table_is_rubins_rules_over_the_models_own_imputations_and_what_mice_pool_gives(
    trained: Trained,
) -> None:
    config = load_experiment(trained.experiment)
    model = load_model(runs_by_family(trained)["cox"]["model_uri"], tracking_uri=trained.uri)
    table = model.hazard_ratios
    assert table is not None
    mi = model.estimator
    cohort = load_declared(config.data.path, config.cohort, covariates=config.covariates)
    sd = survival_data(cohort, "os", landmark_months=config.landmark_months, feature_columns=config.covariates)
    inputs = pd.DataFrame(model.features.transform(sd.X), columns=model.features.get_feature_names_out())
    designs = []
    for encoding, completed in zip(mi.encodings_, mi.completed_training(inputs, sd.y), strict=True):
        designs.append(pd.DataFrame(encoding.transform(completed), columns=encoding.get_feature_names_out()))
    assert len(designs) == 3
    ours = pooled_hazard_ratios([CoxPH(penalty=0).fit(d, sd.y) for d in designs])
    pd.testing.assert_index_equal(table.index, ours.index)
    for column in ("coef", "se", "hr_lower_95", "hr_upper_95", "p", "df", "fmi", "riv"):
        np.testing.assert_allclose(table[column], ours[column], rtol=1e-9, err_msg=column)
    # MI on 800 patients recovers the generator's truth: every pooled log HR within 3 SEs
    truth = {
        "age_at_diagnosis": TRUE_LOG_HR["age"],
        "sex_F": -TRUE_LOG_HR["male"],
        "histology_NOS": TRUE_LOG_HR["histology_NOS"],
        "histology_SCC": TRUE_LOG_HR["histology_SCC"],
        "ecog": TRUE_LOG_HR["ecog"],
        "albumin": TRUE_LOG_HR["albumin"],
        "smoker": TRUE_LOG_HR["smoker"],
    }
    z = (table["coef"] - pd.Series(truth)) / table["se"]
    assert (z.abs() < 3).all(), z.to_dict()

    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed (Debian: r-base-core r-cran-survival r-cran-mice)")
    if subprocess.run(["Rscript", "-e", "library(mice)"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("R's mice package is not installed (Debian: r-cran-mice)")
    long = pd.concat(
        [
            d.assign(**{".imp": i + 1, "time": sd.y["time"], "status": sd.y["event"].astype(int)})
            for i, d in enumerate(designs)
        ]
    )
    folder = trained.folder / "data"
    long.to_csv(folder / "completed.csv", index=False)
    (folder / "pool.R").write_text(R_POOL)
    r = subprocess.run(
        ["Rscript", str(folder / "pool.R"), str(folder / "completed.csv"), str(folder / "pooled.csv")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    theirs = pd.read_csv(folder / "pooled.csv").set_index("term").loc[list(table.index)]
    assert (theirs["dfcom"] == table.attrs.get("dfcom", theirs["dfcom"])).all()
    pairs = {"coef": "estimate", "se": "std.error", "p": "p.value", "df": "df", "fmi": "fmi", "riv": "riv"}
    for ours_column, their_column in pairs.items():
        np.testing.assert_allclose(table[ours_column], theirs[their_column], rtol=0, atol=1e-6, err_msg=ours_column)
    np.testing.assert_allclose(table["hr_lower_95"], np.exp(theirs["2.5 %"]), rtol=1e-6)
    np.testing.assert_allclose(table["hr_upper_95"], np.exp(theirs["97.5 %"]), rtol=1e-6)
