"""Text cells held in Arrow: a cohort file read by pyarrow keeps its text columns as Arrow strings.

The cell checks (blank, plain decimal, category, identifier) then run on the Arrow arrays in C,
with no Python string per cell. A column leaves Arrow only as the object cells pandas' own readers
would have given: ``pandas.read_csv(dtype=str)`` a NaN for a missing cell (the CSV reader's
columns are ``pd.StringDtype("pyarrow", na_value=nan)``), ``pandas.read_parquet`` a None (the
Parquet reader's are ``pd.ArrowDtype(pa.string())``). So every message quotes the value it did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "arrow_text",
    "csv_text",
    "first_visible",
    "is_arrow_text",
    "missing_cell",
    "object_cells",
    "parquet_text",
    "text_blank",
    "visible_edges",
]

_PYTHON_UNIQUES = 1000  # beyond this many distinct texts, a regular expression screens them first


def csv_text() -> Any:
    """The dtype of a CSV file's text column as the loader keeps it (Arrow strings, NaN missing)."""
    return pd.StringDtype("pyarrow", na_value=np.nan)


def parquet_text() -> pd.ArrowDtype:
    """The dtype of a Parquet file's text column as the loader keeps it (Arrow strings)."""
    import pyarrow as pa  # type: ignore[import-untyped]

    return pd.ArrowDtype(pa.string())


def is_arrow_text(s: pd.Series) -> bool:
    """Whether a column holds text in Arrow (a pyarrow-backed string dtype)."""
    dtype = s.dtype
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage == "pyarrow"
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        return bool(pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype))
    return False


def arrow_text(s: pd.Series) -> Any:
    """The Arrow string array (one chunk; string or large_string) of a column of Arrow text, else
    ``None``."""
    if not is_arrow_text(s):
        return None
    import pyarrow as pa

    data = pa.array(s.array)  # the column's own buffers (``__arrow_array__``), no copy
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
    return data


def missing_cell(s: pd.Series) -> Any:
    """What a missing cell of this column was in the reader's object cells: NaN (CSV) or None."""
    dtype = s.dtype
    return dtype.na_value if isinstance(dtype, pd.StringDtype) else None


def object_cells(s: pd.Series) -> pd.Series:
    """The column as object cells (Python strings, and the reader's missing value); other columns
    are returned as they are."""
    if not is_arrow_text(s):
        return s
    return pd.Series(s.to_numpy(dtype=object, na_value=missing_cell(s)), index=s.index, name=s.name)


def _bytes(text: Any) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow string array's offsets (one more than its cells, from its own offset) and bytes."""
    import pyarrow as pa

    _, offsets_buffer, data_buffer = text.buffers()
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[text.offset : text.offset + len(text) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return offsets, data


def _visible(byte: np.ndarray) -> np.ndarray:
    visible: np.ndarray = (byte >= 0x21) & (byte <= 0x7E)
    return visible


def first_visible(text: Any) -> np.ndarray:
    """Per cell of an Arrow string array, whether its first byte is visible ASCII (``!`` to ``~``):
    such a text is not blank, whatever Python counts as white space."""
    offsets, data = _bytes(text)
    start, end = offsets[:-1], offsets[1:]
    ok = end > start
    if not len(data):
        return ok
    visible: np.ndarray = ok & _visible(data[np.where(ok, start, 0)])
    return visible


def visible_edges(text: Any) -> np.ndarray:
    """Per cell of an Arrow string array, whether its first and last bytes are visible ASCII
    (``!`` to ``~``); in UTF-8 a byte below 0x80 is a whole character, so such a text is its own
    ``str.strip()``."""
    offsets, data = _bytes(text)
    start, end = offsets[:-1], offsets[1:]
    ok = end > start
    if not len(data):
        return ok
    edges: np.ndarray = ok & _visible(data[np.where(ok, start, 0)]) & _visible(data[np.where(ok, end - 1, 0)])
    return edges


def text_blank(text: Any, known: np.ndarray | None = None) -> np.ndarray:
    """Where an Arrow text array is missing, or holds text that Python's ``str.strip()`` empties.

    A text whose first byte is visible ASCII is not blank (nor is a cell ``known`` to be a number);
    Python decides each distinct other text once, so the rule is exactly ``not v.strip()``."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    missing = np.asarray(text.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    pending = ~missing & ~first_visible(text)
    if known is not None:
        pending &= ~known
    if not pending.any():
        return missing
    others = pc.unique(text.filter(pa.array(pending)))
    if len(others) > _PYTHON_UNIQUES:  # a visible ASCII character anywhere settles most of them
        others = others.filter(pc.invert(pc.match_substring_regex(others, "[!-~]")))
    empty = [v for v in others.to_pylist() if not v.strip()]
    if not empty:
        return missing
    found = pc.is_in(text, value_set=pa.array(empty, type=text.type)).fill_null(False)
    blank: np.ndarray = missing | np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
    return blank
