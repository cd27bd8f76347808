"""Targets, landmarks, the guarantee-time guard and the competing-risk view of LC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from riskmodel.cohort import Cohort, local_failure_competing, survival_data, survival_target
from riskmodel.errors import GuaranteeTimeBiasError, UserInputError


@pytest.mark.parametrize("endpoint", ["os", "lc"])
def test_target_is_a_scikit_survival_array(bundled: Cohort, endpoint: str) -> None:
    d = bundled.data
    reference = Surv.from_arrays(d[f"{endpoint}_event"].astype(bool), d[f"{endpoint}_months"])
    got = survival_target(bundled, endpoint)  # type: ignore[arg-type]
    assert got.dtype.names == reference.dtype.names
    np.testing.assert_array_equal(got["event"], reference["event"])
    np.testing.assert_array_equal(got["time"], reference["time"])


def test_landmark_drops_and_shifts() -> None:
    frame = pd.DataFrame(
        {
            "d90_gy": [100.0, 120, 90, 80, 130],
            "lc_months": [2.0, 3.0, 3.0, 10.0, 7.5],
            "lc_event": [1, 1, 0, 1, 0],
            "os_months": [5.0, 8.0, 3.0, 12.0, 7.5],
            "os_event": [0, 1, 0, 1, 1],
        }
    )
    lc = survival_data(frame, "lc", landmark_months=3)
    # event at 2 and event at exactly 3 are not event-free *after* 3; censored at exactly 3 neither
    assert (lc.excluded_events, lc.excluded_censored) == (2, 1)
    assert list(lc.y["time"]) == [7.0, 4.5]
    assert list(lc.y["event"]) == [True, False]
    assert list(lc.X.columns) == ["d90_gy"]
    assert list(lc.X.index) == [3, 4]
    assert "landmark 3 months dropped 3 patients (2 with an event, 1 censored before it)" in lc.describe()
    os_ = survival_data(frame, "os", landmark_months=3)
    assert len(os_.y) == 4
    assert os_.excluded_censored == 1


def test_guarantee_time_guard(bundled: Cohort) -> None:
    with pytest.raises(GuaranteeTimeBiasError, match="landmark of at least 3 months") as info:
        survival_data(bundled, "os", feature_columns=["d90_gy", "response_3mo"])
    assert "immortal-time" in str(info.value)
    with pytest.raises(GuaranteeTimeBiasError):
        survival_data(bundled, "os", landmark_months=2.9, feature_columns=["response_3mo"])
    ok = survival_data(bundled, "lc", landmark_months=3, feature_columns=["response_3mo"])
    # every PD is a local progression at the 3-month CT, so none of them is at risk after it
    assert (ok.X["response_3mo"] == "PD").sum() == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_landmark(bundled: Cohort, bad: float) -> None:
    with pytest.raises(UserInputError, match="landmark_months"):
        survival_data(bundled, "os", landmark_months=bad)


def test_unknown_endpoint(bundled: Cohort) -> None:
    with pytest.raises(UserInputError, match="unknown endpoint 'pfs'"):
        survival_target(bundled, "pfs")  # type: ignore[arg-type]


def test_competing_view_of_local_failure() -> None:
    frame = pd.DataFrame(
        {
            "lc_months": [4.0, 6.0, 9.0, 5.0],
            "lc_event": [1, 0, 0, 0],
            "os_months": [10.0, 6.0, 12.0, 5.0],
            "os_event": [1, 1, 0, 0],
        }
    )
    out = local_failure_competing(frame)
    assert list(out["event_type"]) == [1, 2, 0, 0]
    assert list(out["time"]) == [4.0, 6.0, 9.0, 5.0]
    landmarked = local_failure_competing(frame, landmark_months=4.5)
    assert list(landmarked["time"]) == [1.5, 4.5, 0.5]


def test_competing_incidence_is_below_one_minus_km(bundled: Cohort) -> None:
    """Aalen-Johansen local failure from the competing view (exact with the PD ties at month 3)."""
    from lifelines import KaplanMeierFitter

    from riskmodel.stats import aalen_johansen, step_values

    cr = local_failure_competing(bundled)
    t, cif = aalen_johansen(cr["time"].to_numpy(), cr["event_type"].to_numpy(), cause=1)
    km = KaplanMeierFitter().fit(bundled.data["lc_months"], bundled.data["lc_event"])
    cif_12 = float(step_values(t, cif, np.array([12.0]))[0])
    km_12 = 1 - float(km.survival_function_at_times(12).iloc[0])
    assert 0 < cif_12 <= km_12  # KM treats deaths as censored and overstates local failure
    # the ten PD patients fail together at month 3: exactly 10/36 by then
    assert float(step_values(t, cif, np.array([3.0]))[0]) == pytest.approx(10 / 36)
