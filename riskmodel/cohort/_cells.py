"""Cell-level coercion shared by derivation and validation: every bad cell becomes a Problem."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.errors import Problem, Severity

MAX_REPORTED_PER_RULE = 50


def blank_mask(s: pd.Series) -> pd.Series:
    """True where a cell is empty: NaN/None/NaT or only white space."""
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
        """Record one problem for every row where ``mask`` is true."""
        mask = mask.fillna(False).astype(bool)
        for row in mask.index[mask.to_numpy()]:
            self.add(rule, row=row, column=column, value=values.loc[row], severity=severity)

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
    blank = blank_mask(s)
    num = pd.to_numeric(s.where(~blank), errors="coerce").astype(float)
    rep.add_rows(num.isna() & ~blank, rule, column, s)
    inf = num.isin([np.inf, -np.inf])
    rep.add_rows(inf, "must be a finite number", column, s)
    return num.where(~inf)


def to_dates(s: pd.Series, column: str, rep: Reporter, date_format: str | None) -> pd.Series:
    """Parse a date column; ISO 8601 (YYYY-MM-DD) unless the mapping sets ``date_format``."""
    blank = blank_mask(s)
    fmt = date_format or "ISO8601"
    parsed = pd.to_datetime(s.where(~blank), format=fmt, errors="coerce")
    expect = date_format or "YYYY-MM-DD (set date_format in the mapping file for another format)"
    rep.add_rows(parsed.isna() & ~blank, f"must be a date in the format {expect}", column, s)
    return parsed
