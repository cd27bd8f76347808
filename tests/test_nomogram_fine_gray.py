"""The nomogram of a Fine-Gray model (the CIF of the event of interest) against R's ``cmprsk::crr``.

Reference (run live, skipped without Rscript): ``cmprsk::crr`` refitted on the same design (a spline
term as ``rms::rcspline.eval(x, knots, inclx = TRUE)`` with our knots, Harrell's basis as ``rcs``),
and in R, from crr's own coefficients, independently of riskmodel's scaling code:

* each predictor value's points by the ``rms::nomogram`` convention,
  ``points = 100 · (βx − min βx) / (largest range of βx over the predictors)``;
* the CIF at given total points T: the uncentred linear predictor Σ min βx + T · range / 100, put
  into ``predict.crr`` (a covariate row with that x'β), read at the horizon (the last of crr's
  event times at or before it: the right-continuous step).

Cases: a declared cohort with a spline, a linear, a binary and a three-level categorical covariate,
and the bundled LC endpoint (death competing) at the 3-month landmark. Tolerances: coefficients
1e-6 (crr's convergence, gtol 1e-12: measured ≤ 5e-13), points 0.5 (the issue's; measured ≤ 4e-11,
also held to 1e-8), the CIF 1e-6 (measured ≤ 1.3e-13 over CIFs from 0.09 to 0.99: both are
1 − exp(−Λ₁₀(h)·e^lp) of the same right-continuous step baseline at the same event times, so no
step convention differs).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import Cohort
from riskmodel.features.labels import feature_input
from riskmodel.models import CauseSpecificCox
from riskmodel.models.fine_gray import FineGray
from riskmodel.reporting.nomogram import Nomogram, nomogram_table
from riskmodel.scoring import RiskModel
from riskmodel.stats import competing_array
from tests.r_session import HAS_R, r_cases, rscript
from tests.study_models import declared_model, study_model

POINTS_TOL = 0.5
CIF_TOL = 1e-6
COEF_TOL = 1e-6

DECLARATION = {
    "id": "pid",
    "covariates": [
        {"name": "age", "column": "Age", "kind": "numeric", "unit": "years", "encoding": "spline", "knots": 4},
        {"name": "dose", "column": "Dose", "kind": "numeric", "unit": "Gy"},
        {"name": "smoker", "column": "Smoker", "kind": "binary", "levels": ["no", "yes"]},
        {"name": "arm", "column": "Arm", "kind": "categorical", "levels": ["A", "B", "C"], "reference": "A"},
    ],
    "endpoints": [
        {
            "name": "lc",
            "label": "local failure",
            "time": "T",
            "time_unit": "months",
            "event": "Status",
            "event_codes": [1],
            "competing_codes": [2],
        }
    ],
}


def _declared_model() -> tuple[RiskModel, pd.DataFrame, Any]:
    """Event 1 with a U-shaped age effect, a dose, smoking and arm effects; event 2 competing."""
    rng = np.random.default_rng(20)
    n = 300
    X = pd.DataFrame(
        {
            "age": rng.normal(62, 10, n).round(),
            "dose": rng.uniform(50, 150, n).round(1),
            "smoker": rng.integers(0, 2, n).astype(float),
            "arm": rng.choice(["A", "B", "C"], n),
        }
    )
    lp = 0.002 * (X["age"] - 62) ** 2 - 0.01 * (X["dose"] - 100) + 0.5 * X["smoker"] - 0.4 * (X["arm"] == "B")
    t1 = rng.exponential(30 * np.exp(-lp))
    t2 = rng.exponential(50.0, n)
    censor = rng.uniform(5, 60, n)
    time = np.minimum.reduce([t1, t2, censor])
    cause = np.where(time == t1, 1, np.where(time == t2, 2, 0))
    y = competing_array(cause, time)
    return declared_model(DECLARATION, X, y, FineGray(), endpoint="lc", family="fine_gray"), X, y


def _bundled_model(bundled: Cohort) -> tuple[RiskModel, pd.DataFrame, Any]:
    model, sd = study_model(
        bundled, "lc", FineGray(), family="fine_gray", horizons=[6.0, 12.0], competing=True, experiment="default"
    )
    return model, sd.X, sd.y


@pytest.fixture(scope="module")
def cases(bundled: Cohort) -> dict[str, tuple[RiskModel, pd.DataFrame, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"declared": _declared_model(), "lc": _bundled_model(bundled)}


def _columns_in_axis_order(model: RiskModel, nom: Nomogram) -> list[int]:
    """The model's feature indices in the order R's design lists them (axis by axis)."""
    names = [str(n) for n in model.features.get_feature_names_out()]
    return [j for a in nom.axes for j, n in enumerate(names) if feature_input(n, model.input_columns) == a.input]


def _matrix(values: np.ndarray) -> str:
    flat = ", ".join(f"{v:.17g}" for v in np.asarray(values, dtype=float).ravel(order="F"))
    return f"matrix(c({flat}), ncol = {values.shape[1]})"


def _design(model: RiskModel, X: pd.DataFrame, nom: Nomogram) -> tuple[pd.DataFrame, list[str], list[str]]:
    """R's data (one column per feature, a spline input's raw values), each axis's columns of the
    covariate matrix as R code, and each axis's values as an R matrix (the spline basis by R)."""
    names = [str(n) for n in model.features.get_feature_names_out()]
    Z = np.asarray(model.features.transform(X), dtype=float)
    data: dict[str, np.ndarray] = {}
    cols, axes = [], []
    for k, axis in enumerate(nom.axes):
        own = [j for j, n in enumerate(names) if feature_input(n, model.input_columns) == axis.input]
        if axis.scale == "spline":
            knots = "c(" + ", ".join(f"{v:.17g}" for v in model.features.encoding_.knots_[axis.input]) + ")"
            data[f"v{k}"] = X[axis.input].to_numpy(float)
            cols.append(f"rcspline.eval(d$v{k}, {knots}, inclx = TRUE)")
            axes.append(
                f"v{k} = rcspline.eval({_matrix(np.asarray(axis.values, float)[:, None])}, {knots}, inclx = TRUE)"
            )
            continue
        rows = pd.concat([X.iloc[[0]]] * len(axis.values), ignore_index=True)
        rows[axis.input] = [v[0] if isinstance(v, list) else v for v in axis.values]
        at = np.asarray(model.features.transform(rows), dtype=float)[:, own]
        for c, j in enumerate(own):
            data[f"v{k}_{c}"] = Z[:, j]
        cols.append("cbind(" + ", ".join(f"d$v{k}_{c}" for c in range(len(own))) + ")")
        axes.append(f"v{k} = {_matrix(at)}")
    return pd.DataFrame(data), cols, axes


def _r_script(case: str, csv: Path, nom: Nomogram, cols: list[str], axes: list[str]) -> str:
    totals = sorted({*nom.total_ticks(), *[t for h in nom.horizons for _, t in nom.probability_ticks(h)]})
    return f"""
d <- read.csv("{csv}")
X <- cbind({", ".join(cols)})
fit <- crr(d$t, d$cause, X, failcode = 1, cencode = 0, gtol = 1e-12)
b <- fit$coef
axes <- list({", ".join(axes)})
xb <- list(); start <- 0
for (v in names(axes)) {{
  m <- axes[[v]]; xb[[v]] <- drop(m %*% b[start + seq_len(ncol(m))]); start <- start + ncol(m)
}}
widest <- max(sapply(xb, function(x) max(x) - min(x)))
out <- function(key, x) cat("{case}", key, formatC(x, digits = 15, format = "g"), "\\n", sep = "\\t")
out("coef", b)
for (v in names(xb)) out(v, 100 * (xb[[v]] - min(xb[[v]])) / widest)
total <- c({", ".join(f"{t:.17g}" for t in totals)})
lp <- sum(sapply(xb, min)) + total * widest / 100
cov1 <- cbind(lp / b[1], matrix(0, length(lp), length(b) - 1))
cif <- predict(fit, cov1)
out("total", total)
for (h in c({", ".join(f"{h:g}" for h in nom.horizons)})) {{
  k <- max(c(0, which(cif[, 1] <= h)))
  out(paste0("cif", h), if (k == 0) rep(0, length(lp)) else cif[k, -1])
}}
"""


@pytest.fixture(scope="module")
def r_crr(cases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    """One R session for both cases: {case: {key: values}}."""
    if not HAS_R:
        pytest.skip("R is not installed (.ci/run installs r-cran-cmprsk and r-cran-rms)")
    folder = tmp_path_factory.mktemp("fg_nomogram_r")
    script = ["suppressMessages({library(cmprsk); library(rms)})"]
    for case, (model, X, y) in cases.items():
        nom = nomogram_table(model)
        data, cols, axes = _design(model, X, nom)
        data.insert(0, "cause", y["cause"].astype(int))
        data.insert(0, "t", y["time"])
        csv = folder / f"{case}.csv"
        data.to_csv(csv, index=False, float_format="%.17g")
        script.append(_r_script(case, csv, nom, cols, axes))
    return r_cases(rscript(folder, "fg_nomogram.R", "\n".join(script)))


@pytest.mark.parametrize("case", ["declared", "lc"])
def test_points_and_cif_equal_cmprsk_crr_computed_in_r(
    case: str, cases: dict[str, Any], r_crr: dict[str, dict[str, np.ndarray]]
) -> None:
    model = cases[case][0]
    nom = nomogram_table(model)
    r = r_crr[case]
    ours = np.asarray(model.estimator.cause_models_[0].coef)[_columns_in_axis_order(model, nom)]
    np.testing.assert_allclose(ours, r["coef"], atol=COEF_TOL, rtol=0)
    assert any(a.scale == "spline" for a in nom.axes) == (case == "declared")
    for k, axis in enumerate(nom.axes):
        np.testing.assert_allclose(axis.points, r[f"v{k}"], atol=POINTS_TOL, rtol=0, err_msg=axis.label)
        assert np.max(np.abs(np.subtract(axis.points, r[f"v{k}"]))) < 1e-8  # measured: exact up to rounding
    for h in nom.horizons:
        cif = nom.probability(r["total"], h)
        np.testing.assert_allclose(cif, r[f"cif{h:g}"], atol=CIF_TOL, rtol=0, err_msg=f"CIF at {h:g} months")
        assert 0 < r[f"cif{h:g}"].max() < 1  # the check reaches probabilities that are not trivially 0 or 1


def test_total_points_give_the_models_own_cif(cases: dict[str, Any]) -> None:
    """A patient's points added up from the axes give the model's CIF of the event (predict_cif of
    the model's own features of that patient)."""
    model, X, _ = cases["declared"]
    nom = nomogram_table(model)
    for row in range(5):
        patient = X.iloc[[row]].copy()
        total = 0.0
        for axis in nom.axes:
            if axis.scale in ("linear", "spline"):  # a value on the axis: the tick nearest the patient's
                patient[axis.input] = min(axis.values, key=lambda v: abs(v - patient[axis.input].iloc[0]))
            value = patient[axis.input].iloc[0]
            hit = [i for i, v in enumerate(axis.values) if v == value or (isinstance(v, list) and value in v)]
            total += axis.points[hit[0]]
        cif = model.estimator.predict_cif(model.features.transform(patient), [12.0, 24.0]).to_numpy()[0]
        assert nom.probability(total, 12.0) == pytest.approx(cif[0], abs=1e-9)
        assert nom.probability(total, 24.0) == pytest.approx(cif[1], abs=1e-9)


def test_axes_are_cifs_of_the_event_in_the_endpoints_words_never_survival(cases: dict[str, Any]) -> None:
    nom = nomogram_table(cases["lc"][0])
    assert nom.outcome == "cif"
    assert nom.axis_label(12.0) == "CIF of local failure at 12 months (death competing)"
    assert "not drawn" in nom.caption
    assert "separate model" in nom.caption
    table = nom.points_table()
    assert "CIF of local failure at 6 months (death competing)" in set(table["axis"])
    assert not any("S(" in a or "surviv" in a.lower() for a in table["axis"])
    with pytest.raises(ValueError, match="CIF"):
        nom.survival(50.0, 12.0)
    # the CIF rises with the points, and the ticks land where the CIF equals them
    for h in nom.horizons:
        ticks = nom.probability_ticks(h)
        assert ticks, h
        for p, t in ticks:
            assert float(nom.probability(t, h)) == pytest.approx(p, abs=1e-12)
        assert np.all(np.diff([t for _, t in ticks]) < 0) == (ticks[0][0] > ticks[-1][0])


@pytest.fixture(scope="module")
def saved(cases: dict[str, Any], bundled: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fg_saved")
    cs, _ = study_model(
        bundled,
        "lc",
        CauseSpecificCox(penalty=0.1),
        family="cox",
        horizons=[6.0, 12.0],
        competing=True,
        experiment="default",
        quiet=True,
    )
    return {"fg": cases["lc"][0].save(folder / "fg"), "cs_cox": cs.save(folder / "cs")}


def test_cli_draws_the_fine_gray_nomogram_and_its_points_table(saved: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fg.svg"
    result = CliRunner().invoke(app, ["nomogram", "--model", str(saved["fg"]), "--horizons", "6,12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Fine-Gray model" in result.output
    text = out.read_text(encoding="utf-8")
    assert "CIF of local failure at 12 months (death competing)" in text
    assert "is not drawn: it comes from a separate model" in text
    assert "probability" not in text.replace("CIF", "")  # no survival-probability axis
    table = pd.read_csv(tmp_path / "fg_points.csv")
    assert {
        "D90 (Gy)",
        "total points",
        "linear predictor",
        "CIF of local failure at 6 months (death competing)",
    } <= set(table["axis"])


def test_cli_refuses_the_cause_specific_cox_model_in_one_line(saved: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["nomogram", "--model", str(saved["cs_cox"]), "--out", str(tmp_path / "n.svg")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Aalen-Johansen" in lines[0]
    assert "fine_gray" in lines[0]
    assert "competing_risks: false" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "n.svg").exists()


def test_model_report_section_of_a_fine_gray_model(saved: dict[str, Path]) -> None:
    from riskmodel.reporting.nomogram_plot import nomogram_html

    section = nomogram_html(RiskModel.load(saved["fg"]))
    assert "<img" in section
    assert "cumulative incidence of local failure" in section
    assert "is not drawn: it comes from a separate model" in section
    assert "CIF of local failure at 12 months (death competing)" in section
    refused = nomogram_html(RiskModel.load(saved["cs_cox"]))
    assert "<img" not in refused
    assert "Aalen-Johansen" in refused
