"""CSV files a spreadsheet may open: text cells that a spreadsheet would run as a formula are
neutralised (OWASP's advice on CSV injection).

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
single quote, so ``=HYPERLINK(...)`` from a patient ID shows as text instead of running. Numbers
stay numbers: a numeric column is not touched, and a text cell that is a plain number (``-2.5``)
is left as it is. Headers and the index are treated like cells. JSON outputs are not changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["neutralise_cell", "safe_csv_text", "write_safe_csv"]

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def neutralise_cell(value: Any) -> Any:
    """A text cell a spreadsheet would evaluate, with a leading quote; anything else unchanged.

    >>> neutralise_cell("=HYPERLINK(1)"), neutralise_cell("-2+3"), neutralise_cell("-2.5"), neutralise_cell(-2)
    ("'=HYPERLINK(1)", "'-2+3", '-2.5', -2)
    """
    if isinstance(value, str) and value.startswith(_TRIGGERS) and not _NUMBER.match(value):
        return "'" + value
    return value


def _labels(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples(
            [tuple(neutralise_cell(v) for v in labels) for labels in index], names=index.names
        )
    return index.map(neutralise_cell) if index.dtype == object else index


def safe_csv_text(frame: pd.DataFrame | pd.Series, **to_csv: Any) -> str:
    """``frame.to_csv(**to_csv)`` as text, with every text cell, header and index label neutralised."""
    out = frame.to_frame() if isinstance(frame, pd.Series) else frame.copy()
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if column.dtype == object or isinstance(column.dtype, pd.StringDtype | pd.CategoricalDtype):
            out.isetitem(i, column.astype(object).map(neutralise_cell).to_numpy())
    out.columns = _labels(out.columns)
    out.index = _labels(out.index)
    return str(out.to_csv(**to_csv))


def write_safe_csv(frame: pd.DataFrame, path: str | Path, **to_csv: Any) -> None:
    """Write ``frame`` as a neutralised CSV file (inside a staged folder; see ``core.files``)."""
    Path(path).write_text(safe_csv_text(frame, **to_csv), encoding="utf-8")
