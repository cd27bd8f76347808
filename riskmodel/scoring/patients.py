"""Patients in and scores out: reading a file of new patients, writing score records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.load import ColumnMapping, load_mapping, read_table, rename_columns
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import atomic_write_text
from riskmodel.errors import UserInputError, require_writable
from riskmodel.scoring.competing import CURVE_KEYS

__all__ = ["read_patients", "write_scores"]


def read_patients(path: str | Path, *, mapping: str | Path | None = None, declared: bool = False) -> pd.DataFrame:
    """Read a patients file as raw cells (row numbers as in a spreadsheet).

    For the built-in contract its column names are mapped to the canonical ones; for a model of a
    declared cohort (``declared``) the headers stay as written: the model's declaration reads them.
    """
    frame, first_row = read_table(path)
    frame.index = pd.RangeIndex(first_row, first_row + len(frame), name="row")
    if declared:
        if mapping is not None:
            raise UserInputError("--mapping applies to the built-in contract; a declared model reads its own headers")
        frame.columns = [str(c) for c in frame.columns]
        return frame
    renamed, _ = rename_columns(frame, load_mapping(mapping) if mapping else ColumnMapping(), Path(path).name)
    return renamed


def write_scores(records: list[dict[str, Any]], out: str | Path | None) -> str:
    """Write score records as JSON (nested) or CSV (one column per horizon); return the text."""
    import json

    if out is not None:
        require_writable(out, option="--out")
    if out is not None and Path(out).suffix.lower() == ".csv":
        rows = []
        for r in records:
            flat = {k: v for k, v in r.items() if k not in ("survival", "flags", "events", *CURVE_KEYS)}
            flat.update({f"S_{h}": p for h, p in r.get("survival", {}).items()})
            for key in CURVE_KEYS:  # a competing model's CIFs and event-free probability
                flat.update({f"{key}_{h}": p for h, p in r.get(key, {}).items()})
            flat.update({f"label_{key}": words for key, words in r.get("events", {}).items()})
            flat["flags"] = "; ".join(r.get("flags", []))
            rows.append(flat)
        text = safe_csv_text(pd.DataFrame(rows), index=False)
    elif out is None or Path(out).suffix.lower() == ".json":
        # indented for reading; one line per patient beyond 1,000 (json's C encoder skips indents)
        # a number that is not finite is written as null: JSON has no NaN (readers refuse it)
        finite = [_finite(r) for r in records]
        if len(records) <= 1000:
            text = json.dumps(finite, indent=2, allow_nan=False) + "\n"
        else:
            text = "[\n" + ",\n".join(json.dumps(r, allow_nan=False) for r in finite) + "\n]\n"
    else:
        raise UserInputError(f"--out {out}: choose a .json or .csv file")
    if out is not None:
        atomic_write_text(out, text)
    return text


def _finite(value: Any) -> Any:
    """A score record with every NaN or infinity (numpy's too) replaced by None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value
