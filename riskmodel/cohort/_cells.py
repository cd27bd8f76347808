"""Cell-level coercion shared by derivation and validation: every bad cell becomes a Problem."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort._arrow_cells import arrow_text, is_arrow_text, missing_cell, object_cells, text_blank
from riskmodel.errors import Problem, Severity

MAX_REPORTED_PER_RULE = 50
FAST_FROM = 1000  # columns at least this long take the vectorised reading of plain decimals
# A plain decimal: optional minus, digits, optional point and digits, at most 16 characters (so at
# most 15 digits). For these, Arrow's parser and pandas' give the same float, bit for bit (tested);
# anything else (blanks, spaces, exponents, units, text) goes through pandas, one cell at a time.
_PLAIN = r"^-?[0-9]+(\.[0-9]+)?$"
_PLAIN_CHARS = 16
_last: tuple[object, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = (None, None)


def plain_decimals(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For a column of text: the mask of its plain decimal cells, their values (read by Arrow in
    C) and the mask of its blank cells; ``None`` for a short column of object cells, another
    dtype, cells that are not all text, or a column with no plain decimal among its first
    ``FAST_FROM`` cells (identifiers, categories). A column of Arrow text is read at any length.

    The last column's answer is kept, so the blank check and the numeric coercion of one column
    read it once.
    """
    global _last
    cached, answer = _last
    if cached is s:
        return answer
    answer = None
    text = arrow_text(s)
    if text is not None:
        if _plain_cells(text[:FAST_FROM]).any():
            answer = _read_plain(text)
    elif s.dtype == object and len(s) >= FAST_FROM:
        head = _object_text(s.iloc[:FAST_FROM])  # a text column (ids, categories) stops here
        if head is not None and _plain_cells(head).any():
            text = _object_text(s)
            answer = None if text is None else _read_plain(text)
    _last = (s, answer)
    return answer


def _object_text(s: pd.Series) -> Any:
    """Object cells as an Arrow string array; ``None`` when some cell is not text."""
    import pyarrow as pa  # type: ignore[import-untyped]

    try:
        return pa.array(s.to_numpy(), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers, dates or booleans among the cells
        return None


def _plain_cells(text: Any) -> np.ndarray:
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    plain = pc.and_(
        pc.match_substring_regex(text, _PLAIN), pc.less_equal(pc.utf8_length(text), _PLAIN_CHARS)
    ).fill_null(False)
    return np.asarray(plain.to_numpy(zero_copy_only=False), dtype=bool)


def _read_plain(text: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    plain = _plain_cells(text)
    values = pc.cast(text.filter(pa.array(plain)), pa.float64()).to_numpy(zero_copy_only=False)
    return plain, values, text_blank(text, known=plain)


def blank_mask(s: pd.Series) -> pd.Series:
    """True where a cell is empty: NaN/None/NaT or only white space."""
    fast = plain_decimals(s)
    if fast is not None:
        return pd.Series(fast[2], index=s.index)
    return _blank_cells(s)


def _blank_cells(s: pd.Series) -> pd.Series:
    text = arrow_text(s)
    if text is None and s.dtype == object and len(s) >= FAST_FROM:  # a long text column: decided in Arrow
        text = _object_text(s)
    if text is not None:
        return pd.Series(text_blank(text), index=s.index)
    if s.dtype == object:
        uniques = pd.unique(s.dropna())
        empty = [v for v in uniques if isinstance(v, str) and not v.strip()]
        return s.isna() | (s.isin(empty) if empty else False)
    return s.isna()


class Reporter:
    """Collects problems for one source, capping repeats of one rule in one column."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self._counts: dict[tuple[str | None, str], int] = {}

    def add(
        self,
        rule: str,
        *,
        row: Hashable = None,
        column: str | None = None,
        value: Any = None,
        severity: Severity = "error",
    ) -> None:
        """Record one problem (beyond the cap, only counted)."""
        key = (column, rule)
        seen = self._counts.get(key, 0)
        self._counts[key] = seen + 1
        if seen < MAX_REPORTED_PER_RULE:
            self.problems.append(Problem(rule, self.file, row, column, _plain(value), severity))

    def add_rows(
        self,
        mask: pd.Series,
        rule: str,
        column: str,
        values: pd.Series,
        severity: Severity = "error",
    ) -> None:
        """Record one problem for every row where ``mask`` is true (as ``add`` row by row: the
        first rows up to the cap kept, the others only counted)."""
        if not mask.any():  # most rules hold on most columns: nothing to walk
            return
        mask = mask.fillna(False).astype(bool)
        rows = mask.index[mask.to_numpy()]
        key = (column, rule)
        seen = self._counts.get(key, 0)
        self._counts[key] = seen + len(rows)
        room = max(0, MAX_REPORTED_PER_RULE - seen)
        arrow, missing = is_arrow_text(values), missing_cell(values)
        for row in rows[:room]:
            value = values.loc[row]
            if arrow and pd.isna(value):  # as the reader's object cells held it
                value = missing
            self.problems.append(Problem(rule, self.file, row, column, _plain(value), severity))

    def finish(self) -> list[Problem]:
        """The problems, plus one summary line for every rule that hit the cap."""
        out = list(self.problems)
        for (column, rule), n in self._counts.items():
            if n > MAX_REPORTED_PER_RULE:
                sev: Severity = next(p.severity for p in self.problems if p.column == column and p.rule == rule)
                out.append(
                    Problem(
                        f"{n - MAX_REPORTED_PER_RULE} more rows break this rule: {rule}",
                        self.file,
                        None,
                        column,
                        None,
                        sev,
                    )
                )
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return value


def to_numeric(
    s: pd.Series, column: str, rep: Reporter, rule: str = "must be a number (use a decimal point, no units)"
) -> pd.Series:
    """Coerce a column to float64, reporting text that is not a number (with ``rule``) and infinities."""
    if pd.api.types.is_bool_dtype(s):
        rep.add_rows(pd.Series(True, index=s.index), "must be a number, not true/false", column, s)
        return pd.Series(np.nan, index=s.index)
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":  # already numbers: only infinities break a rule
        num = s.to_numpy(dtype=float)
        inf = np.isinf(num)
        if inf.any():
            rep.add_rows(pd.Series(inf, index=s.index), "must be a finite number", column, s)
            num = np.where(inf, np.nan, num)
        return pd.Series(num, index=s.index, name=s.name)
    fast = plain_decimals(s)
    if fast is not None:  # plain decimals break no rule; the other cells go through pandas below
        plain, values, _ = fast
        num = np.full(len(s), np.nan)
        num[plain] = values
        if not plain.all():
            num[~plain] = _numbers(s[~plain], column, rep, rule).to_numpy()
        return pd.Series(num, index=s.index)
    return _numbers(s, column, rep, rule)


def _numbers(s: pd.Series, column: str, rep: Reporter, rule: str) -> pd.Series:
    s = object_cells(s)  # the cells that are not plain decimals: pandas decides, one by one
    blank = _blank_cells(s)
    num = pd.to_numeric(s.where(~blank), errors="coerce").astype(float)
    rep.add_rows(num.isna() & ~blank, rule, column, s)
    inf = pd.Series(np.isinf(num.to_numpy()), index=num.index)  # isin's hashing: 10× slower
    rep.add_rows(inf, "must be a finite number", column, s)
    return num.where(~inf)


def to_dates(s: pd.Series, column: str, rep: Reporter, date_format: str | None) -> pd.Series:
    """Parse a date column; ISO 8601 (YYYY-MM-DD) unless the mapping sets ``date_format``."""
    s = object_cells(s)
    blank = blank_mask(s)
    fmt = date_format or "ISO8601"
    parsed = pd.to_datetime(s.where(~blank), format=fmt, errors="coerce")
    expect = date_format or "YYYY-MM-DD (set date_format in the mapping file for another format)"
    rep.add_rows(parsed.isna() & ~blank, f"must be a date in the format {expect}", column, s)
    return parsed
