"""``riskmodel train --by centre`` on a competing-risks endpoint (LC with death competing; issue 18).

A declared 4-centre synthetic cohort (status 0/1/2) is validated centre by centre with the measures
of ``riskmodel evaluate`` for a CIF model, and pooled by the random-effects meta-analysis:

* each held-out centre's C is Wolbers' (``survival::concordance`` once competing events are censored
  past every time; no ties: the times carry a tiny per-patient offset) and its O/E is the
  ``cmprsk::cuminc`` Aalen-Johansen CIF over the mean predicted CIF of an independent refit of the
  same pipeline on the other centres: both to 1e-8;
* the pooled C, slope and O/E equal ``metafor::rma(method = "REML")`` on the per-centre rows read
  back from the run (1e-6), and the run says its measures are of the CIF.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort.synthetic import CentreHeterogeneity, generate
from riskmodel.config import load_experiment
from riskmodel.models.registry import build_family
from riskmodel.workflow.prepare import load_cohort, make_pipeline, prepare_endpoints
from tests.r_session import HAS_R, rscript
from tests.test_by_centre import R_POOL

pytestmark = pytest.mark.slow


def export(n: int = 320, seed: int = 5) -> pd.DataFrame:
    """The synthetic LC with death competing (a death after the last LC assessment competes at death)."""
    raw = generate(n, seed, centres=4, centre_heterogeneity=CentreHeterogeneity(log_hazard_sd=0.3))
    lc, died = raw["lc_event"].to_numpy(bool), raw["os_event"].to_numpy(bool)
    months = np.where(~lc & died, raw["os_months"], raw["lc_months"])
    offset = np.random.default_rng(seed).permutation(n) * 1e-3 / n + 1e-6  # no tied times
    return pd.DataFrame(
        {
            "patient_id": raw["patient_id"],
            "centre": raw["centre"],
            "d90_gy": raw["d90_gy"],
            "lesion_volume_cm3": raw["lesion_volume_cm3"],
            "months": months + offset,
            "status": np.where(lc, 1, np.where(died, 2, 0)),
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("iecv_competing")
    export().to_csv(folder / "cohort.csv", index=False, float_format="%.17g")
    cohort = {
        "id": "patient_id",
        "centre": "centre",
        "covariates": [
            {"name": "d90", "column": "d90_gy", "kind": "numeric", "unit": "Gy"},
            {"name": "volume", "column": "lesion_volume_cm3", "kind": "numeric", "encoding": "log"},
        ],
        "endpoints": [
            {"name": "lc", "time": "months", "time_unit": "months", "event": "status", "competing_codes": [2]}
        ],
    }
    raw = {
        "name": "iecv-cr",
        "data": {"path": "cohort.csv"},
        "cohort": cohort,
        "horizons": [6, 12],
        "models": {"cox": {"penalty": 0.0}, "rsf": None, "gbm": None},
        "evaluation": {"n_splits": 2, "n_repeats": 1, "bootstrap": 20},
    }
    import yaml

    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    summary = folder / "summary.json"
    args = ["train", str(path), "--by", "centre", "--tracking-uri", store, "--summary-json", str(summary)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = json.loads(summary.read_text())["runs"][0]
    client = mlflow.MlflowClient(store)
    artifacts = Path(client.download_artifacts(run["run_id"], "iecv", str(folder / "artifacts")))
    return {"folder": folder, "path": path, "run": run, "mlflow": client.get_run(run["run_id"]), "artifacts": artifacts}


def test_the_run_validates_cif_models_and_says_so(trained: dict[str, Any]) -> None:
    tags = trained["mlflow"].data.tags
    assert tags["riskmodel.analysis"] == "competing"
    assert tags["riskmodel.metric.c"] == "Wolbers C"
    centres = pd.read_csv(trained["artifacts"] / "centres.csv")
    assert len(centres) == 4
    assert centres["slope_on"].str.startswith("cloglog CIF").all()
    brier = f"brier_{trained['run']['horizon']:g}"
    assert np.isfinite(centres[["c", "c_se", "oe", "log_oe_se", "slope", "slope_se", brier]]).all().all()


CHECK_R = r"""
suppressMessages({library(survival); library(cmprsk)})
all <- read.csv(commandArgs(TRUE)[1]); h <- as.numeric(commandArgs(TRUE)[2])
for (k in unique(all$centre)) {
  d <- all[all$centre == k, ]
  moved <- transform(d, time = ifelse(cause == 2, max(time) + 1, time), event = as.integer(cause == 1))
  c <- concordance(Surv(time, event) ~ risk, data = moved, reverse = TRUE)$concordance
  aj <- timepoints(cuminc(d$time, d$cause, cencode = 0), h)$est["1 1", 1]
  cat(k, formatC(c(c, aj / mean(d$cif)), digits = 17), "\n")
}
"""


@pytest.mark.skipif(not HAS_R, reason="R is not installed (.ci/run installs r-cran-survival, r-cran-cmprsk)")
def test_each_centres_wolbers_c_and_oe_equal_r_on_a_refit_of_the_other_centres(trained: dict[str, Any]) -> None:
    config = load_experiment(trained["path"])
    prep = prepare_endpoints(config, load_cohort(config))["lc"]
    X, y = prep.data.X, prep.data.y
    horizon = float(trained["run"]["horizon"])
    centres = pd.read_csv(trained["artifacts"] / "centres.csv", dtype={"centre": str}).set_index("centre")
    parts = []
    for label in centres.index:
        held = (X["centre"].astype(str) == label).to_numpy()
        pipe = make_pipeline(config, build_family("cox", {"penalty": 0.0}, config.seed, competing=True))
        pipe.fit(X[~held], y[~held])
        Z = pipe.named_steps["features"].transform(X[held])
        model = pipe.named_steps["model"]
        cif = model.predict_cif(Z, [horizon]).to_numpy()[:, 0]
        risk = model.predict_risk(Z)
        parts.append(
            pd.DataFrame(
                {"centre": label, "time": y["time"][held], "cause": y["cause"][held], "risk": risk, "cif": cif}
            )
        )
    folder: Path = trained["folder"]
    pd.concat(parts).to_csv(folder / "centres_check.csv", index=False, float_format="%.17g")
    stdout = rscript(folder, "check.R", CHECK_R, str(folder / "centres_check.csv"), f"{horizon:g}")
    r = {label: (float(c), float(oe)) for label, c, oe in map(str.split, stdout.splitlines())}
    assert set(r) == set(centres.index)
    for label, (c, oe) in r.items():
        assert centres.at[label, "c"] == pytest.approx(c, abs=1e-8), label
        assert centres.at[label, "oe"] == pytest.approx(oe, abs=1e-8), label


@pytest.mark.skipif(not HAS_R, reason="R is not installed")
def test_the_pooled_competing_measures_equal_metafor_rma(trained: dict[str, Any]) -> None:
    folder: Path = trained["folder"]
    stdout = rscript(folder, "pool.R", R_POOL, str(trained["artifacts"] / "centres.csv"))
    pooled = pd.read_csv(trained["artifacts"] / "pooled.csv").set_index("measure")
    for line in stdout.strip().splitlines():
        name, estimate, *_ = line.split("\t")
        assert float(pooled.loc[name, "estimate"]) == pytest.approx(float(estimate), abs=1e-6), name
