"""Fuzzed cohorts: whatever is written into the cells, loading ends in a Cohort or in our own error."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskmodel.cohort import Cohort, bundled_cohort_path, load
from riskmodel.errors import CohortFileError, CohortValidationError, RiskModelWarning

BASE = pd.read_csv(bundled_cohort_path(), dtype=str, keep_default_na=False)

nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "NA",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "-0",
            "0",
            "1",
            "2",
            "yes",
            "T9",
            "N",
            "M1",
            "2015-02-30",
            "12,5",
            "∞",
            "\x00",
            "None",
            "true",
            "CR ",
            " pd",
            "G2",
            '"',
            "1.0",
            "-1e-9",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**12), 10**12).map(str),
)
edits = st.lists(
    st.tuples(st.integers(0, len(BASE) - 1), st.sampled_from(list(BASE.columns)), nasty_text), min_size=1, max_size=6
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_mutated_cells_never_escape_as_a_crash(tmp_path: Path, edits: list[tuple[int, str, str]]) -> None:
    frame = BASE.copy()
    for row, col, value in edits:
        frame.loc[row, col] = value
    path = tmp_path / "fuzz.csv"
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        try:
            outcome: object = load(path)
        except (CohortValidationError, CohortFileError) as exc:
            outcome = exc
    if isinstance(outcome, CohortValidationError):
        assert outcome.problems  # an error names at least one problem, each with its column
        assert all(p.column for p in outcome.problems)
        return
    if isinstance(outcome, CohortFileError):
        return
    assert isinstance(outcome, Cohort)
    cohort = outcome
    # whatever loaded must satisfy the contract's hard rules
    d = cohort.data
    assert (d["lc_months"] <= d["os_months"] + 1e-9).all()
    assert d["d90_gy"].between(0, 400).all()
    assert d["patient_id"].is_unique


@pytest.mark.parametrize("column", list(BASE.columns))
def test_every_column_blanked_in_one_row(tmp_path: Path, column: str) -> None:
    frame = BASE.copy()
    frame.loc[7, column] = ""
    path = tmp_path / "blank.csv"
    frame.to_csv(path, index=False)
    required = column not in {
        "prior_ebrt_dose_gy",
        "prior_ebrt_fractions",
        "seed_activity_mci",
        "seed_count",
        "prescription_dose_gy",
        "d100_gy",
        "skin_d2cc_gy",
        "response_3mo",
        "post_implant_chemo",
    }
    if required:
        with pytest.raises(
            CohortValidationError, match=rf"row 9, column {column}, value \(empty\): required value is missing"
        ):
            load(path)
    else:
        assert pd.isna(load(path).data.loc[9, column])
