"""A trained Cox model's own partial effect of a dose, against R's ``rms::Predict`` on the same fit.

Reference (run live, skipped without Rscript): ``rms::cph(Surv(t, e) ~ rcs(d90, k) + age)`` with
our knots passed explicitly (``eps = 1e-12``, ``iter.max = 100``), ``Predict(…, ref.zero = TRUE)``
at a grid of doses (the partial effect against datadist's adjust-to value, the median, with its
pointwise 95% band), ``anova.rms`` (Wald, overall and non-linear) and ``lrtest`` against the fits
without the non-linear terms and without the dose. Tolerance 1e-6 absolute on the log-hazard curve,
the band and every χ² (measured: ≤ 1e-11).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import local_failure_competing
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures, DeclaredFeatures
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.reporting.model_dose import model_dose_html
from riskmodel.scoring import RiskModel
from riskmodel.stats import competing_array, survival_array
from riskmodel.validation.partial_effect import partial_effect, partial_effect_inputs

HAS_R = shutil.which("Rscript") is not None
TOL = 1e-6
GRID = [60.0, 75.0, 90.0, 104.0, 118.0, 130.0, 145.0]
DECLARATION = {
    "id": "pid",
    "covariates": [
        {"name": "d90", "column": "D90", "kind": "numeric", "unit": "Gy", "encoding": "spline", "knots": 4},
        {"name": "age", "column": "Age", "kind": "numeric", "unit": "years"},
    ],
    "endpoints": [{"name": "os", "time": "OS", "time_unit": "months", "event": "Status", "event_codes": [1]}],
}


def _data(n: int = 240, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """A dose with a plateau above ~110 Gy, an age effect, censoring and tied (quarter-month) times."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"d90": rng.normal(105, 22, n).round(1), "age": rng.normal(62, 9, n).round()})
    lp = -0.03 * (np.minimum(X["d90"], 110) - 105) + 0.02 * (X["age"] - 62)
    death = rng.exponential(12 * np.exp(-lp))
    censor = rng.uniform(2, 30, n)
    y = np.array(
        list(zip(death <= censor, np.ceil(np.minimum(death, censor) * 4) / 4, strict=True)),
        dtype=[("event", bool), ("time", float)],
    )
    return X, y


@pytest.fixture(scope="module")
def fitted() -> tuple[DeclaredFeatures, CoxPH, pd.DataFrame, np.ndarray]:
    X, y = _data()
    decl = CohortDeclaration.model_validate(DECLARATION, strict=False)
    features = DeclaredFeatures(decl.model_dump(mode="json")).fit(X)
    return features, CoxPH(penalty=0.0).fit(features.transform(X), y), X, y


R_SCRIPT = """
suppressMessages(library(rms))
d <- read.csv(commandArgs(TRUE)[1])
k <- as.numeric(strsplit(commandArgs(TRUE)[2], ",")[[1]])
g <- as.numeric(strsplit(commandArgs(TRUE)[3], ",")[[1]])
dd <- datadist(d); options(datadist = "dd")
f <- function(key, x) writeLines(paste(c(key, formatC(x, digits = 17, format = "g")), collapse = "\\t"))
s <- cph(Surv(t, e) ~ rcs(d90, k) + age, data = d, eps = 1e-12, iter.max = 100)
l <- cph(Surv(t, e) ~ d90 + age, data = d, eps = 1e-12, iter.max = 100)
n0 <- cph(Surv(t, e) ~ age, data = d, eps = 1e-12, iter.max = 100)
f("coef", coef(s))
p <- Predict(s, d90 = g, ref.zero = TRUE)
f("yhat", p$yhat); f("lower", p$lower); f("upper", p$upper)
f("reference", dd$limits["Adjust to", "d90"])
a <- anova(s)
f("wald", c(a["d90", "Chi-Square"], a[" Nonlinear", "Chi-Square"]))
f("lr", c(lrtest(s, n0)$stats["L.R. Chisq"], lrtest(s, l)$stats["L.R. Chisq"]))
"""


@pytest.mark.skipif(not HAS_R, reason="needs Rscript (R's rms)")
def test_partial_effect_and_tests_equal_rms_predict_on_the_same_fit(
    fitted: tuple[DeclaredFeatures, CoxPH, pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    features, cox, X, y = fitted
    knots = features.encoding_.knots_["d90"]
    X.assign(t=y["time"], e=y["event"].astype(int)).to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    (tmp_path / "check.R").write_text(R_SCRIPT, encoding="utf-8")
    run = subprocess.run(
        [
            "Rscript",
            str(tmp_path / "check.R"),
            str(tmp_path / "d.csv"),
            ",".join(f"{v:.17g}" for v in knots),
            ",".join(f"{v:g}" for v in GRID),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    r = {key: np.array(values, float) for key, *values in (line.split("\t") for line in run.stdout.splitlines())}
    np.testing.assert_allclose(cox.coef_, r["coef"], atol=1e-9)  # the same fit (no refit of ours is compared)
    effect = partial_effect(features, cox, X, "d90", y, grid=GRID)
    assert effect.reference == pytest.approx(float(r["reference"][0]), abs=0)
    assert effect.columns == ["d90", "d90_rcs1", "d90_rcs2"]
    assert effect.nonlinear == ["d90_rcs1", "d90_rcs2"]
    curve = effect.curve
    np.testing.assert_allclose(curve["log_hr"], r["yhat"], atol=TOL, rtol=0)
    np.testing.assert_allclose(curve["lower"], r["lower"], atol=TOL, rtol=0)
    np.testing.assert_allclose(curve["upper"], r["upper"], atol=TOL, rtol=0)
    wald = [effect.test(h, "Wald") for h in ("overall", "nonlinear")]
    lr = [effect.test(h, "LR") for h in ("overall", "nonlinear")]
    assert [w[1] for w in wald if w] == [3, 2]
    assert [t[1] for t in lr if t] == [3, 2]
    np.testing.assert_allclose([w[0] for w in wald if w], r["wald"], atol=TOL, rtol=0)
    np.testing.assert_allclose([t[0] for t in lr if t], r["lr"], atol=TOL, rtol=0)


def test_the_curve_is_the_models_own_not_a_refit(
    fitted: tuple[DeclaredFeatures, CoxPH, pd.DataFrame, np.ndarray],
) -> None:
    """A penalised model's curve comes from its shrunken coefficients: flatter than the unpenalised
    one, zero at the median, and Wald tests only (no LR test of a penalised fit)."""
    features, free, X, y = fitted
    shrunk = CoxPH(penalty=2.0).fit(features.transform(X), y)
    a = partial_effect(features, free, X, "d90", y)
    b = partial_effect(features, shrunk, X, "d90", y)
    assert np.ptp(b.curve["log_hr"]) < 0.8 * np.ptp(a.curve["log_hr"])
    at_ref = partial_effect(features, shrunk, X, "d90", grid=[b.reference])
    assert at_ref.curve["log_hr"].abs().max() < 1e-12
    assert at_ref.curve["se"].max() < 1e-12
    assert b.test("overall", "LR") is None
    assert b.test("overall", "Wald") is not None
    assert b.penalised
    assert b.notes


def test_which_inputs_get_a_curve(fitted: tuple[DeclaredFeatures, CoxPH, pd.DataFrame, np.ndarray]) -> None:
    """A spline-modelled input and the study's dose get one; a linear age does not."""
    features, _, X, _ = fitted
    assert partial_effect_inputs(features, X) == ["d90"]
    frame = generate(200, seed=2)
    study = ClinicalFeatures("study", landmark_months=3).fit(frame)
    assert partial_effect_inputs(study, frame) == ["d90_gy"]
    published = ClinicalFeatures("published", landmark_months=3).fit(frame)
    assert partial_effect_inputs(published, frame) == ["d90_gy"]  # a step at 110 Gy, drawn as the model has it


def _study_model(estimator: Any, competing: bool = False) -> tuple[RiskModel, pd.DataFrame, np.ndarray]:
    frame = generate(150, seed=6)
    features = ClinicalFeatures("preimplant").fit(frame)
    X = frame[features.input_columns()]
    if competing:
        cr = local_failure_competing(frame)
        y = competing_array(cr["event_type"].to_numpy(int), cr["time"].to_numpy(float))
    else:
        y = survival_array(frame["os_event"].to_numpy(bool), frame["os_months"].to_numpy(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(features.transform(X), y)
    model = RiskModel.from_training(
        endpoint="lc" if competing else "os",
        family=type(estimator).__name__,
        experiment="t",
        landmark_months=0,
        horizons=[6.0],
        features=features,
        estimator=estimator,
        X=X,
    )
    return model, X, y


def test_the_report_section_per_family() -> None:
    """Cox: a figure with the tests; a competing Cox: cause 1's cause-specific log hazard; a forest:
    the partial effect is shown for the Cox model."""
    cox, X, y = _study_model(CoxPH(penalty=0.0))
    section = model_dose_html(cox, X, y)
    assert "<img" in section
    assert "LR overall" in section
    assert "Wald non-linearity" not in section  # a linear dose has no non-linear terms
    csc, X, y = _study_model(CauseSpecificCox(penalty=0.0), competing=True)
    section = model_dose_html(csc, X, y)
    assert "<img" in section
    effect = partial_effect(csc.features, csc.estimator.models_[0], X, "d90_gy")
    assert effect.curve["log_hr"].iloc[-1] == pytest.approx(
        csc.estimator.models_[0].coef_[0] * (effect.curve["value"].iloc[-1] - effect.reference), rel=1e-12
    )
    forest, X, y = _study_model(SurvivalForest(n_estimators=5))
    section = model_dose_html(forest, X, y)
    assert "<img" not in section
    assert "is shown for the Cox model" in section
