"""A cohort file read into Arrow text (pyarrow's CSV and Parquet readers) loads as before.

``riskmodel.cohort.load`` keeps CSV and Parquet text columns in Arrow and checks them in C. The
references here are independent of that code: Python's ``str.strip()``, ``normalise_category``
and the yes/no words applied cell by cell; pandas' own ``read_csv(dtype=str)`` cells for the CSV
reader; and, for whole files, the object-cell pipeline (``read_table`` + ``from_frame``) with the
cell-by-cell path forced (``FAST_FROM`` beyond the file), which is the loader as it was. Equality
is exact throughout: messages word for word, row for row; values bit for bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest

import riskmodel.cohort._cells as cells
from riskmodel.cohort import from_frame, load
from riskmodel.cohort._arrow_cells import csv_text, parquet_text
from riskmodel.cohort._readers import read_csv_arrow, read_csv_cells
from riskmodel.cohort.contract import column
from riskmodel.cohort.load import ColumnMapping, read_table, write_csv
from riskmodel.cohort.synthetic import generate
from riskmodel.cohort.validate import normalise_category, validate_frame
from riskmodel.errors import CohortValidationError

WHITE = ["", " ", "\t", "\u00a0", "\u2003", "\x1c", "\x85", " \u3000 ", "\u200b", "x ", " 1", "-", "\ufeff"]
HOSTILE = [
    " 12", "12 ", "12 mm", "1e3", "1E-2", "inf", "-inf", "", "   ", "NaN", "1,5", "0x10", "12.", ".5", "+3",
    "١٢", "1_000", "110.50000000000001", "-5", "99999", "0.1234567890123456", "−3", "12\\t", "yes", "\u00a0",
]  # fmt: skip
TEXT_DTYPES = pytest.mark.parametrize("dtype", [csv_text(), parquet_text()], ids=["csv", "parquet"])


def _python_blank(values: list[object]) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip() for v in values])


def _arrow(values: list[object], dtype: Any) -> pd.Series:
    return pd.Series(pd.array([None if v is None else v for v in values], dtype=dtype))


@TEXT_DTYPES
@pytest.mark.parametrize("n", [40, 5000])
def test_blank_arrow_cells_follow_python_s_strip(dtype: Any, n: int) -> None:
    rng = np.random.default_rng(n)
    values: list[object] = [f"P{i:07d}" for i in range(n)]
    for word, at in zip([*WHITE, None], rng.choice(n, size=len(WHITE) + 1, replace=False), strict=True):
        values[at] = word
    cells._last = (None, None)
    assert np.array_equal(cells.blank_mask(_arrow(values, dtype)).to_numpy(), _python_blank(values))
    repeated = list(np.resize(np.array([*WHITE, None, "T2", "12.5"], dtype=object), n))  # a number column's path
    cells._last = (None, None)
    assert np.array_equal(cells.blank_mask(_arrow(repeated, dtype)).to_numpy(), _python_blank(repeated))


@TEXT_DTYPES
def test_arrow_categories_and_yes_no_are_decided_per_cell_as_defined(dtype: Any) -> None:
    n = 3000
    rng = np.random.default_rng(3)
    stages = [" t4A ", "2", "T9", "  ", "\u00a0", "T1", "t2", None, "T3b", "x", "G1"]
    answers = [" yes", " No ", "Y", "maybe", "1.0", " ", None, "TRUE", "0"]
    frame = pd.DataFrame(
        {
            "patient_id": _arrow([f"P{i:05d}" for i in range(n)], dtype),
            "t_stage": _arrow([stages[i] for i in rng.integers(0, len(stages), n)], dtype),
            "post_implant_chemo": _arrow([answers[i] for i in rng.integers(0, len(answers), n)], dtype),
        }
    )
    rep = cells.Reporter("f.csv")
    typed = validate_frame(frame, rep, required=[])
    col = column("t_stage")
    raw = frame["t_stage"].astype(object).where(frame["t_stage"].notna(), None).tolist()
    blank = _python_blank(raw)
    expected = [None if b else normalise_category(col, v) for v, b in zip(raw, blank, strict=True)]
    assert typed["t_stage"].astype(object).where(typed["t_stage"].notna(), None).tolist() == expected
    assert list(typed["t_stage"].cat.categories) == list(col.allowed or [])
    reported = [(p.row, p.value) for p in rep.problems if p.column == "t_stage"]
    unknown = [(i, raw[i]) for i, (e, b) in enumerate(zip(expected, blank, strict=True)) if e is None and not b]
    assert reported == unknown[: cells.MAX_REPORTED_PER_RULE]
    words = {"yes": True, "no": False, "y": True, "true": True, "1.0": True, "0": False}
    yes_no = frame["post_implant_chemo"].astype(object).where(frame["post_implant_chemo"].notna(), None).tolist()
    expected_bool = [
        None if b else words.get(str(v).strip().lower()) for v, b in zip(yes_no, _python_blank(yes_no), strict=True)
    ]
    assert str(typed["post_implant_chemo"].dtype) == "boolean"
    got = typed["post_implant_chemo"].astype(object).where(typed["post_implant_chemo"].notna(), None).tolist()
    assert got == expected_bool
    assert typed["patient_id"].dtype == object


@TEXT_DTYPES
def test_arrow_identifiers_are_stripped_and_repeats_reported_as_for_object_cells(dtype: Any) -> None:
    ids: list[object] = [f"P{i:05d}" for i in range(2000)]
    ids[3], ids[7], ids[11], ids[12] = " X1", "X2\u00a0", None, "  "  # padded, blank
    for case in (ids, [*ids[:-1], "X2"]):  # every ID distinct; then one repeated after its spaces
        arrow_rep, object_rep = cells.Reporter("f"), cells.Reporter("f")
        arrow = validate_frame(pd.DataFrame({"patient_id": _arrow(case, dtype)}), arrow_rep, required=[])
        objects = validate_frame(pd.DataFrame({"patient_id": pd.Series(case, dtype=object)}), object_rep, required=[])
        pd.testing.assert_frame_equal(arrow, objects, check_exact=True)
        assert [str(p) for p in arrow_rep.finish()] == [str(p) for p in object_rep.finish()]
    assert arrow["patient_id"].tolist()[3] == "X1"
    assert [p.rule for p in arrow_rep.problems] == ["duplicate patient_id (first seen on row 7)"]


CSV_TEXTS = {
    "plain": "a,b\n1,x\n2,y\n",
    "crlf": "a,b\r\n1,x\r\n2,y\r\n",
    "cr only": "a,b\r1,x\r2,y\r",
    "quoted then text": 'a,b\n"ab"cd,x\n',
    "one column": "a\n1\n\n2\n",
    "bom": "\ufeffa,b\n1,x\n",
    "quoted": 'a,b\n"1,5","say ""hi"""\n"",x\n"NA",n/a\n',
    "newline in a quoted cell": 'a,b\n"line one\nline two",x\n2,y\n',
    "spaces kept": "a,b\n 1 , x \nNA , NA\n",
    "missing words": "a,b,c\nNA,N/A,n/a\nNaN,nan,null\nNULL,.,\n-,none,0\n",
    "semicolons": "a;b\n1,5;x\n",
    "tabs": "a\tb\n1\tx y\n",
    "no final newline": "a,b\n1,x",
    "header only": "a,b\n",
    "accents": "nom,ville\nJosé,Zürich\n",
    "quote inside": 'a,b\nab"c,x\n',
    "blank line": "a,b\n1,x\n\n2,y\n",  # pyarrow reads a row of missing cells, as pandas
    "short row": "a,b\n1\n2,y\n",
    "long row": "a,b\n1,x,extra\n",
    "repeated header": "a,a\n1,2\n",
    "empty header": "a,\n1,2\n",
    "cp1252": "a,b\n1,caf\xe9\n",
    "whitespace line": "a,b\n1,x\n   \n",
}
FALLS_BACK = {"short row", "long row", "repeated header", "empty header", "cp1252", "whitespace line"}


@pytest.mark.parametrize("name", list(CSV_TEXTS))
def test_the_arrow_csv_reader_reads_pandas_cells_or_steps_aside(name: str, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    text = CSV_TEXTS[name]
    path.write_bytes(text.encode("cp1252" if name == "cp1252" else "utf-8"))
    fast = read_csv_arrow(path)
    if name in FALLS_BACK:
        assert fast is None
        return
    assert fast is not None
    reference = read_csv_cells(path)  # pandas.read_csv(dtype=str, the missing words)
    assert list(fast.columns) == list(reference.columns)
    assert len(fast) == len(reference)
    for c in fast.columns:
        assert fast[c].dtype == csv_text()
        got = fast[c].to_numpy(dtype=object, na_value=np.nan)
        want = reference[c].to_numpy(dtype=object)
        assert [v if isinstance(v, str) else "<missing>" for v in got] == [
            v if isinstance(v, str) else "<missing>" for v in want
        ], c


def _outcome(path: Path, arrow: bool) -> tuple[str, list[str], pd.DataFrame | None, list[Any]]:
    """``load`` (Arrow) or the object-cell pipeline with the cell-by-cell path forced."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cells._last = (None, None)
        try:
            if arrow:
                cohort = load(path)
            else:
                with patch.object(cells, "FAST_FROM", 10**12):
                    frame, first = read_table(path)
                    cohort = from_frame(frame, source=path.name, first_row=first)
        except CohortValidationError as err:
            return str(err), [str(w.message) for w in seen], None, [(p.row, repr(p.value)) for p in err.problems]
    return "", [str(w.message) for w in seen], cohort.data, [cohort.sensitive, cohort.derived, cohort.implant_years]


def _same(path: Path) -> tuple[str, list[str]]:
    fast, slow = _outcome(path, True), _outcome(path, False)
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert fast[3] == slow[3]
    if slow[2] is None:
        assert fast[2] is None
    else:
        assert fast[2] is not None
        pd.testing.assert_frame_equal(fast[2], slow[2], check_exact=True)
    return slow[0], slow[1]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(3000, seed=5)


def _hostile(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    raw = frame.astype(object).copy()
    raw["post_implant_chemo"] = raw["post_implant_chemo"].map({True: "yes", False: "no"})
    words = {
        "age_years": HOSTILE,
        "kps": HOSTILE,
        "d90_gy": HOSTILE,
        "os_event": [*HOSTILE, "2", "0.5"],
        "sex": ["female", " m ", "X", "\u00a0", "", "Man"],
        "pathological_grade": ["G2", " well ", "poorly differentiated", "bad", ""],
        "t_stage": [" t4A ", "2", "T9", "Tx"],
        "response_3mo": ["complete response", "SD+PD", " pr"],
        "post_implant_chemo": [" Yes", "1.0", "maybe", "", "\u2003"],
    }
    ids = raw["patient_id"]
    words["patient_id"] = [f" {ids[0]}", f"{ids[8]} ", "", "\u00a0", ids[9]]  # repeats after their spaces
    for name, cells_ in words.items():
        rows = rng.choice(len(raw), size=len(cells_), replace=False)
        raw.loc[rows, name] = cells_
    return raw


@pytest.mark.parametrize("seed", [0, 1])
def test_hostile_cells_of_every_kind_give_the_same_messages_from_csv_and_parquet(
    frame: pd.DataFrame, tmp_path: Path, seed: int
) -> None:
    raw = _hostile(frame, seed)
    csv = tmp_path / "hostile.csv"
    raw.to_csv(csv, index=False)
    errors, _ = _same(csv)
    for rule in ("must be a number", "duplicate patient_id", "must be yes or no", "must be one of M, F"):
        assert rule in errors, rule
    parquet = tmp_path / "hostile.parquet"
    raw.astype(str).replace({"": None}).to_parquet(parquet)  # text columns with nulls
    errors, _ = _same(parquet)
    assert "required value is missing" in errors


def test_a_clean_file_and_its_warnings_load_the_same_from_csv_and_parquet(frame: pd.DataFrame, tmp_path: Path) -> None:
    clean = frame.copy()
    clean.loc[5, "age_years"] = 99.0  # a plausibility warning
    clean.loc[8, "kps"] = 65  # off the grid of tens
    csv = tmp_path / "clean.csv"
    write_csv(clean, csv)
    _, seen = _same(csv)
    assert seen
    assert "plausible range" in seen[0]
    parquet = tmp_path / "clean.parquet"
    clean.to_parquet(parquet)
    _same(parquet)
    text = tmp_path / "text.parquet"
    clean.astype(str).to_parquet(text)  # every column as text
    _same(text)


def test_a_missing_cell_is_quoted_as_its_reader_gave_it(frame: pd.DataFrame, tmp_path: Path) -> None:
    raw = frame.head(1500).astype(object)
    raw.loc[3, "sex"] = None
    csv, parquet = tmp_path / "m.csv", tmp_path / "m.parquet"
    raw.to_csv(csv, index=False)
    raw.astype(str).replace({"None": None}).to_parquet(parquet)
    assert "row 5, column sex, value (empty): required value is missing" in _same(csv)[0]  # CSV: NaN
    assert "row 4, column sex: required value is missing" in _same(parquet)[0]  # Parquet: None


def test_raw_clinical_fields_derive_the_same_from_arrow_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 1200
    implant = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 2000, n), unit="D")
    last = implant + pd.to_timedelta(rng.integers(1, 900, n), unit="D")
    table = pd.DataFrame(
        {
            "Patient ID": [f"P{i:05d}" for i in range(n)],
            "implant_date": implant.strftime("%Y-%m-%d"),
            "last_followup_date": last.strftime("%Y-%m-%d"),
            "death_date": np.where(rng.random(n) < 0.5, last.strftime("%Y-%m-%d"), ""),
            "tnm": rng.choice(["T2N1M0", "cT3 N2 M0", "T5N0M0", " ", "T4aN0M1"], n),
            "diameter_1_mm": rng.choice(["12", "15.5", "-1", "x"], n),
            "diameter_2_mm": "10",
            "diameter_3_mm": "8",
            "notes": [f"free text {i}" for i in range(n)],
        }
    )
    table.loc[4, "implant_date"] = "2015-02-30"
    path = tmp_path / "raw.csv"
    table.to_csv(path, index=False)
    errors, _ = _same(path)
    assert "must be a date" in errors
    assert "unknown T category" in errors


def test_from_frame_leaves_the_callers_table_as_it_was(frame: pd.DataFrame) -> None:
    table = frame.head(1200).astype(object)
    table["sex"] = table["sex"].map({"M": "man", "F": "woman"})
    table["ebrt_end_date"] = "2014-01-01"
    table["recurrence_date"] = "2014-06-01"
    before = table.copy(deep=True)
    mapping = ColumnMapping(values={"sex": {"man": "M", "woman": "F"}})
    cohort = from_frame(table.drop(columns="recurrence_interval_months"), mapping=mapping)
    pd.testing.assert_frame_equal(table, before, check_exact=True)
    assert cohort.data["sex"].notna().all()
    assert "recurrence_interval_months" in cohort.derived
