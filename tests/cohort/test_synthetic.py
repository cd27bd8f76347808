"""The synthetic generator: valid cohorts, documented event rates, and recoverable true effects."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskmodel.cohort import from_frame, load, survival_data
from riskmodel.cohort import synthetic as synth
from riskmodel.errors import RiskModelWarning, UserInputError

# The rates the module docstring states (1,000,000 patients, seed 0).
DOC_RATES = {"OS events": 71.1, "LC events": 56.4, "death without local progression": 28.0}


def rates(frame: pd.DataFrame) -> dict[str, float]:
    return {
        "OS events": 100 * frame["os_event"].mean(),
        "LC events": 100 * frame["lc_event"].mean(),
        "death without local progression": 100 * ((frame["os_event"] == 1) & (frame["lc_event"] == 0)).mean(),
    }


def test_docstring_states_the_rates_the_tests_use() -> None:
    doc = " ".join((synth.__doc__ or "").split())
    for name, value in DOC_RATES.items():
        assert re.search(rf"{name} {value} %", doc), name


def test_is_a_valid_cohort_without_warnings() -> None:
    frame = synth.generate(3000, seed=5)
    cohort = from_frame(frame)  # RiskModelWarning is an error in the test suite
    # the contract's columns as generated, plus LC's competing-risks view (death competes with it)
    pd.testing.assert_frame_equal(cohort.data[list(frame.columns)], frame)
    assert set(cohort.data.columns) - set(frame.columns) == {"lc_event_type", "lc_cr_months"}


def test_seed_reproducibility() -> None:
    pd.testing.assert_frame_equal(synth.generate(500, 7), synth.generate(500, 7))
    assert not synth.generate(500, 7)["os_months"].equals(synth.generate(500, 8)["os_months"])


def test_rates_match_the_documentation_on_another_seed() -> None:
    got = rates(synth.generate(200_000, seed=11))
    for name, value in DOC_RATES.items():
        assert got[name] == pytest.approx(value, abs=0.5), name  # ~5 standard errors at n = 200,000


def test_study_selection_structure() -> None:
    f = synth.generate(20_000, seed=2)
    assert (f["os_months"] >= 3).all()  # everyone alive and imaged at 3 months
    is_pd = f["response_3mo"] == "PD"
    assert (f.loc[is_pd, "lc_months"] == 3).all()
    assert (f.loc[is_pd, "lc_event"] == 1).all()
    assert (f["lc_months"] <= f["os_months"]).all()
    died_first = (f["os_event"] == 1) & (f["lc_event"] == 0)
    assert (f.loc[died_first, "lc_months"] == f.loc[died_first, "os_months"]).all()  # death ends LC


@pytest.mark.parametrize("endpoint", ["os", "lc"])
def test_cox_recovers_the_true_coefficients(endpoint: str) -> None:
    """lifelines' Cox fit on the true terms, after the 3-month landmark, finds the documented betas."""
    from lifelines import CoxPHFitter

    frame = synth.generate(20_000, seed=3)
    data = survival_data(frame, endpoint, landmark_months=3, feature_columns=["response_3mo"])  # type: ignore[arg-type]
    beta = synth.LC_COEFFICIENTS if endpoint == "lc" else synth.OS_COEFFICIENTS
    terms = synth._terms(data.X)
    # PD patients are never at risk for LC after the landmark, so that term is constant there.
    used = [k for k in beta if terms[k].std() > 0]
    design = pd.DataFrame({k: terms[k] for k in used}).assign(T=data.y["time"], E=data.y["event"])
    fit = CoxPHFitter().fit(design, "T", "E")
    z = (fit.params_ - pd.Series(beta)[used]) / fit.standard_errors_
    assert (z.abs() < 4).all(), z.round(2).to_dict()
    # and the oracle ranks patients better than D90 alone
    from sksurv.metrics import concordance_index_censored

    eta = synth.true_log_hazard(data.X, endpoint)  # type: ignore[arg-type]
    oracle = concordance_index_censored(data.y["event"], data.y["time"], eta)[0]
    d90_only = concordance_index_censored(data.y["event"], data.y["time"], -data.X["d90_gy"].to_numpy())[0]
    assert oracle > d90_only + 0.05


def test_coefficient_overrides_change_the_truth() -> None:
    strong = synth.generate(20_000, seed=4, os_coefficients={"m1": 2.0})
    base = synth.generate(20_000, seed=4)

    def m1_gap(f: pd.DataFrame) -> float:
        m1 = f["m_stage"] == "M1"
        return f.loc[~m1, "os_months"].median() - f.loc[m1, "os_months"].median()

    assert m1_gap(strong) > m1_gap(base) > 0


@pytest.mark.parametrize("n", [0, -5, 2.5])
def test_bad_n(n: object) -> None:
    with pytest.raises(UserInputError, match="n must be a positive whole number"):
        synth.generate(n)  # type: ignore[arg-type]


def test_unknown_coefficient() -> None:
    with pytest.raises(UserInputError, match="unknown terms dose"):
        synth.generate(10, lc_coefficients={"dose": 1.0})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_csv_round_trip_through_the_loader(tmp_path: Path, n: int, seed: int) -> None:
    from riskmodel.cohort.load import write_csv

    frame = synth.generate(n, seed)
    path = tmp_path / f"s{seed}.csv"
    write_csv(frame, path)
    with warnings.catch_warnings():
        # a tiny cohort can legitimately be all-censored for an endpoint; the loader warns about it
        warnings.simplefilter("ignore", RiskModelWarning)
        loaded = load(path).data.reset_index(drop=True)
    for col in frame.columns:
        if frame[col].dtype.kind == "f":
            np.testing.assert_allclose(loaded[col].to_numpy(float), frame[col].to_numpy(float))
        else:
            assert list(loaded[col].astype(str)) == list(frame[col].astype(str)), col


@pytest.mark.slow
def test_one_million_patients_with_the_documented_rates() -> None:
    frame = synth.generate(1_000_000, seed=0)
    assert len(frame) == 1_000_000
    assert frame["patient_id"].is_unique
    for name, value in rates(frame).items():
        assert round(value, 1) == DOC_RATES[name], name
    shares = frame["response_3mo"].value_counts(normalize=True)
    assert round(100 * shares["PR"], 1) == 50.0
    assert round(100 * shares["PD"], 1) == 27.7
