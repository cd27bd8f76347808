"""A fitted model recalibrated to a new setting (``Recalibrated``: new baseline, optional slope).

References: R's ``survival`` (``coxph`` for the slope and its SE, ``basehaz`` of the offset-only
and the one-covariate models for the new baseline; skipped without Rscript), and a simulation
with a known slope. Model folders: saved and loaded without pickle for every family, and a
tampered parent refused with one line.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models import CoxPH
from riskmodel.models.recalibrated import Recalibrated
from riskmodel.scoring import RiskModel
from riskmodel.stats import step_values, survival_array
from tests.small_models import save_small_model
from tests.test_model_trees import rewrite_manifest

HAS_R = shutil.which("Rscript") is not None


def _simulated(n: int, seed: int, beta: tuple[float, float] = (0.8, -0.5)) -> tuple[pd.DataFrame, np.ndarray]:
    """Two covariates, exponential event times with log hazard x·beta, uniform censoring (no ties)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.binomial(1, 0.4, n).astype(float)})
    event_time = rng.exponential(1.0 / (0.05 * np.exp(X.to_numpy() @ np.array(beta))))
    censor = rng.uniform(5, 60, n)
    return X, survival_array(event_time <= censor, np.minimum(event_time, censor))


@pytest.fixture(scope="module")
def parent() -> CoxPH:
    X, y = _simulated(4000, 1)
    return CoxPH(penalty=0.0).fit(X, y)


R_SCRIPT = r"""
suppressMessages(library(survival))
d <- read.csv(commandArgs(TRUE)[1])
out <- function(key, value) cat(key, sprintf("%.17g", value), "\n")
f1 <- coxph(Surv(t, e) ~ lp, data = d, ties = "efron", control = coxph.control(eps = 1e-12, iter.max = 50))
out("slope", coef(f1)); out("se", sqrt(vcov(f1)[1, 1]))
# gamma fixed at 1: the coefficient held at its initial value (no iteration)
f0 <- coxph(Surv(t, e) ~ lp, data = d, init = 1, control = coxph.control(iter.max = 0))
b0 <- basehaz(f0, centered = FALSE)
b1 <- basehaz(f1, centered = FALSE)
writeLines(sprintf("%.17g,%.17g,%.17g", b0$time, b0$hazard, b1$hazard), commandArgs(TRUE)[2])
"""


@pytest.mark.skipif(not HAS_R, reason="R is not installed")
def test_slope_and_new_baselines_equal_r_coxph_and_basehaz(parent: CoxPH, tmp_path: Path) -> None:
    """γ and its SE as coxph (Efron) to 1e-6; both baselines as basehaz(centered = FALSE) to 1e-8
    (γ = 1 held by ``init = 1, iter.max = 0``; continuous times: Breslow's and Efron's baselines
    are the same without ties)."""
    X, y = _simulated(600, 2)
    lp = parent.predict_risk(X)
    pd.DataFrame({"t": y["time"], "e": y["event"].astype(int), "lp": lp}).to_csv(
        tmp_path / "d.csv", index=False, float_format="%.17g"
    )
    (tmp_path / "check.R").write_text(R_SCRIPT)
    run = subprocess.run(
        ["Rscript", str(tmp_path / "check.R"), str(tmp_path / "d.csv"), str(tmp_path / "bh.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    r = {key: float(value) for key, value in map(str.split, run.stdout.splitlines())}
    bh = pd.read_csv(tmp_path / "bh.csv", names=["time", "h0", "h1"], float_precision="round_trip")
    slope = Recalibrated(parent, "slope").fit(X, y)
    assert abs(slope.slope_ - r["slope"]) < 1e-6
    assert abs(slope.factor_se_ - r["se"]) < 1e-6
    baseline = Recalibrated(parent, "baseline").fit(X, y)
    assert baseline.slope_ == 1.0
    times = bh["time"].to_numpy(float)
    assert np.max(np.abs(step_values(baseline.event_times_, baseline.baseline_cumhaz_, times) - bh["h0"])) < 1e-8
    assert np.max(np.abs(step_values(slope.event_times_, slope.baseline_cumhaz_, times) - bh["h1"])) < 1e-8
    # and the predictions are S0_new(t)^exp(γ·lp)
    h = 20.0
    h0 = float(step_values(slope.event_times_, slope.baseline_cumhaz_, np.array([h]))[0])
    expected = np.exp(-h0 * np.exp(r["slope"] * lp))
    assert np.max(np.abs(slope.predict_survival(X, [h]).to_numpy()[:, 0] - expected)) < 1e-6


def test_slope_recovers_a_known_slope_within_its_ci(parent: CoxPH) -> None:
    """Log hazard ratios scaled by 0.6 (too flat): the slope update finds γ ≈ 1/0.6 within its 95% CI,
    and the recalibrated linear predictor is the true one (max difference < 0.05 on the true scale)."""
    flat = CoxPH(penalty=0.0).fit(*_simulated(4000, 1))
    flat.coef_ = flat.coef_ * 0.6
    X, y = _simulated(5000, 3)
    model = Recalibrated(flat, "slope").fit(X, y)
    low, high = model.factor_ - 1.96 * model.factor_se_, model.factor_ + 1.96 * model.factor_se_
    assert low < 1 / 0.6 < high, (model.factor_, model.factor_se_)
    assert model.factor_se_ < 0.05  # 5,000 patients pin it down: 1 (no update) is far outside
    truth = X.to_numpy() @ np.array([0.8, -0.5])
    recalibrated = model.predict_risk(X)
    assert np.max(np.abs((recalibrated - recalibrated.mean()) - (truth - truth.mean()))) < 0.05 * np.ptp(truth)


def test_recalibrating_again_keeps_one_layer_and_multiplies_the_slopes(parent: CoxPH) -> None:
    X, y = _simulated(800, 4)
    first = Recalibrated(parent, "slope").fit(X, y)
    X2, y2 = _simulated(800, 5)
    again = Recalibrated(first, "slope").fit(X2, y2)
    assert again.parent_ is parent
    assert again.slope_ == pytest.approx(first.slope_ * again.factor_, rel=1e-12)
    kept = Recalibrated(first, "baseline").fit(X2, y2)
    assert kept.slope_ == first.slope_
    assert kept.parent_ is parent


def test_refusals_are_one_clear_line(parent: CoxPH) -> None:
    X, y = _simulated(300, 6)
    with pytest.raises(UserInputError, match="method must be one of baseline, slope"):
        Recalibrated(parent, "intercept").fit(X, y)
    with pytest.raises(UserInputError, match="needs a fitted parent"):
        Recalibrated(CoxPH(), "baseline").fit(X, y)
    flipped = CoxPH(penalty=0.0).fit(*_simulated(2000, 1))
    flipped.coef_ = -flipped.coef_
    with pytest.raises(UserInputError, match=r"slope is -.*≤ 0.*refit"):
        Recalibrated(flipped, "slope").fit(X, y)


def test_a_competing_risks_model_is_refused_for_now() -> None:
    from riskmodel.models.competing import CauseSpecificCox
    from riskmodel.stats import competing_array

    X, y = _simulated(300, 7)
    cause = np.where(y["event"], np.where(np.arange(300) % 3 == 0, 2, 1), 0)
    target = competing_array(cause, y["time"])
    fitted = CauseSpecificCox(penalty=0.0).fit(X, target)
    with pytest.raises(UserInputError, match=r"competing-risks model .* cannot be recalibrated yet"):
        Recalibrated(fitted, "baseline").fit(X, y)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family's small model, recalibrated (baseline and slope) on new patients and saved."""
    root = tmp_path_factory.mktemp("recalibrated")
    sd = survival_data(generate(300, 8), "os", landmark_months=3, feature_columns=["response_3mo"])
    out = {}
    for kind in ("cox", "rsf", "gbm", "gbm_sksurv"):
        model = RiskModel.load(save_small_model(root / kind, kind))
        Z = model.features.transform(sd.X)
        for method in ("baseline", "slope"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator = Recalibrated(model.estimator, method, reference_horizon=12.0).fit(Z, sd.y)
            updated = RiskModel(**{**model.__dict__, "estimator": estimator})
            out[f"{kind}-{method}"] = updated.save(root / f"{kind}-{method}")
    return out


def test_save_load_gives_the_same_predictions_without_pickle(
    saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every family, both methods: S(t) and risk identical after a round trip, and pickle never runs."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle used while loading a model folder")

    patients = generate(20, 9)
    expected = {}
    for name, folder in saved.items():
        model = RiskModel.load(folder)
        assert isinstance(model.estimator, Recalibrated)
        expected[name] = model.predict_frame(patients, [6.0, 12.0])
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert "recalibration.json" in files
        assert any(f.startswith("parent/") for f in files)
        assert all(Path(f).suffix in (".json", ".skops", ".ubj", ".npz") for f in files), files
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    for name, folder in saved.items():
        again = RiskModel.load(folder).predict_frame(patients, [6.0, 12.0])
        pd.testing.assert_frame_equal(again, expected[name], check_exact=True)


def _edit_json(path: Path, key: str, value: object) -> None:
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))


def _decreasing(folder: Path) -> None:
    data = json.loads((folder / "recalibration.json").read_text())
    data["baseline_cumhaz"] = data["baseline_cumhaz"][::-1]
    (folder / "recalibration.json").write_text(json.dumps(data))


# case: (saved model, edit, words the one line must hold)
TAMPER = {
    "parent coefficients not finite": (
        "cox-slope",
        lambda f: _edit_json(f / "parent/cox.json", "coef", ["NaN"]),
        "parent/cox.json: coef[0]",
    ),
    "parent with a file riskmodel never writes": (
        "cox-baseline",
        lambda f: (f / "parent/evil.pkl").write_bytes(b"\x80\x04N."),
        "never writes: parent/evil.pkl",
    ),
    "parent with its own model.json": (
        "cox-baseline",
        lambda f: shutil.copy(f / "model.json", f / "parent"),
        "never writes: parent/model.json",
    ),
    "parent recalibrated again inside": (
        "cox-baseline",
        lambda f: shutil.copy(f / "recalibration.json", f / "parent"),
        "never writes: parent/recalibration.json",
    ),
    "negative slope": (
        "cox-slope",
        lambda f: _edit_json(f / "recalibration.json", "slope", -1.0),
        "slope and factor must be positive",
    ),
    "baseline decreasing": ("cox-slope", _decreasing, "baseline_cumhaz must be non-negative and non-decreasing"),
    "parent of another family": (
        "cox-baseline",
        lambda f: _swap_parent(f, "gbm-baseline"),
        "parent/cox.json: missing",
    ),
    "parent a symbolic link": ("cox-baseline", lambda f: _linked_parent(f), "symbolic links in a model folder: parent"),
    "parent forest with an object array": (
        "rsf-baseline",
        lambda f: _object_npz(f / "parent/forest.npz"),
        "parent/forest.npz: unreadable array (ValueError: Object arrays cannot be loaded when allow_pickle=False)",
    ),
}


SAVED: dict[str, Path] = {}


def _swap_parent(folder: Path, other: str) -> None:
    shutil.rmtree(folder / "parent")
    shutil.copytree(SAVED[other] / "parent", folder / "parent")


def _linked_parent(folder: Path) -> None:
    shutil.move(folder / "parent", folder.parent / "elsewhere")
    (folder / "parent").symlink_to(folder.parent / "elsewhere")


def _object_npz(path: Path) -> None:
    """The forest's arrays with one replaced by an object array (a pickle inside the npz)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays: dict = {k: npz[k] for k in npz.files}
    arrays["cover"] = np.array([{"x": 1}], dtype=object)
    path.unlink()
    np.savez(path, **arrays)


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_a_tampered_parent_or_recalibration_is_refused(saved: dict[str, Path], tmp_path: Path, case: str) -> None:
    """The manifest rewritten to match, as an attacker would: the family's own checks still run."""
    SAVED.update(saved)
    source, edit, words = TAMPER[case]
    folder = tmp_path / "model"
    shutil.copytree(saved[source], folder)
    edit(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {
        p.relative_to(folder).as_posix(): "" for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rewrite_manifest(folder)
    with pytest.raises(ModelFileError) as refused:
        RiskModel.load(folder)
    assert len(str(refused.value).splitlines()) == 1
    assert words in str(refused.value)
