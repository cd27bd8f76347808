"""The vectorised reading of long numeric columns changes nothing a user sees.

A column of at least ``FAST_FROM`` cells has its plain decimals read by Arrow in C; every other
cell (blank, padded, exponent, units, text, too many digits) goes through pandas one by one, as
before. The reference here is the cell-by-cell path itself, forced for the same file: the same
errors and warnings, word for word and row for row, and the same typed values, bit for bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest

import riskmodel.cohort._cells as cells
from riskmodel.cohort import from_frame
from riskmodel.cohort.load import read_table, write_csv
from riskmodel.cohort.synthetic import generate
from riskmodel.errors import CohortValidationError

HOSTILE = [
    " 12", "12 ", "12 mm", "1e3", "1E-2", "inf", "-inf", "", "   ", "NaN", "1,5", "0x10", "12.", ".5", "+3",
    "١٢", "1_000", "110.50000000000001", "-5", "99999", "0.1234567890123456", "−3", "12\\t", "yes",
]  # fmt: skip


def _outcome(path: Path, fast: bool) -> tuple[str, list[str], pd.DataFrame | None]:
    with patch.object(cells, "FAST_FROM", 1000 if fast else 10**12), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cells._last = (None, None)
        try:  # object cells, as a table handed to from_frame (a file's load reads Arrow: test_arrow_load.py)
            frame, first_row = read_table(path)
            cohort = from_frame(frame, source=path.name, first_row=first_row)
        except CohortValidationError as err:
            return str(err), [str(w.message) for w in seen], None
    return "", [str(w.message) for w in seen], cohort.data


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(3000, seed=4)


def test_a_clean_long_file_loads_to_the_same_values_bit_for_bit(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "clean.csv"
    write_csv(frame, path)
    raw = pd.read_csv(path, dtype=str)
    assert cells.plain_decimals(raw["d90_gy"]) is not None  # the fast path is taken for this column
    assert cells.plain_decimals(raw["patient_id"]) is None  # and not for text
    fast, slow = _outcome(path, True), _outcome(path, False)
    assert fast[0] == slow[0] == ""
    assert fast[1] == slow[1]
    assert fast[2] is not None
    assert slow[2] is not None
    pd.testing.assert_frame_equal(fast[2], slow[2], check_exact=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_hostile_cells_in_a_long_file_give_the_same_messages(frame: pd.DataFrame, tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = tmp_path / "clean.csv"
    write_csv(frame, path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    numeric = ["age_years", "kps", "d90_gy", "d100_gy", "lesion_volume_cm3", "os_months", "os_event", "seed_count"]
    for column in numeric:
        rows = rng.choice(len(raw), size=len(HOSTILE), replace=False)
        raw.loc[rows, column] = HOSTILE
    hostile = tmp_path / "hostile.csv"
    raw.to_csv(hostile, index=False)
    fast, slow = _outcome(hostile, True), _outcome(hostile, False)
    assert "must be a number" in slow[0]  # the file is refused, and for these cells
    assert fast == slow
