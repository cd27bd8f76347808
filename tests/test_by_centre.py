"""``riskmodel train --by centre``: internal-external cross-validation across a synthetic 4-centre cohort.

* Pooling: the pooled C (logit), slope and O/E (log) equal ``metafor::rma(yi, vi, method="REML")``
  (and ``predict`` for the prediction interval) on the per-centre estimates read back from the run's
  ``iecv/centres.csv``, to 1e-6 (measured: 1.4e-14).
* Per-centre measures: each held-out centre's Harrell C equals scikit-survival's
  ``concordance_index_censored`` of an independent Cox fit (lifelines, unpenalised, on the other
  three centres) on that centre, to 1e-9 (measured: 0); its O/E at 12 months equals R's (``coxph`` with Efron
  ties on the other centres, ``survfit`` with its default ``ctype = 2``: Efron's baseline, as riskmodel's Cox; the
  Kaplan-Meier risk by ``survfit``), to 1e-6 (measured: 2.2e-16).
* Bad input: no centre declared, a single centre, a centre with fewer than 5 events, an unknown
  ``--by``: exit 2, one line. A centre with 5-9 events is pooled with a warning naming it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from lifelines import CoxPHFitter
from sksurv.metrics import concordance_index_censored
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort.synthetic import CentreHeterogeneity, generate
from riskmodel.config import load_experiment
from riskmodel.errors import UserInputError
from riskmodel.validation.iecv import forest_table, pool_centres
from riskmodel.workflow.by_centre import held_out_centres, metric_keys
from riskmodel.workflow.prepare import load_cohort, prepare_endpoints
from tests.r_session import HAS_R, rscript

COLUMNS = ["patient_id", "centre", "age_years", "kps", "d90_gy", "lesion_volume_cm3", "os_months", "os_event"]
HORIZON = 12.0


def experiment(folder: Path, frame: pd.DataFrame, *, centre: bool = True, **extra: Any) -> Path:
    """A declared 4-covariate OS experiment on ``frame`` (written beside it), Cox only, unpenalised."""
    frame.to_csv(folder / "cohort.csv", index=False)
    cohort: dict[str, Any] = {
        "id": "patient_id",
        "covariates": [
            {"name": "age", "column": "age_years", "kind": "numeric", "unit": "years"},
            {"name": "kps", "column": "kps", "kind": "numeric"},
            {"name": "d90", "column": "d90_gy", "kind": "numeric", "unit": "Gy"},
            {"name": "volume", "column": "lesion_volume_cm3", "kind": "numeric", "encoding": "log"},
        ],
        "endpoints": [{"name": "os", "time": "os_months", "time_unit": "months", "event": "os_event"}],
    }
    if centre:
        cohort["centre"] = "centre"
    raw = {
        "name": "iecv",
        "data": {"path": "cohort.csv"},
        "cohort": cohort,
        "horizons": [6, HORIZON, 24],
        "models": {"cox": {"penalty": 0.0}, "rsf": None, "gbm": None},
        "evaluation": {"n_splits": 2, "n_repeats": 1, "bootstrap": 25},
        **extra,
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def cohort(n: int = 640, seed: int = 5) -> pd.DataFrame:
    het = CentreHeterogeneity(log_hazard_sd=0.3)
    return generate(n, seed, centres=4, centre_heterogeneity=het)[COLUMNS]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("iecv")
    frame = cohort()
    path = experiment(folder, frame)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    summary = folder / "summary.json"
    code, text = cli("train", str(path), "--by", "centre", "--tracking-uri", store, "--summary-json", str(summary))
    assert code == 0, text
    run = json.loads(summary.read_text())["runs"][0]
    client = mlflow.MlflowClient(store)
    artifacts = Path(client.download_artifacts(run["run_id"], "iecv", str(folder / "artifacts")))
    return {
        "folder": folder,
        "frame": frame,
        "text": text,
        "run": run,
        "mlflow_run": client.get_run(run["run_id"]),
        "artifacts": artifacts,
    }


@pytest.mark.slow
def test_each_centre_is_held_out_and_the_pooled_c_has_a_prediction_interval(trained: dict[str, Any]) -> None:
    run, logged = trained["run"], trained["mlflow_run"]
    centres = pd.DataFrame(run["centres"])
    assert list(centres["centre"]) == ["C01", "C02", "C03", "C04"]
    counts = trained["frame"][trained["frame"]["os_months"] > 0].groupby("centre", observed=True)["os_event"]
    assert list(centres["patients"]) == list(counts.size())
    assert list(centres["events"]) == list(counts.sum())
    pooled = {p["measure"]: p for p in run["pooled"]}
    assert set(pooled) == {"c", "slope", "oe"}
    c = pooled["c"]
    assert c["pi_low"] <= c["ci_low"] < c["estimate"] < c["ci_high"] <= c["pi_high"]
    metrics = logged.data.metrics
    for name in ("iecv_pooled_c", "iecv_c_pi_low", "iecv_c_pi_high", "iecv_tau2_c", "iecv_i2_c", "iecv_pooled_oe"):
        assert name in metrics
    assert metrics["iecv_pooled_c"] == pytest.approx(c["estimate"], abs=1e-12)
    assert metrics["iecv.C03.c"] == pytest.approx(centres["c"][2], abs=1e-12)
    tags = logged.data.tags
    assert tags["riskmodel.evaluation_by"] == "centre"
    assert tags["riskmodel.main_horizon"] == f"{HORIZON:g}"
    assert {p.name for p in trained["artifacts"].iterdir()} >= {
        "centres.csv",
        "pooled.csv",
        "centre_measures.csv",
        "forest_c.png",
        "forest_slope.png",
        "forest_oe.png",
    }
    assert "pooled C-index (REML)" in trained["text"]
    # no patient identifier in anything logged
    for path in trained["artifacts"].glob("*.csv"):
        assert "SYN-" not in path.read_text()


R_POOL = r"""
suppressMessages(library(metafor))
d <- read.csv(commandArgs(TRUE)[1])
one <- function(name, yi, vi, back) {
  fit <- rma(yi, vi, method = "REML")
  p <- predict(fit)
  values <- c(back(c(fit$b)), back(fit$ci.lb), back(fit$ci.ub), back(p$pi.lb), back(p$pi.ub), fit$tau2, fit$I2, fit$QE)
  cat(name, sprintf("%.17g", values), sep = "\t")
  cat("\n")
}
one("c", qlogis(d$c), d$c_se^2 / (d$c * (1 - d$c))^2, plogis)
one("slope", d$slope, d$slope_se^2, identity)
one("oe", log(d$oe), d$log_oe_se^2, exp)
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_R, reason="R is not installed")
def test_pooled_figures_equal_metafor_rma_reml_on_the_per_centre_estimates(trained: dict[str, Any]) -> None:
    folder: Path = trained["folder"]
    stdout = rscript(folder, "pool.R", R_POOL, str(trained["artifacts"] / "centres.csv"))
    pooled = pd.read_csv(trained["artifacts"] / "pooled.csv").set_index("measure")
    fields = ("estimate", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2", "q")
    worst = 0.0
    for line in stdout.strip().splitlines():
        name, *values = line.split("\t")
        for field, ref in zip(fields, map(float, values), strict=True):
            diff = abs(float(pooled.loc[name, field]) - ref)
            worst = max(worst, diff)
            assert diff < 1e-6, (name, field, pooled.loc[name, field], ref)
    metrics = trained["mlflow_run"].data.metrics
    assert metrics["iecv_c_pi_low"] == pytest.approx(pooled.loc["c", "pi_low"], abs=1e-12)
    assert worst < 1e-6


@pytest.mark.slow
def test_each_centres_c_equals_scikit_survival_on_an_independent_fit_of_the_other_centres(
    trained: dict[str, Any],
) -> None:
    frame: pd.DataFrame = trained["frame"].copy()
    frame["log_volume"] = np.log(frame["lesion_volume_cm3"])
    covariates = ["age_years", "kps", "d90_gy", "log_volume"]
    centres = pd.DataFrame(trained["run"]["centres"]).set_index("centre")
    for centre, row in centres.iterrows():
        held = (frame["centre"] == centre).to_numpy()
        fit = CoxPHFitter().fit(frame.loc[~held, [*covariates, "os_months", "os_event"]], "os_months", "os_event")
        test = frame.loc[held]
        lp = fit.predict_log_partial_hazard(test[covariates]).to_numpy()
        c = concordance_index_censored(test["os_event"].astype(bool), test["os_months"], lp)[0]
        assert abs(row["c"] - c) < 1e-9, (centre, row["c"], c)


R_OE = r"""
suppressMessages(library(survival))
d <- read.csv(commandArgs(TRUE)[1]); h <- as.numeric(commandArgs(TRUE)[2])
d$log_volume <- log(d$lesion_volume_cm3)
for (centre in sort(unique(d$centre))) {
  dev <- d[d$centre != centre, ]; test <- d[d$centre == centre, ]
  fit <- coxph(Surv(os_months, os_event) ~ age_years + kps + d90_gy + log_volume, data = dev, ties = "efron")
  s <- summary(survfit(fit, newdata = test), times = h)$surv  # Efron's baseline (ctype 2), as the Efron fit
  km <- summary(survfit(Surv(os_months, os_event) ~ 1, data = test), times = h)$surv
  cat(centre, sprintf("%.17g", (1 - km) / mean(1 - s)), sep = "\t")
  cat("\n")
}
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_R, reason="R is not installed")
def test_each_centres_oe_equals_r_survival_on_an_independent_fit_of_the_other_centres(
    trained: dict[str, Any],
) -> None:
    folder: Path = trained["folder"]
    stdout = rscript(folder, "oe.R", R_OE, str(folder / "cohort.csv"), f"{HORIZON:g}")
    centres = pd.DataFrame(trained["run"]["centres"]).set_index("centre")
    lines = stdout.strip().splitlines()
    assert len(lines) == len(centres)
    for line in lines:
        centre, oe = line.split("\t")
        assert abs(centres.loc[centre, "oe"] - float(oe)) < 1e-6, (centre, centres.loc[centre, "oe"], oe)


def _one_line_exit_2(code: int, text: str, *needles: str) -> None:
    assert code == 2, text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in lines[0], text


def test_bad_input_is_one_line_with_exit_code_2() -> None:
    frame = cohort(400, 9)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = f"sqlite:///{folder / 'mlflow.db'}"
        # no centre column declared
        path = experiment(folder, frame, centre=False)
        _one_line_exit_2(*cli("train", str(path), "--by", "centre", "--tracking-uri", store), "cohort.centre")
        # a single centre, asked for by the experiment (evaluation.by) rather than the command line
        single = frame.assign(centre="C01")
        path = experiment(folder, single, evaluation={"n_splits": 2, "n_repeats": 1, "bootstrap": 25, "by": "centre"})
        _one_line_exit_2(*cli("train", str(path), "--tracking-uri", store), "single centre (C01)", "at least 2")
        # a centre with 3 events: refused by name
        few = frame.copy()
        c04 = np.flatnonzero(((few["centre"] == "C04") & (few["os_event"] == 1)).to_numpy())
        few.loc[few.index[c04[3:]], "os_event"] = 0
        path = experiment(folder, few)
        _one_line_exit_2(
            *cli("train", str(path), "--by", "centre", "--tracking-uri", store), "centre C04 (3)", "at least 5"
        )
        # an unknown grouping
        path = experiment(folder, frame)
        code, text = cli("train", str(path), "--by", "region", "--tracking-uri", store)
        assert code == 2, text
        assert "'region'" in text


def test_a_centre_with_5_to_9_events_is_pooled_with_a_warning_naming_it(tmp_path: Path) -> None:
    frame = cohort(400, 9)
    c02 = np.flatnonzero(((frame["centre"] == "C02") & (frame["os_event"] == 1)).to_numpy())
    frame.loc[frame.index[c02[7:]], "os_event"] = 0
    frame["centre"] = frame["centre"].astype(object)
    c01 = np.flatnonzero((frame["centre"] == "C01").to_numpy())
    frame.loc[frame.index[c01[:3]], "centre"] = None  # three patients without a centre
    config = load_experiment(experiment(tmp_path, frame))
    prep = prepare_endpoints(config, load_cohort(config))["os"]
    labels, centre, notes = held_out_centres(prep, "centre", "cohort.csv")
    assert labels == ["C01", "C02", "C03", "C04"]
    assert int(centre.isna().sum()) == 3
    warned = [n for n in notes if n.startswith("WARNING")]
    assert len(warned) == 1
    assert "centre C02 has only 7 events" in warned[0]
    assert any("3 patients without a centre are in every development set" in n for n in notes)


def test_pooling_names_a_centre_without_a_usable_se_and_forest_intervals_are_wald_on_the_analysis_scale() -> None:
    table = pd.DataFrame(
        {
            "centre": ["North", "South", "East"],
            "patients": [100, 80, 60],
            "events": [40, 30, 20],
            "c": [0.70, 0.65, 0.72],
            "c_se": [0.03, 0.04, 0.05],
            "slope": [1.0, 0.8, 1.1],
            "slope_se": [0.1, 0.2, float("nan")],
            "oe": [1.0, 1.2, 0.9],
            "log_oe_se": [0.1, 0.15, 0.2],
        }
    )
    with pytest.raises(UserInputError, match="centre East: its calibration slope"):
        pool_centres(table)
    # by hand: logit(0.7) ± 1.96 × 0.03 / (0.7 × 0.3), back through expit
    c = forest_table(table, "c").loc["North"]
    z = 1.959963984540054
    logit = np.log(0.7 / 0.3)
    assert c["lower"] == pytest.approx(1 / (1 + np.exp(-(logit - z * 0.03 / 0.21))), abs=1e-12)
    assert c["upper"] == pytest.approx(1 / (1 + np.exp(-(logit + z * 0.03 / 0.21))), abs=1e-12)
    oe = forest_table(table, "oe").loc["South"]
    assert (oe["lower"], oe["upper"]) == pytest.approx((1.2 * np.exp(-z * 0.15), 1.2 * np.exp(z * 0.15)), abs=1e-12)
    assert metric_keys(["St. Mary's", "St. Mary's", "C/01"]) == ["St_Mary_s", "St_Mary_s_2", "C_01"]
