"""Long text columns (identifiers, categories, yes/no) read in Arrow and decided once per distinct
spelling give what the cell-by-cell definitions give.

References: Python's ``str.strip()`` per cell for blankness (Unicode white space included), and
``normalise_category`` / the yes-no words applied to each cell for the typed values and the rows
reported. Exact equality throughout.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd

import riskmodel.cohort._cells as cells
from riskmodel.cohort.contract import column
from riskmodel.cohort.validate import normalise_category, validate_frame

WHITE = ["", " ", "\t", "\u00a0", "\u2003", "\x1c", "\x85", " \u3000 ", "\u200b", "x ", " 1", "-", "\ufeff"]


def _column(n: int, seed: int, words: list[object]) -> pd.Series:
    rng = np.random.default_rng(seed)
    cells_ = np.array([f"P{i:07d}" for i in range(n)], dtype=object)
    picked = rng.choice(n, size=len(words), replace=False)
    cells_[picked] = np.array(words, dtype=object)
    return pd.Series(cells_)


def _python_blank(s: pd.Series) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip() for v in s])


def test_blank_cells_of_a_long_text_column_follow_python_s_strip() -> None:
    s = _column(5000, 1, [*WHITE, None, np.nan])  # 5,000 distinct identifiers: the screened path
    cells._last = (None, None)
    assert np.array_equal(cells.blank_mask(s).to_numpy(), _python_blank(s))
    few = pd.Series(np.resize(np.array([*WHITE, None, "T2"], dtype=object), 3000))  # few distinct texts
    assert np.array_equal(cells.blank_mask(few).to_numpy(), _python_blank(few))
    with patch.object(cells, "FAST_FROM", 10**12):  # the slow path agrees
        assert np.array_equal(cells.blank_mask(few).to_numpy(), _python_blank(few))


def test_categories_and_yes_no_are_decided_per_cell_as_defined() -> None:
    n = 3000
    rng = np.random.default_rng(3)
    stages = np.array([" t4A ", "2", "T9", "  ", "\u00a0", "T1", "t2", None, "T3b", "x"], dtype=object)
    answers = np.array(["yes", " No ", "Y", "maybe", "1.0", " ", None, "TRUE", "0"], dtype=object)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i:05d}" for i in range(n)],
            "t_stage": stages[rng.integers(0, stages.size, n)],
            "post_implant_chemo": answers[rng.integers(0, answers.size, n)],
        }
    )
    rep = cells.Reporter("f.csv")
    typed = validate_frame(frame, rep, required=[])
    col = column("t_stage")
    blank = _python_blank(frame["t_stage"])
    expected = [None if b else normalise_category(col, v) for v, b in zip(frame["t_stage"], blank, strict=True)]
    got = typed["t_stage"].astype(object).where(typed["t_stage"].notna(), None).tolist()
    assert got == expected
    assert list(typed["t_stage"].cat.categories) == list(col.allowed or [])
    bad_rows = sorted(
        p.row for p in rep.problems if p.column == "t_stage" and p.rule.startswith("must be one of")
    )  # the first 50 of them are listed
    unknown = [i for i, (e, b) in enumerate(zip(expected, blank, strict=True)) if e is None and not b]
    assert bad_rows == unknown[: cells.MAX_REPORTED_PER_RULE]
    words = {"yes": True, "no": False, "y": True, "true": True, "1.0": True, "0": False}
    yes_no = frame["post_implant_chemo"]
    expected_bool = [
        None if b else words.get(str(v).strip().lower()) for v, b in zip(yes_no, _python_blank(yes_no), strict=True)
    ]
    assert str(typed["post_implant_chemo"].dtype) == "boolean"
    assert typed["post_implant_chemo"].astype(object).where(typed["post_implant_chemo"].notna(), None).tolist() == (
        expected_bool
    )
