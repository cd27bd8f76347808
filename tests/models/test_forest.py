"""The forest's speed settings: exact below the large-cohort threshold, faithful above it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from sksurv.ensemble import RandomSurvivalForest

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate, true_log_hazard
from riskmodel.errors import UserInputError
from riskmodel.features import ClinicalFeatures
from riskmodel.metrics import harrell_c
from riskmodel.models import SurvivalForest
from riskmodel.models.forest import LARGE_COHORT, bin_edges, snap_times
from riskmodel.scoring import read_model_dir, write_model_dir
from riskmodel.stats import survival_array


def design(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = generate(n, seed=seed)
    data = survival_data(frame, "os", landmark_months=3)
    X = ClinicalFeatures("preimplant").set_output(transform="pandas").fit_transform(data.X)
    eta = true_log_hazard(frame.loc[data.X.index], "os")
    return X, data.y, np.asarray(eta)


def test_snapped_times_sit_on_the_grid_and_events_never_move_earlier() -> None:
    rng = np.random.default_rng(0)
    time = rng.exponential(10, 5000)
    event = rng.random(5000) < 0.7
    grid, snapped = snap_times(event, time, 50)
    assert grid.size <= 50
    assert np.unique(snapped[event]).size <= 50
    assert set(np.unique(snapped[event])) <= set(grid)
    assert (snapped[event] >= time[event]).all()
    assert snapped.max() <= time[event].max()
    # no event crosses a grid point: each keeps its own cell
    cell = np.searchsorted(grid, time[event], side="left")
    assert (np.searchsorted(grid, snapped[event], side="left") == cell).all()


def test_bin_edges_leave_few_valued_columns_alone() -> None:
    X = np.c_[np.arange(1000.0), np.tile([0.0, 1.0], 500)]
    edges = bin_edges(X, 64)
    assert edges[1] is None
    assert edges[0] is not None
    assert edges[0].size == 64
    assert edges[0][-1] == 999.0


def test_bin_edges_come_from_the_observed_values_and_a_missing_value_stays_missing() -> None:
    X = np.c_[np.r_[np.arange(1024.0), np.nan, np.nan]]
    forest = SurvivalForest()
    forest.bin_edges_ = bin_edges(X, 128)
    # by hand: the k/128 quantile of 0..1023 (inverted CDF) is the 8k-th smallest value, 8k - 1
    np.testing.assert_array_equal(forest.bin_edges_[0], np.arange(1, 129) * 8.0 - 1)
    binned = forest._binned(np.c_[[3.0, 7.0, 8.0, 2000.0, np.nan]])[:, 0]
    np.testing.assert_array_equal(binned, [7.0, 7.0, 15.0, 1023.0, np.nan])
    assert bin_edges(np.c_[np.full(1024, np.nan)], 128) == [None]  # nothing observed: nothing to bin


def one_informative_column(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, log hazard): exponential times with log hazard x0, x1 to x3 noise, uniform censoring."""
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n), rng.integers(0, 2, n)]
    eta = X[:, 0].copy()
    t = rng.exponential(12 * np.exp(-eta))
    c = rng.uniform(0, 36, n)
    return X, survival_array(t <= c, np.minimum(t, c)), eta


@pytest.mark.parametrize("n_missing", [1, 200])
def test_missing_values_in_a_large_cohort_keep_their_column_informative(n_missing: int) -> None:
    """A missing value in the informative column must not blind the binned forest to that column.

    2,000 training patients (so binning is on), 2,000 held out; x0 carries the whole log hazard
    and gets 1 or 200 (10 %) missing values in training, and for 10 % in the held-out patients
    too. Tolerance: the binned forest's held-out C within 0.02 of the same forest unbinned on the
    same data, and above 0.5 by at least 80 % of the oracle's margin. Measured (60 trees): oracle
    0.735; no missing value 0.728; 1 missing 0.728 binned, 0.731 unbinned; 10 % missing 0.712
    binned, 0.712 unbinned. Before the fix, binned with 1 or 10 % missing: 0.511.
    """
    n = 2000
    X, y, eta = one_informative_column(2 * n, seed=0)
    rng = np.random.default_rng(1)
    X[rng.choice(n, n_missing, replace=False), 0] = np.nan
    if n_missing > 1:
        X[n + rng.choice(n, n_missing, replace=False), 0] = np.nan
    train, test = slice(0, n), slice(n, None)
    e, t = y["event"][test], y["time"][test]

    def held_out_c(max_bins: Literal["auto"] | None) -> float:
        forest = SurvivalForest(n_estimators=60, max_bins=max_bins, random_state=0).fit(X[train], y[train])
        return harrell_c(e, t, forest.predict_risk(X[test]))

    binned, unbinned = held_out_c("auto"), held_out_c(None)
    assert abs(binned - unbinned) < 0.02
    assert binned - 0.5 > 0.8 * (harrell_c(e, t, eta[test]) - 0.5)


def test_small_cohorts_get_plain_scikit_survival_exactly() -> None:
    X, y, _ = design(300, seed=3)
    y = y.copy()
    y["time"] = np.ceil(y["time"])  # whole months: 23 distinct event times, under the grid's 100
    ours = SurvivalForest(n_estimators=30, random_state=4).fit(X, y)
    assert ours.time_grid_ is None
    assert ours.bin_edges_ is None
    assert ours.max_samples_ is None
    plain = RandomSurvivalForest(n_estimators=30, min_samples_leaf=3, random_state=4).fit(X.to_numpy(), y)
    np.testing.assert_array_equal(ours.predict_risk(X), plain.predict(X.to_numpy()))


def test_a_small_cohort_with_many_event_times_gets_only_the_time_grid() -> None:
    X, y, _ = design(300, seed=3)  # 191 distinct event times: curves over all of them would be huge
    ours = SurvivalForest(n_estimators=30, random_state=4).fit(X, y)
    assert ours.time_grid_ is not None
    assert ours.time_grid_.size <= 100
    assert ours.bin_edges_ is None
    assert ours.max_samples_ is None
    exact = SurvivalForest(n_estimators=30, random_state=4, time_grid=None).fit(X, y)
    assert exact.time_grid_ is None
    # the grid costs little: the two forests rank patients almost alike
    assert np.corrcoef(ours.predict_risk(X), exact.predict_risk(X))[0, 1] > 0.97


def test_large_cohorts_switch_the_speed_settings_on_and_keep_held_out_accuracy() -> None:
    n = 2 * LARGE_COHORT
    X, y, eta = design(2 * n, seed=5)
    train, test = slice(0, n), slice(n, None)
    fast = SurvivalForest(n_estimators=60, random_state=1).fit(X.iloc[train], y[train])
    assert fast.time_grid_ is not None
    assert fast.time_grid_.size <= 100
    assert np.unique(fast.model_.unique_times_).size <= 101
    assert fast.max_samples_ == int(30 * np.sqrt(n))
    assert fast.bin_edges_ is not None
    plain = RandomSurvivalForest(n_estimators=60, min_samples_leaf=3, random_state=1, n_jobs=-1)
    plain.fit(X.iloc[train].to_numpy(), y[train])
    e, t = y["event"][test], y["time"][test]
    c_fast = harrell_c(e, t, fast.predict_risk(X.iloc[test]))
    c_plain = harrell_c(e, t, plain.predict(X.iloc[test].to_numpy()))
    c_oracle = harrell_c(e, t, eta[test])
    assert c_fast - 0.5 > (c_oracle - 0.5) / 2  # it learns most of the signal
    assert c_fast >= c_plain - 0.01
    surv = fast.predict_survival(X.iloc[test], [3, 6, 12, 18, 24]).to_numpy()
    assert ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 0).all()


def test_survival_between_grid_points_is_close_to_the_exact_forest() -> None:
    """At a horizon, the grid forest's mean S(t) stays within 0.02 of the plain forest's."""
    X, y, _ = design(3000, seed=8)
    fast = SurvivalForest(n_estimators=40, max_samples=None, max_bins=None, random_state=2).fit(X, y)
    exact = SurvivalForest(n_estimators=40, time_grid=None, max_samples=None, max_bins=None, random_state=2)
    exact.fit(X, y)
    horizons = [5.0, 10.0, 15.0]
    diff = fast.predict_survival(X, horizons).to_numpy() - exact.predict_survival(X, horizons).to_numpy()
    assert np.abs(diff.mean(axis=0)).max() < 0.02


def test_a_large_cohort_forest_survives_its_model_file(tmp_path: Path) -> None:
    X, y, _ = design(1500, seed=9)
    forest = SurvivalForest(n_estimators=5, random_state=0).fit(X, y)
    features = ClinicalFeatures("preimplant").fit(generate(50, seed=1))
    meta = {
        "endpoint": "os",
        "family": "rsf",
        "experiment": "large",
        "landmark_months": 0.0,
        "horizons": [12.0],
        "numeric_ranges": {},
        "categories": {},
        "risk_cutoffs": [],
    }
    folder = write_model_dir(tmp_path / "model", meta=meta, features=features, estimator=forest)
    loaded = read_model_dir(folder)[2]
    # equal up to the order in which the threads sum the trees
    np.testing.assert_allclose(loaded.predict_risk(X), forest.predict_risk(X), rtol=1e-12)


def test_low_memory_forest_ranks_but_refuses_curves() -> None:
    X, y, _ = design(300, seed=10)
    forest = SurvivalForest(n_estimators=5, low_memory=True).fit(X, y)
    assert np.isfinite(forest.predict_risk(X)).all()
    with pytest.raises(UserInputError, match="low_memory"):
        forest.predict_survival(X, [6])


def test_bad_speed_settings_are_user_errors() -> None:
    X, y, _ = design(200, seed=11)
    with pytest.raises(UserInputError, match="time_grid"):
        SurvivalForest(time_grid=1).fit(X, y)
