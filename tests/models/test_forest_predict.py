"""The forest's own prediction loop gives scikit-survival's predictions bit for bit.

``SurvivalForest._ensemble`` walks the trees itself (no per-tree input checks, blocks of patients
on every core for a large batch). The reference is scikit-survival's ``RandomSurvivalForest`` on
one core (``n_jobs=1``: the trees added in the forest's order), on the same binned float32
features; the tolerance is zero (``np.array_equal``), also with missing values (NaN) and for a
batch above the threaded threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from riskmodel.models import SurvivalForest
from riskmodel.models.forest import LARGE_COHORT, PREDICT_BLOCK
from riskmodel.stats import survival_array


def cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[rng.random(n) < 0.1, 2] = np.nan  # missing values take the side each split stored
    hazard = np.exp(X[:, 0] - 0.5 * X[:, 1])
    time = np.round(np.minimum(rng.exponential(10 / hazard), rng.uniform(0, 30, n)), 1) + 0.1
    return X, survival_array(rng.random(n) < 0.7, time)


def sksurv_reference(
    forest: SurvivalForest, fit: tuple[np.ndarray, np.ndarray], X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(risk, cumulative hazard, S) by scikit-survival itself, one core, on the forest's binned
    features: its forest grown in one call on the data ``fit`` (the forest keeps only compact trees)."""
    model = clone(forest).sksurv_forest(*fit)
    Xb = np.asarray(forest._binned(X), dtype=np.float32)
    return (
        model.predict(Xb),
        model.predict_cumulative_hazard_function(Xb, return_array=True),
        model.predict_survival_function(Xb, return_array=True),
    )


@pytest.mark.parametrize(
    ("n", "settings"),
    [(36, {}), (400, {"time_grid": None}), (1500, {})],  # exact small cohort; many times, no grid; the fast path
)
def test_risk_cumulative_hazard_and_survival_equal_scikit_survival_bit_for_bit(n: int, settings: dict) -> None:
    X, y = cohort(n, seed=n)
    forest = SurvivalForest(n_estimators=15, random_state=1, **settings).fit(X, y)
    X_new, _ = cohort(300, seed=n + 1)
    risk, cumhaz, surv = sksurv_reference(forest, (X, y), X_new)
    times, ours = forest.cumulative_hazard_matrix(X_new)
    assert np.array_equal(forest.predict_risk(X_new), risk)
    assert np.array_equal(ours, cumhaz)
    assert np.array_equal(times, forest.model_.unique_times_)
    grid = forest.model_.unique_times_
    assert np.array_equal(forest.predict_survival(X_new, grid).to_numpy(), surv)


def test_a_batch_above_the_threaded_threshold_gives_the_same_bits_in_blocks() -> None:
    X, y = cohort(2000, seed=7)
    forest = SurvivalForest(n_estimators=4, random_state=2).fit(X, y)
    n_new = 10 * LARGE_COHORT + PREDICT_BLOCK // 2 + 1  # threaded, with a short last block
    X_new, _ = cohort(n_new, seed=8)
    risk, cumhaz, _ = sksurv_reference(forest, (X, y), X_new)
    assert np.array_equal(forest.predict_risk(X_new), risk)
    assert np.array_equal(forest.cumulative_hazard_matrix(X_new)[1], cumhaz)
    # a patient's prediction does not depend on the batch it comes in
    assert np.array_equal(forest.predict_risk(X_new[-5:]), risk[-5:])


def test_an_empty_batch_gives_empty_predictions() -> None:
    X, y = cohort(100, seed=3)
    forest = SurvivalForest(n_estimators=3, random_state=0).fit(X, y)
    assert forest.predict_risk(X[:0]).shape == (0,)
    assert forest.cumulative_hazard_matrix(X[:0])[1].shape == (0, forest.model_.unique_times_.size)


def test_the_competing_forest_cif_is_the_product_limit_of_scikit_survivals_full_curves() -> None:
    """CIF_k(t) = Σ_{s ≤ t} S(s−)·ΔH_k(s), S = Π(1 − ΔH_1 − ΔH_2), written out here as a loop over
    the union of the two forests' times, from scikit-survival's whole cumulative-hazard curves (the
    model reads only the times up to the last horizon). Tolerance 1e-12 (summation order)."""
    from riskmodel.models.competing_trees import CauseSpecificForest
    from riskmodel.stats import competing_array

    rng = np.random.default_rng(11)
    X, y = cohort(1200, seed=11)
    cause = np.where(y["event"], rng.integers(1, 3, len(y)), 0)
    model = CauseSpecificForest(n_estimators=6, random_state=3).fit(X, competing_array(cause, y["time"]))
    X_new, _ = cohort(40, seed=12)
    horizons = np.array([2.0, 7.5, 15.0])
    curves = []
    for k, forest in enumerate(model.models_, start=1):
        times = forest.model_.unique_times_
        cumhaz = sksurv_reference(forest, (X, survival_array(cause == k, y["time"])), X_new)[1]
        curves.append((times, np.diff(cumhaz, axis=1, prepend=0.0)))
    grid = np.union1d(curves[0][0], curves[1][0])
    expected = np.zeros((2, len(X_new), horizons.size))
    for i in range(len(X_new)):
        surv, cif = 1.0, np.zeros(2)
        for t in grid:
            dh = [d[i, np.searchsorted(ts, t)] if t in ts else 0.0 for ts, d in curves]
            cif += surv * np.asarray(dh)
            surv *= 1.0 - sum(dh)
            expected[:, i, :] = np.where(horizons[None, :] >= t, cif[:, None], expected[:, i, :])
    assert np.abs(model.cif_matrix(X_new, horizons) - expected).max() < 1e-12


def test_in_sample_calibration_reads_every_horizon_from_one_prediction_with_the_same_values() -> None:
    """``by_horizon`` (one prediction at every horizon) gives each horizon's one-horizon prediction
    exactly, and leaves out only a horizon the model refuses."""
    from riskmodel.validation.in_sample import by_horizon

    X, y = cohort(300, seed=5)
    forest = SurvivalForest(n_estimators=5, random_state=0).fit(X, y)
    horizons = [1.0, 4.0, 9.0]
    joint = by_horizon(lambda t: forest.predict_survival(X, t).to_numpy(), horizons)
    for h in horizons:
        assert np.array_equal(joint[h], forest.predict_survival(X, [h]).to_numpy()[:, 0])
    beyond = float(y["time"].max()) + 100.0
    assert list(by_horizon(lambda t: forest.predict_survival(X, t).to_numpy(), [4.0, beyond])) == [4.0]
