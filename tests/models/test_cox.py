"""Cox against lifelines' CoxPHFitter, an independent implementation, on the same design matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.errors import RiskModelWarning
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH


def design(cohort: Cohort | pd.DataFrame, endpoint: str) -> tuple[pd.DataFrame, np.ndarray]:
    data = survival_data(cohort, endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
    X = ClinicalFeatures("study", landmark_months=3).set_output(transform="pandas").fit_transform(data.X)
    return X, data.y


def lifelines_fit(X: pd.DataFrame, y: np.ndarray, **kwargs: float):  # type: ignore[no-untyped-def]
    """lifelines fitted to convergence: its default stopping rule can leave a gradient of ~1e-2."""
    from lifelines import CoxPHFitter

    return CoxPHFitter(**kwargs).fit(
        X.assign(T=y["time"], E=y["event"]), "T", "E", fit_options={"precision": 1e-12, "max_steps": 500}
    )


def test_hr_table_matches_lifelines_on_the_bundled_cohort(bundled: Cohort) -> None:
    X, y = design(bundled, "os")
    ours = CoxPH(penalty=0).fit(X, y).hazard_ratios_
    ref = lifelines_fit(X, y).summary
    tol = {"atol": 1e-4, "rtol": 1e-4}
    np.testing.assert_allclose(ours["coef"], ref["coef"], **tol)
    np.testing.assert_allclose(ours["hr"], ref["exp(coef)"], **tol)
    np.testing.assert_allclose(ours["se"], ref["se(coef)"], **tol)
    np.testing.assert_allclose(ours["hr_lower_95"], ref["exp(coef) lower 95%"], **tol)
    np.testing.assert_allclose(ours["hr_upper_95"], ref["exp(coef) upper 95%"], **tol)
    np.testing.assert_allclose(ours["p"], ref["p"], **tol)
    assert list(ours.index) == list(ref.index)


def test_efron_ties_and_breslow_baseline_match_lifelines() -> None:
    frame = generate(3000, seed=9)
    frame["os_months"] = np.ceil(frame["os_months"])  # heavy ties: whole months
    X, y = design(frame, "os")
    model = CoxPH(penalty=0).fit(X, y)
    ref = lifelines_fit(X, y)
    np.testing.assert_allclose(model.coef_, ref.params_.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(model.hazard_ratios_["se"], ref.standard_errors_.to_numpy(), rtol=1e-5)
    base = ref.baseline_cumulative_hazard_.iloc[:, 0]
    np.testing.assert_allclose(model.baseline_cumhaz_, base.loc[model.event_times_].to_numpy(), rtol=1e-5)
    S_ref = ref.predict_survival_function(X.head(20), times=[4.0, 9.0]).T.to_numpy()
    np.testing.assert_allclose(model.predict_survival(X.head(20), [4.0, 9.0]).to_numpy(), S_ref, rtol=1e-5)


def test_penalised_fit_has_no_wald_intervals_and_shrinks(bundled: Cohort) -> None:
    X, y = design(bundled, "os")
    free = CoxPH(penalty=0).fit(X, y)
    ridge = CoxPH(penalty=1.0).fit(X, y)
    assert ridge.hazard_ratios_["p"].isna().all()
    assert ridge.hazard_ratios_["se"].isna().all()
    standardised = lambda m: m.coef_ * X.std(ddof=0).to_numpy()  # noqa: E731
    assert np.linalg.norm(standardised(ridge)) < np.linalg.norm(standardised(free))
    lasso = CoxPH(penalty=0.5, l1_ratio=1.0).fit(X, y)
    assert (np.abs(standardised(lasso)) < 1e-3).sum() >= 1  # L1 pushes some coefficients to ~0


def test_separation_is_reported_not_hidden() -> None:
    X = pd.DataFrame({"x": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]})
    y = np.array(
        [(False, 5.0), (False, 6.0), (False, 7.0), (True, 1.0), (True, 2.0), (True, 3.0)],
        dtype=[("event", "?"), ("time", "<f8")],
    )
    with pytest.warns(RiskModelWarning, match="did not converge"):
        model = CoxPH(penalty=0).fit(X, y)
    assert model.hazard_ratios_["p"].isna().all()
    assert np.isfinite(CoxPH(penalty=0.5).fit(X, y).coef_).all()  # a penalty tames it
