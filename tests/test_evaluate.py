"""Metrics against independent references: lifelines, and the published formulas written as loops."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from riskmodel.metrics import EvaluationWindow, harrell_c, survival_metrics
from riskmodel.stats import kaplan_meier
from riskmodel.validation import cross_validate


def survival_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous (tie-free) times, ~60 % events, and a risk score with real signal."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-0.8 * x) * 10)
    t_cens = rng.uniform(2, 30, n)
    y = np.empty(n, dtype=[("event", "?"), ("time", "<f8")])
    y["event"], y["time"] = t_event <= t_cens, np.minimum(t_event, t_cens)
    return y, x + rng.normal(scale=0.5, size=n), x


def censoring_survival(y: np.ndarray):  # type: ignore[no-untyped-def]
    """G(t) = P(C > t), by lifelines' Kaplan-Meier of the censoring times."""
    km = KaplanMeierFitter().fit(y["time"], ~y["event"])
    return lambda t: float(km.survival_function_at_times(t).iloc[0])


def uno_c_loop(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, tau: float) -> float:
    G = censoring_survival(y_train)
    num = den = 0.0
    for i in range(len(y_test)):
        if not y_test["event"][i] or y_test["time"][i] >= tau:
            continue
        w = G(y_test["time"][i]) ** -2
        for j in range(len(y_test)):
            if y_test["time"][j] > y_test["time"][i]:
                den += w
                num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    return num / den


def td_auc_loop(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, t: float) -> float:
    G = censoring_survival(y_train)
    cases = [i for i in range(len(y_test)) if y_test["event"][i] and y_test["time"][i] <= t]
    controls = [j for j in range(len(y_test)) if y_test["time"][j] > t]
    num = den = 0.0
    for i in cases:
        w = 1 / G(y_test["time"][i])
        for j in controls:
            den += w
            num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    return num / den


def brier_loop(y_train: np.ndarray, y_test: np.ndarray, surv: np.ndarray, t: float) -> float:
    G = censoring_survival(y_train)
    total = 0.0
    for i in range(len(y_test)):
        ti, ei = y_test["time"][i], y_test["event"][i]
        if ti <= t and ei:
            total += surv[i] ** 2 / G(ti)
        elif ti > t:
            total += (1 - surv[i]) ** 2 / G(t)
    return total / len(y_test)


def test_harrell_c_matches_lifelines() -> None:
    y, risk, _ = survival_set(300, 1)
    # lifelines ranks predicted *survival times*, so a risk score enters negated
    assert harrell_c(y["event"], y["time"], risk) == pytest.approx(
        concordance_index(y["time"], -risk, y["event"]), abs=1e-12
    )


def test_harrell_c_with_tied_risks_matches_lifelines() -> None:
    y, risk, _ = survival_set(200, 2)
    rounded = np.round(risk)  # many ties, each counted as one half
    assert harrell_c(y["event"], y["time"], rounded) == pytest.approx(
        concordance_index(y["time"], -rounded, y["event"]), abs=1e-12
    )


def test_kaplan_meier_matches_lifelines() -> None:
    y, _, _ = survival_set(150, 3)
    t, s = kaplan_meier(y["time"], y["event"])
    ref = KaplanMeierFitter().fit(y["time"], y["event"]).survival_function_at_times(t).to_numpy()
    np.testing.assert_allclose(s, ref, rtol=1e-12)


def test_uno_c_td_auc_and_ibs_match_the_formulas() -> None:
    y_train, _, _ = survival_set(200, 4)
    y_test, risk, x = survival_set(120, 5)
    horizons = [4.0, 8.0]
    # a survival model consistent with the risk: exponential with hazard exp(0.8 x) / 10
    surv = lambda grid: np.exp(-np.outer(np.exp(0.8 * x), np.asarray(grid)) / 10)  # noqa: E731
    got = survival_metrics(y_train, y_test, risk, surv, horizons)
    assert got["uno_c"] == pytest.approx(uno_c_loop(y_train, y_test, risk, tau=8.0), abs=1e-6)
    for h in horizons:
        assert got[f"td_auc_{h:g}"] == pytest.approx(td_auc_loop(y_train, y_test, risk, h), abs=1e-6)
    grid = np.asarray(EvaluationWindow.from_data(y_train, horizons).grid)  # the window's grid, up to τ = 8
    assert grid[-1] == 8.0
    briers = [brier_loop(y_train, y_test, surv([t])[:, 0], t) for t in grid]
    ibs = np.trapezoid(briers, grid) / (grid[-1] - grid[0])
    assert got["ibs"] == pytest.approx(ibs, abs=1e-6)
    assert got["ibs"] < got["ibs_km"]  # a model with signal beats the null model


def test_undefined_metrics_are_nan_not_errors() -> None:
    y_train, _, _ = survival_set(100, 6)
    y_test, risk, _ = survival_set(10, 7)
    beyond = float(y_test["time"].max()) + 1.0  # no test patient is followed this long
    window = EvaluationWindow((beyond,), beyond, tuple(np.linspace(0.1, beyond, 5)))
    got = survival_metrics(y_train, y_test, risk, lambda g: np.ones((10, len(g))), window)
    assert math.isnan(got[f"td_auc_{beyond:g}"])
    assert math.isnan(got["ibs"])  # the window's τ, not a shorter one: undefined on this test set
    assert math.isfinite(got["harrell_c"])


def test_aalen_johansen_matches_lifelines_without_ties() -> None:
    from lifelines import AalenJohansenFitter

    from riskmodel.stats import aalen_johansen

    rng = np.random.default_rng(8)
    time = rng.exponential(10, 200)  # continuous: no ties, so lifelines does not jitter
    kind = rng.choice([0, 1, 2], 200, p=[0.3, 0.4, 0.3])
    t, cif = aalen_johansen(time, kind, cause=1)
    ref = AalenJohansenFitter(calculate_variance=False).fit(time, kind, event_of_interest=1).cumulative_density_
    np.testing.assert_allclose(cif, ref.iloc[:, 0].reindex(t, method="ffill").to_numpy(), atol=1e-12)
    km_t, km_s = kaplan_meier(time, kind == 1)  # deaths of the other cause censored
    from riskmodel.stats import step_values

    assert (cif <= 1 - step_values(km_t, km_s, t, before=1.0) + 1e-12).all()  # 1 - KM overstates


def test_cross_validation_folds_follow_the_events() -> None:
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from riskmodel.errors import UserInputError
    from riskmodel.models import CoxPH
    from riskmodel.validation import cross_validate

    y, risk, _ = survival_set(40, 9)
    X = pd.DataFrame({"x": risk})
    pipe = make_pipeline(FunctionTransformer(), CoxPH())  # a features step, then the model
    y_few = y.copy()
    y_few["event"] = False
    y_few["event"][:2] = True  # two events: at most 2 stratified folds
    cv = cross_validate(pipe, X, y_few, [4.0], n_splits=3, n_repeats=1)
    assert cv.n_splits == 2
    assert len(cv.folds) == 2
    y_few["event"][1] = False  # one event: no stratified split can exist
    with pytest.raises(UserInputError, match="needs at least 2 events and 2 censored patients"):
        cross_validate(pipe, X, y_few, [4.0], n_splits=3, n_repeats=1)
    assert cross_validate(pipe, X, y, [4.0], n_splits=3, n_repeats=2).n_splits == 3


def _lc() -> tuple[pd.DataFrame, np.ndarray]:
    from riskmodel.cohort import load_bundled, survival_data

    data = survival_data(load_bundled(), "lc", landmark_months=3, feature_columns=["response_3mo"])
    return data.X, data.y


def _spy_on_tau(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[tuple[float, ...]]]:
    """Record the τ of every Uno's C and the grid of every IBS that riskmodel computes."""
    import riskmodel.metrics as metrics

    taus: list[float] = []
    grids: list[tuple[float, ...]] = []
    uno, brier = metrics.uno_c, metrics.integrated_brier

    def uno_spy(
        y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, tau: float | None = None, **kw: Any
    ) -> float:
        taus.append(float(tau))  # type: ignore[arg-type]
        return uno(y_train, y_test, risk, tau, **kw)

    def brier_spy(y_train: np.ndarray, y_test: np.ndarray, survival: np.ndarray, grid: np.ndarray, **kw: Any) -> float:
        grids.append(tuple(np.round(grid, 12)))
        return brier(y_train, y_test, survival, grid, **kw)

    monkeypatch.setattr(metrics, "uno_c", uno_spy)
    monkeypatch.setattr(metrics, "integrated_brier", brier_spy)
    return taus, grids


def test_one_tau_and_one_ibs_grid_in_every_fold_and_resample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: LC folds used τ = 12 or 6 depending on the fold's training follow-up."""
    from sklearn.pipeline import Pipeline

    from riskmodel.features import ClinicalFeatures
    from riskmodel.models import CoxPH
    from riskmodel.validation import validate

    X, y = _lc()
    pipe = Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", CoxPH())])
    window = EvaluationWindow.from_data(y, [6, 12, 24], min_at_risk=5)  # 7 LC patients followed at 6 months
    taus, grids = _spy_on_tau(monkeypatch)
    cross_validate(pipe, X, y, window, n_splits=3, n_repeats=5, seed=1)
    validate(pipe, X, y, window, n_resamples=20, seed=1)
    assert len(taus) > 30
    assert set(taus) == {window.tau} == {6.0}
    assert grids
    assert set(grids) == {tuple(np.round(window.grid, 12))}


def test_a_bad_parameter_stops_cross_validation_and_the_bootstrap() -> None:
    """Before: CoxPH(penalty=-1) gave "6 of 6 failed fits" and NaN metrics."""
    from sklearn.pipeline import Pipeline

    from riskmodel.errors import UserInputError
    from riskmodel.features import ClinicalFeatures
    from riskmodel.models import CoxPH
    from riskmodel.validation import validate

    X, y = _lc()
    pipe = Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", CoxPH(penalty=-1))])
    with pytest.raises(UserInputError, match="penalty must be a number"):
        cross_validate(pipe, X, y, [6], n_splits=3, n_repeats=2)
    fitted = Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", CoxPH())]).fit(X, y)
    with pytest.raises(UserInputError, match="penalty must be a number"):
        validate(pipe, X, y, [6], n_resamples=4, fitted=fitted)  # each resample refits the bad pipeline
