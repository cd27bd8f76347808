"""What makes the default ``train`` fast must not change a number: folds on two processes give the
table of folds run here, xgboost on one thread gives the trees of every thread, a bootstrap
resample's features taken from the original data's give its own, the integrated Brier score of a
CIF computed for all times at once gives the per-time scores' trapezoid, and the rule that picks
the processes keeps a large cohort in one process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from riskmodel.cohort import load_bundled, survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.features.clinical import FEATURE_SETS
from riskmodel.models import GradientBoostingSurvival
from riskmodel.models.competing import CauseSpecificCox
from riskmodel.models.competing_trees import CauseSpecificBoosting
from riskmodel.models.forest import LARGE_COHORT
from riskmodel.stats import competing_array, competing_metrics, survival_array
from riskmodel.stats.competing_metrics import cif_brier, cif_integrated_brier
from riskmodel.validation import cross_validate, validate
from riskmodel.validation.bootstrap import validation_metrics
from riskmodel.workflow.develop import PARALLEL_FROM_UNITS, local_jobs


@pytest.fixture(scope="module")
def lc_competing() -> tuple[pd.DataFrame, np.ndarray]:
    data = survival_data(load_bundled(), "lc", landmark_months=3, feature_columns=["response_3mo"], competing=True)
    return data.X, data.y


def boosting_pipeline(n_jobs: int | None = None) -> Pipeline:
    model = CauseSpecificBoosting(n_estimators=30, learning_rate=0.05, max_depth=2, n_jobs=n_jobs)
    return Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", model)])


def test_folds_on_two_processes_give_exactly_the_folds_run_here(lc_competing: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = lc_competing
    here = cross_validate(boosting_pipeline(), X, y, [6, 12], n_splits=3, n_repeats=2, seed=5, n_jobs=1)
    apart = cross_validate(boosting_pipeline(), X, y, [6, 12], n_splits=3, n_repeats=2, seed=5, n_jobs=2)
    assert len(here.folds) == 6
    pd.testing.assert_frame_equal(here.folds, apart.folds, check_exact=True)  # tolerance 0: bit for bit
    assert here.fold_warnings == apart.fold_warnings
    assert here.failures == apart.failures


def test_xgboost_on_one_thread_grows_the_trees_of_every_thread(lc_competing: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = lc_competing
    Z = ClinicalFeatures("study", landmark_months=3).fit_transform(X)
    target = survival_array(y["event"], y["time"])  # the event of interest, competing deaths censored
    default = GradientBoostingSurvival(n_estimators=40, max_depth=2).fit(Z, target)
    every_core = GradientBoostingSurvival(n_estimators=40, max_depth=2, n_jobs=-1).fit(Z, target)
    assert default.booster_.save_raw("json") == every_core.booster_.save_raw("json")  # the same trees, exactly
    np.testing.assert_array_equal(default.predict_risk(Z), every_core.predict_risk(Z))


@pytest.mark.parametrize(
    ("n_jobs", "patients", "threads"),
    [(None, 36, 1), (None, 9_999, 1), (None, 10_000, 0), (None, 10**6, 0), (1, 10**6, 1), (-1, 36, 0), (3, 36, 3)],
)
def test_xgboost_threads_follow_n_jobs_else_the_cohort_size(n_jobs: int | None, patients: int, threads: int) -> None:
    assert GradientBoostingSurvival(n_jobs=n_jobs)._threads(patients) == threads  # 0: xgboost's every core


@pytest.mark.parametrize(
    ("patients", "folds", "jobs"),
    [
        (36, 30, -1),
        (36, PARALLEL_FROM_UNITS, -1),
        (36, PARALLEL_FROM_UNITS - 1, 1),
        (LARGE_COHORT, 30, 1),
        (10**5, 5, 1),
    ],
)
def test_folds_go_to_every_core_only_for_a_small_cohort_with_enough_of_them(
    patients: int, folds: int, jobs: int
) -> None:
    assert local_jobs(patients, folds) == jobs


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_features_transform_row_by_row_so_a_resample_reuses_the_original_datas_rows(feature_set: str) -> None:
    # the bootstrap transforms the original data once per resample and takes the resample's rows of it
    data = survival_data(generate(200, seed=4), "os", landmark_months=3, feature_columns=["response_3mo"])
    idx = np.random.default_rng(0).integers(0, len(data.y), len(data.y))
    step = ClinicalFeatures(feature_set, landmark_months=3, stage_coding="onehot").fit(data.X.iloc[idx], data.y[idx])
    np.testing.assert_array_equal(step.transform(data.X)[idx], step.transform(data.X.iloc[idx]))  # exactly


def test_the_bootstrap_gives_each_resample_the_optimism_of_its_own_transform(
    lc_competing: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = lc_competing
    pipe = Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", CauseSpecificCox(0.1))])
    result = validate(pipe, X, y, [6, 12], n_resamples=3, seed=8)
    rng = np.random.default_rng(np.random.SeedSequence(8).spawn(3)[0])  # resample 0, as validate draws it
    idx = rng.integers(0, len(y), len(y))
    fitted = clone(pipe).fit(X.iloc[idx], y[idx])
    boot = validation_metrics(fitted, X.iloc[idx], y[idx], [6, 12])  # each transforming its own rows
    orig = validation_metrics(fitted, X, y, [6, 12])
    row = result.per_resample.set_index("resample").loc[0]
    for key in boot:
        np.testing.assert_equal(row[key], boot[key] - orig[key])  # tolerance 0 (NaN equals NaN)


@pytest.mark.parametrize("block", [1_000_000, 50])  # one block of times, and a block of 2 times at a time
def test_the_integrated_cif_brier_is_the_trapezoid_of_each_times_brier_to_the_bit(
    lc_competing: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    _, y = lc_competing
    train, test = y[::2], y[1::2]
    grid = np.linspace(1.0, float(test["time"].max()) - 0.5, 25)
    rng = np.random.default_rng(2)
    cif = np.sort(rng.uniform(0, 0.6, (len(test), grid.size)), axis=1)  # non-decreasing in time
    monkeypatch.setattr(competing_metrics, "GRID_BLOCK", block)
    each = [cif_brier(train, test, cif[:, k], float(t)) for k, t in enumerate(grid)]
    expected = float(np.trapezoid(each, grid) / (grid[-1] - grid[0]))
    assert cif_integrated_brier(train, test, cif, grid) == expected  # tolerance 0


def test_the_integrated_cif_brier_refuses_a_time_where_a_weight_is_one_over_zero() -> None:
    # every training patient is censored or has had an event by month 3: G(t) = 0 from then on
    train = competing_array(np.array([1, 0, 0]), np.array([1.0, 2.0, 3.0]))
    test = competing_array(np.array([1, 2, 0, 1]), np.array([1.0, 2.0, 5.0, 6.0]))
    cif = np.tile([0.1, 0.3, 0.5], (4, 1))
    with pytest.raises(ValueError, match=r"G reaches 0 before 4: IPCW weights are undefined"):
        cif_integrated_brier(train, test, cif, np.array([1.5, 2.5, 4.0]))
    assert np.isfinite(cif_integrated_brier(train, test, cif[:, :2], np.array([1.5, 2.5])))
