"""``riskmodel update`` of a competing-risks (CIF) model: recalibration on the cloglog CIF (issue 18).

A cause-specific Cox LC model (death competing) of synthetic patients is updated on patients of a
setting whose LC baseline hazard is higher (the generator's Weibull scale 9 → 4.5 months):

* ``baseline`` (in the large): the mean updated CIF at τ equals the Aalen-Johansen CIF of the update
  patients from ``cmprsk::cuminc`` (tolerance 1e-9; the shift is solved to 1e-14), so O/E is 1 there;
  on an independent sample of 1,500 patients of the new setting O/E moves from above 1.3 to within
  0.85-1.15 (about 3 standard errors of the shift estimated on 400 patients, ~180 local failures:
  on three such samples the updated O/E was 0.93-1.03, the parent's 1.50-1.81).
* ``slope``: the slope is ``cmprsk::crr``'s coefficient of cloglog F̂(τ) (1e-5; crr's own
  convergence tolerance is 1e-6) and the updated CIF at τ is ``predict.crr``'s (1e-5).
* Both keep the CIF contract (non-decreasing, in [0, 1], CIF1 + CIF2 ≤ 1), read back identically
  from a JSON-only folder, and a tampered file is refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import riskmodel.cohort.synthetic as synthetic
from riskmodel.cohort import survival_data
from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.models.recalibrated_cif import RecalibratedCif
from riskmodel.scoring import RiskModel
from riskmodel.validation.competing import cif_observed_expected
from riskmodel.workflow.update import update_model
from tests.study_models import study_model

HAS_R = shutil.which("Rscript") is not None
HORIZONS = [6.0, 12.0]


@contextmanager
def higher_lc_baseline() -> Iterator[None]:
    """The generator with a shorter Weibull scale of LC (a higher baseline hazard), then restored."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.WEIBULL, "lc", (synthetic.WEIBULL["lc"][0], 4.5))
        yield


def _target(frame: pd.DataFrame) -> Any:
    return survival_data(frame, "lc", landmark_months=3, feature_columns=["response_3mo"], competing=True)


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("update_competing")
    parent, _ = study_model(
        synthetic.generate(400, 21),
        "lc",
        CauseSpecificCox(penalty=0.0),
        family="cox",
        horizons=HORIZONS,
        feature_columns=["response_3mo"],
        competing=True,
    )
    folder = parent.save(root / "parent")
    with higher_lc_baseline():
        new, other = synthetic.generate(400, 22), synthetic.generate(1500, 24)
    new.to_csv(root / "new.csv", index=False, float_format="%.17g")
    updates = {
        method: update_model(str(folder), root / "new.csv", method=method, out=root / method, n_boot=4, track=False)
        for method in ("baseline", "slope")
    }
    return {"root": root, "parent": parent, "new": _target(new), "other": _target(other), "updates": updates}


def _r(script: str, folder: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    frame.to_csv(folder / "d.csv", index=False, float_format="%.17g")
    (folder / "check.R").write_text(script)
    run = subprocess.run(
        ["Rscript", str(folder / "check.R"), str(folder / "d.csv")], capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr
    return {key: np.array(values, float) for key, *values in map(str.split, run.stdout.splitlines())}


def _cif_at(model: RiskModel, data: Any, horizon: float) -> np.ndarray:
    Z = model.features.transform(data.X)
    return np.asarray(model.estimator.predict_cif(Z, [horizon]).to_numpy()[:, 0], dtype=float)


@pytest.mark.skipif(not HAS_R, reason="R is not installed (.ci/run installs r-cran-cmprsk)")
def test_in_the_large_makes_the_mean_cif_the_aalen_johansen_cif_of_cmprsk(setting: dict[str, Any]) -> None:
    update = setting["updates"]["baseline"]
    estimator = update.model.estimator
    assert isinstance(estimator, RecalibratedCif)
    tau = estimator.reference_horizon_
    assert tau == 12.0  # the largest horizon with ≥ 10 update patients followed
    y = setting["new"].y
    r = _r(
        f"""suppressMessages(library(cmprsk)); d <- read.csv(commandArgs(TRUE)[1])
ci <- cuminc(d$time, d$cause, cencode = 0)
cat("aj", formatC(timepoints(ci, {tau})$est["1 1", 1], digits = 17, format = "g"), "\\n")""",
        setting["root"],
        pd.DataFrame({"time": y["time"], "cause": y["cause"]}),
    )
    updated = _cif_at(update.model, setting["new"], tau)
    assert updated.mean() == pytest.approx(float(r["aj"][0]), abs=1e-9)
    assert _cif_at(setting["parent"], setting["new"], tau).mean() < float(r["aj"][0]) / 1.3  # a real shift
    assert estimator.shift_ > 0.3


def test_in_the_large_moves_o_e_to_one_on_an_independent_sample_of_the_new_setting(setting: dict[str, Any]) -> None:
    other = setting["other"]
    for h in HORIZONS:
        parent = cif_observed_expected(other.y, _cif_at(setting["parent"], other, h), h)
        updated = cif_observed_expected(other.y, _cif_at(setting["updates"]["baseline"].model, other, h), h)
        assert parent > 1.3, h
        assert 0.85 < updated < 1.15, h
    table = setting["updates"]["baseline"].performance.set_index("key")
    assert table.at["oe_12", "updated_apparent"] == pytest.approx(1.0, abs=1e-9)
    assert table.at["oe_12", "parent"] > 1.3
    assert table.at["harrell_c", "parent"] == pytest.approx(table.at["harrell_c", "updated_apparent"], abs=1e-12)
    summary = json.loads((setting["root"] / "baseline" / "update.json").read_text())
    assert summary["meanings"]["harrell_c"].startswith("Wolbers C")


@pytest.mark.skipif(not HAS_R, reason="R is not installed (.ci/run installs r-cran-cmprsk)")
def test_the_slope_update_is_crr_on_cloglog_of_the_predicted_cif(setting: dict[str, Any]) -> None:
    update = setting["updates"]["slope"]
    estimator = update.model.estimator
    tau = estimator.reference_horizon_
    new = setting["new"]
    f = np.clip(_cif_at(setting["parent"], new, tau), 1e-12, 1 - 1e-12)
    frame = pd.DataFrame({"time": new.y["time"], "cause": new.y["cause"], "g": np.log(-np.log1p(-f))})
    r = _r(
        f"""suppressMessages(library(cmprsk)); d <- read.csv(commandArgs(TRUE)[1])
fit <- crr(d$time, d$cause, cbind(d$g), failcode = 1, cencode = 0)
p <- predict(fit, cbind(d$g[1:5]))
at <- max(which(p[, 1] <= {tau}))
cat("coef", formatC(fit$coef[1], digits = 17, format = "g"), "\\n")
cat("cif", formatC(p[at, -1], digits = 17, format = "g"), "\\n")""",
        setting["root"],
        frame,
    )
    assert estimator.slope_ == pytest.approx(float(r["coef"][0]), abs=1e-5)
    np.testing.assert_allclose(_cif_at(update.model, new, tau)[:5], r["cif"], rtol=0, atol=1e-5)
    assert update.model.lineage is not None
    assert update.model.lineage["slope"] == pytest.approx(estimator.slope_)


@pytest.mark.parametrize("method", ["baseline", "slope"])
def test_updated_cifs_keep_the_contract_and_read_back_identically(setting: dict[str, Any], method: str) -> None:
    model = setting["updates"][method].model
    folder = setting["root"] / method / "model"
    loaded = RiskModel.load(folder)
    assert isinstance(loaded.estimator, RecalibratedCif)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    assert {p.suffix for p in files} == {".json"}  # data only: no pickle
    Z = model.features.transform(setting["other"].X)
    grid = np.linspace(0.0, model.estimator.max_time_, 80)
    cif = model.estimator.cif_matrix(Z, grid)
    np.testing.assert_array_equal(loaded.estimator.cif_matrix(Z, grid), cif)
    assert (np.diff(cif, axis=2) >= -1e-12).all()  # non-decreasing in t, each cause
    assert cif.min() >= 0.0
    assert cif.max() <= 1.0
    assert (cif[0] + cif[1]).max() <= 1.0 + 1e-12
    free = model.estimator.predict_survival(Z, grid[1:]).to_numpy()
    np.testing.assert_allclose(free, 1.0 - cif[0][:, 1:] - cif[1][:, 1:], atol=1e-12)
    assert 0 <= loaded.estimator.n_capped_ <= len(setting["new"].y)
    frame = loaded.predict_frame(setting["other"].X.head(3))
    assert {"cif_6", "cif_competing_12", "event_free_12"} <= set(frame.columns)


def test_a_tampered_recalibration_file_is_refused(setting: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(setting["root"] / "slope" / "model", folder)
    path = folder / "cif_recalibration.json"
    state = json.loads(path.read_text())
    state["slope"] = -0.5
    path.write_text(json.dumps(state))
    with pytest.raises(ModelFileError):  # the manifest's digest, before any file is read
        RiskModel.load(folder)
    from pydantic import ValidationError

    from riskmodel.models.recalibrated_cif import CifRecalibrationFile

    with pytest.raises(ValidationError, match="positive slope"):  # and the file's own schema
        CifRecalibrationFile.model_validate(state)


def test_a_recalibrated_cif_model_is_not_recalibrated_again(setting: dict[str, Any], tmp_path: Path) -> None:
    folder = setting["root"] / "baseline" / "model"
    with pytest.raises(UserInputError, match="recalibrated already") as exc:
        update_model(str(folder), setting["root"] / "new.csv", method="slope", out=tmp_path / "o", track=False)
    assert "\n" not in str(exc.value)
