"""Bootstrap optimism correction against R's rms::validate, and against a known truth.

R reference (rms 6.5-0, survival 3.5-3; ``tests`` has no R dependency, the figures are recorded):
the bundled cohort's OS design after the 3-month landmark (the "study" features), written to CSV
and fitted with ``cph(Surv(time, event) ~ ., x=TRUE, y=TRUE)``, then ``validate(fit, B=200)`` with
seeds 1-5. Corrected Dxy: 0.5495, 0.5538, 0.5270, 0.5620, 0.5461 (mean 0.5477, so C = 0.7738).
Corrected slope: 0.5913, 0.6056, 0.5259, 0.6105, 0.5666 (mean 0.5800). Apparent Dxy 0.6783
(C = 0.8391).

LC, the same design and script (rms 6.5-0 excludes 48-63 of 200 resamples as "divergence or
singularity"): corrected Dxy 0.3285, 0.3236, 0.3189, 0.3071, 0.3387 (mean 0.3234, C = 0.6617);
corrected slope 0.2928, 0.2964, 0.3072, 0.3091, 0.3496 (mean 0.3110); apparent Dxy 0.6316.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from riskmodel.cohort import load_bundled, survival_data
from riskmodel.cohort.synthetic import generate, true_log_hazard
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH
from riskmodel.validation import calibration_slope, calibration_slope_at, validate

R_OS_APPARENT_C = 0.5 + 0.6782609 / 2
R_OS_CORRECTED_C = 0.5 + 0.547678 / 2
R_OS_CORRECTED_SLOPE = 0.579975
R_LC_APPARENT_C = 0.5 + 0.6315789 / 2
R_LC_CORRECTED_C = 0.5 + 0.3233568 / 2
R_LC_CORRECTED_SLOPE = 0.3110438


@pytest.fixture(scope="module")
def os_design() -> tuple[pd.DataFrame, np.ndarray]:
    data = survival_data(load_bundled(), "os", landmark_months=3, feature_columns=["response_3mo"])
    return data.X, data.y


def cox_pipeline(penalty: float = 0.0) -> Pipeline:
    return Pipeline([("features", ClinicalFeatures("study", landmark_months=3)), ("model", CoxPH(penalty=penalty))])


def test_optimism_corrected_c_and_slope_agree_with_rms_validate(os_design: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = os_design
    result = validate(cox_pipeline(), X, y, [6, 12], n_resamples=200, seed=1, n_jobs=2)
    assert result.table.at["harrell_c", "apparent"] == pytest.approx(R_OS_APPARENT_C, abs=1e-3)
    assert result.corrected("harrell_c") == pytest.approx(R_OS_CORRECTED_C, abs=0.03)
    assert result.corrected("calibration_slope") == pytest.approx(R_OS_CORRECTED_SLOPE, abs=0.1)
    assert result.table.at["calibration_slope", "apparent"] == pytest.approx(1.0, abs=1e-6)  # by construction
    row = result.table.loc["harrell_c"]
    assert row["ci_low"] < row["corrected"] < row["ci_high"] <= 1
    assert result.failed + int(row["resamples"]) == 200


def test_lc_resamples_are_excluded_as_rms_excludes_them() -> None:
    """LC separates often: without rms's exclusion rule the corrected C is 0.03 lower than R's."""
    data = survival_data(load_bundled(), "lc", landmark_months=3, feature_columns=["response_3mo"])
    result = validate(cox_pipeline(), data.X, data.y, [6], n_resamples=200, seed=1, n_jobs=2)
    assert result.table.at["harrell_c", "apparent"] == pytest.approx(R_LC_APPARENT_C, abs=1e-3)
    assert result.corrected("harrell_c") == pytest.approx(R_LC_CORRECTED_C, abs=0.03)
    assert result.corrected("calibration_slope") == pytest.approx(R_LC_CORRECTED_SLOPE, abs=0.1)
    separated = [f for f in result.failures if "did not converge" in f]
    assert 10 <= len(separated) <= 80  # rms excludes 48-63 of 200 on these data
    assert result.failed == len(result.failures) == 200 - int(result.table.at["harrell_c", "resamples"])


def test_rms_convergence_rule_tells_separation_from_an_ordinary_fit() -> None:
    from riskmodel.models.cox import converges_like_rms

    rng = np.random.default_rng(0)
    y = np.empty(40, dtype=[("event", "?"), ("time", "<f8")])
    y["time"] = rng.exponential(10, 40)
    y["event"] = rng.random(40) < 0.7
    x = rng.normal(size=(40, 2))
    assert converges_like_rms(x, y)
    # each patient who fails has the highest value of the second feature in their risk set: the
    # partial likelihood rises towards 1 as its coefficient grows, and has no maximum
    separating = np.column_stack([x[:, 0], -y["time"]])
    assert not converges_like_rms(separating, y)


def test_same_seed_same_result_whatever_the_number_of_jobs(os_design: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = os_design
    one = validate(cox_pipeline(0.1), X, y, [12], n_resamples=12, seed=7, n_jobs=1)
    two = validate(cox_pipeline(0.1), X, y, [12], n_resamples=12, seed=7, n_jobs=2)
    pd.testing.assert_frame_equal(one.table, two.table)
    other = validate(cox_pipeline(0.1), X, y, [12], n_resamples=12, seed=8, n_jobs=1)
    assert not one.table.equals(other.table)


def test_resamples_without_an_event_are_counted_not_dropped() -> None:
    frame = generate(60, seed=3)
    data = survival_data(frame, "os", landmark_months=3, feature_columns=["response_3mo"])
    y = data.y.copy()
    y["event"] = False
    y["event"][:2] = True  # two events among 60: many resamples hold none
    ticks: list[int] = []
    result = validate(cox_pipeline(1.0), data.X, y, [6], n_resamples=60, seed=0, progress=lambda: ticks.append(1))
    assert len(ticks) == 60
    assert result.failed > 0
    assert all("no event" in f or "singular" in f or "Error" in f for f in result.failures)
    assert result.failed + len(result.per_resample) == 60


def _true_terms(frame: pd.DataFrame) -> pd.DataFrame:
    from riskmodel.cohort.synthetic import OS_COEFFICIENTS, _terms

    terms = _terms(frame)
    return pd.DataFrame({k: terms[k] for k in OS_COEFFICIENTS})


def test_a_correctly_specified_cox_model_is_calibrated_on_new_patients() -> None:
    train, test = generate(5000, seed=11), generate(5000, seed=12)
    fit_on = survival_data(train, "os", landmark_months=3)
    score_on = survival_data(test, "os", landmark_months=3)
    model = CoxPH(penalty=0.0).fit(_true_terms(train.loc[fit_on.X.index]), fit_on.y)
    Z = _true_terms(test.loc[score_on.X.index])
    assert calibration_slope(score_on.y, model.predict_risk(Z)) == pytest.approx(1.0, abs=0.08)
    surv12 = model.predict_survival(Z, [12]).to_numpy()[:, 0]
    assert calibration_slope_at(score_on.y, surv12, 12) == pytest.approx(1.0, abs=0.08)
    # the truth itself: slope 1 on the true log hazard
    eta = true_log_hazard(test.loc[score_on.X.index], "os")
    assert calibration_slope(score_on.y, eta) == pytest.approx(1.0, abs=0.08)


def test_an_overfit_model_shows_a_corrected_slope_below_one() -> None:
    rng = np.random.default_rng(0)
    frame = generate(80, seed=5)
    data = survival_data(frame, "os", landmark_months=3)
    base = ClinicalFeatures("preimplant").fit_transform(data.X)
    noise = rng.normal(size=(len(base), 12))  # 12 pure-noise columns beside the real ones
    X = pd.DataFrame(np.c_[base, noise], index=data.X.index).add_prefix("x")
    pipeline = Pipeline([("design", FunctionTransformer()), ("cox", CoxPH(penalty=0.0))])  # identity step
    result = validate(pipeline, X, data.y, [12], n_resamples=30, seed=2)
    assert result.table.at["calibration_slope", "apparent"] == pytest.approx(1.0, abs=1e-6)
    assert result.corrected("calibration_slope") < 0.8
    assert result.table.at["harrell_c", "optimism"] > 0.02
