"""The whole-column paths of scoring (issue 21 §3) give what the per-cell rules give.

Each fast path (IDs and pseudonyms from Arrow, a long column of IDs checked in C, unseen
categories and stage levels decided once per distinct spelling) is compared with the rule it
replaces written out cell by cell here, on hostile cells: Unicode white space, control
characters Python strips, bytes, numbers, pd.NA, blanks and repeats. Exact equality, no tolerance.
"""

from __future__ import annotations

import hashlib
import math
import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort._cells import Reporter, blank_mask
from riskmodel.cohort.contract import column
from riskmodel.cohort.validate import normalise_category, validate_frame, visible_edges
from riskmodel.core.pseudonyms import salt
from riskmodel.errors import FeatureError
from riskmodel.features import ClinicalFeatures
from riskmodel.features.safe_harbor import RANGE_WORDING
from riskmodel.scoring.flags import outside_flags
from riskmodel.scoring.frame import identities

HOSTILE: list[Any] = [
    " A2",
    "A3 ",
    "\u00a0B",
    "é",
    "x\u2003",
    "",
    "  ",
    "\t",
    None,
    float("nan"),
    "\x1cZ",
    "Z\x1f",
    "日本",
    "a b",
    pd.NA,
    b"by",
    5,
]


def _column(rng: random.Random, n: int = 1200) -> pd.Series:
    values: list[Any] = [f"P{i:05d}" for i in range(n)]
    for _ in range(rng.randint(0, 25)):
        values[rng.randrange(n)] = rng.choice(HOSTILE) if rng.random() < 0.8 else f"P{rng.randrange(n):05d}"
    return pd.Series(values, dtype=object, index=pd.RangeIndex(2, n + 2, name="row"))


def _pseudonym(text: str) -> str:
    """The documented definition: salted SHA-256 of the stripped ID, its first 12 hex digits."""
    return "pid:" + hashlib.sha256(salt() + b"\x00" + text.strip().encode()).hexdigest()[:12]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or not str(v).strip()


def test_identities_of_a_long_column_follow_the_per_cell_rule() -> None:
    rng = random.Random(21)
    for _ in range(60):
        s = _column(rng)
        ids, names = identities(pd.DataFrame({"patient_id": s}), "patient_id")
        assert ids == [None if _blank(v) else str(v) for v in s]
        assert names == [None if _blank(v) else _pseudonym(str(v)) for v in s]


def test_visible_edges_are_the_first_and_last_characters() -> None:
    import pyarrow as pa  # type: ignore[import-untyped]

    cells = ["ab", "a", " a", "a ", "", None, "é", "aé", "éa", "~!", "\x7f", "a\nb", "\x1ca"]
    got = visible_edges(pa.array(cells, type=pa.string())).tolist()
    want = [bool(c) and all(33 <= ord(ch) <= 126 for ch in (c[0], c[-1])) for c in [c or "" for c in cells]]
    assert got == want


def test_a_long_id_column_is_checked_as_cell_by_cell() -> None:
    rng = random.Random(5)
    for _ in range(40):
        s = _column(rng).rename("patient_id")
        frame = pd.DataFrame({"patient_id": s})
        rep = Reporter("patients.csv")
        typed = validate_frame(frame, rep, require_outcomes=False, required=["patient_id"])
        blank = blank_mask(s)
        want = s.astype(str).str.strip().where(~blank)
        pd.testing.assert_series_equal(typed["patient_id"], want)
        # each repeat reported against the first row holding the same stripped ID
        first: dict[str, Any] = {}
        expected = []
        for row, v in want.items():
            if isinstance(v, str):
                if v in first:
                    expected.append((row, f"duplicate patient_id (first seen on row {first[v]})", s[row]))
                first.setdefault(v, row)
        counts = {v: n for v, n in want.value_counts().items() if n > 1}
        got = [(p.row, p.rule, p.value) for p in rep.finish() if p.rule.startswith("duplicate")]
        assert got == expected[:50]
        assert bool(counts) == bool(got)


def _flag_model(categories: dict[str, list[str]]) -> Any:
    return SimpleNamespace(
        numeric_ranges={"age_years": (40.0, 80.0)},
        categories=categories,
        declaration=None,
        is_age=lambda name: name == "age_years",
        shown_range=lambda name: "40-80",
    )


def test_unseen_categories_are_flagged_per_row_as_the_per_cell_rule() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    seen = {"t_stage": ["T1", "T2"], "post_implant_chemo": ["False"]}
    data = pd.DataFrame(
        {
            "age_years": rng.choice([35.0, 50.0, 85.0, 95.0, np.nan], n),
            "t_stage": pd.Categorical(rng.choice(["T1", "T2", "T3", "T4", None], n)),
            "post_implant_chemo": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
        },
        index=pd.RangeIndex(2, n + 2),
    )
    flags = outside_flags(_flag_model(seen), data)
    want: dict[Any, list[str]] = {}
    for row, age in data["age_years"].items():
        if age == age and not 40 <= min(age, 90) <= 80:
            side = "below" if age < 40 else "above"
            shown = "90+" if age >= 90 else f"{age:g}"
            want.setdefault(row, []).append(f"age_years {shown} is {side} {RANGE_WORDING}: 40-80 years")
    for name, levels in seen.items():
        for row, v in data[name].astype(object).items():
            if not pd.isna(v) and str(v) not in levels:
                want.setdefault(row, []).append(f"{name} {v} was not seen in training (seen: {', '.join(levels)})")
    assert list(flags.items()) == list(want.items())  # the same rows, words and order


@pytest.mark.parametrize("coding", ["ordinal", "onehot"])
def test_stage_features_follow_normalise_category_per_cell(coding: str) -> None:
    rng = np.random.default_rng(8)
    n = 2000
    spellings = {"t_stage": ["T1", "t2", " T3 ", "3", "T4"], "n_stage": ["N0", "n1", "N2"], "m_stage": ["M0", "m1"]}
    X = pd.DataFrame({c: rng.choice(v, n).astype(object) for c, v in spellings.items()})
    f = ClinicalFeatures(["stage"], stage_coding=coding).fit(X)
    Z = f.transform(X)
    cols = []
    for c in spellings:
        canon = [normalise_category(column(c), v) for v in X[c]]
        levels = f.stage_levels_[c]
        if coding == "onehot":
            cols += [[float(v == lvl) for v in canon] for lvl in levels[1:]]
        else:
            order = {"t_stage": {"T1": 1, "T2": 2, "T3": 3, "T4": 4}, "n_stage": {"N0": 0, "N1": 1, "N2": 2}}
            cols.append([float(order.get(c, {"M0": 0, "M1": 1})[v]) for v in canon])
    np.testing.assert_array_equal(Z, np.array(cols).T)


def test_an_unknown_stage_is_still_refused_by_row() -> None:
    X = pd.DataFrame({"t_stage": ["T1", "T2"] * 600, "n_stage": ["N0"] * 1200, "m_stage": ["M0"] * 1200})
    f = ClinicalFeatures(["stage"], stage_coding="onehot").fit(X)
    bad = X.copy()
    bad.loc[7, "t_stage"] = "T9"
    bad.loc[9, "t_stage"] = None
    with pytest.raises(FeatureError) as exc:
        f.transform(bad)
    lines = str(exc.value).splitlines()
    assert len(lines) == 2
    assert "row 7" in lines[0]
    assert "T9" in lines[0]
    assert "row 9" in lines[1]


def test_a_typed_number_column_breaks_the_same_rules_as_its_text() -> None:
    rng = np.random.default_rng(4)
    values = rng.choice([55.0, 70.5, np.inf, -np.inf, np.nan, 130.0, -3.0, 17.0], 1500)
    typed_rep, text_rep = Reporter("p.csv"), Reporter("p.csv")
    index = pd.RangeIndex(2, 1502)
    as_numbers = pd.DataFrame({"age_years": values, "kps": rng.choice([80, 90, 45, 130], 1500)}, index=index)
    as_text = as_numbers.map(lambda v: "" if v != v else repr(float(v)) if isinstance(v, float) else str(v))
    a = validate_frame(as_numbers, typed_rep, require_outcomes=False, required=[])
    b = validate_frame(as_text.astype(object), text_rep, require_outcomes=False, required=[])
    pd.testing.assert_frame_equal(a, b)
    key = [(p.row, p.column, p.rule, p.severity) for p in typed_rep.finish()]
    assert key == [(p.row, p.column, p.rule, p.severity) for p in text_rep.finish()]
    assert sum(p.rule == "must be a finite number" for p in typed_rep.finish()) == min(50, int(np.isinf(values).sum()))
