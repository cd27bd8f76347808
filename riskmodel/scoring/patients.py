"""Patients in and scores out: reading a file of new patients, writing score records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from riskmodel.cohort.load import ColumnMapping, load_mapping, read_table, rename_columns
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import atomic_write_text
from riskmodel.errors import UserInputError, require_writable

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
            flat = {k: v for k, v in r.items() if k not in ("survival", "flags")}
            flat.update({f"S_{h}": p for h, p in r.get("survival", {}).items()})
            flat["flags"] = "; ".join(r.get("flags", []))
            rows.append(flat)
        text = safe_csv_text(pd.DataFrame(rows), index=False)
    elif out is None or Path(out).suffix.lower() == ".json":
        # indented for reading; one line per patient beyond 1,000 (json's C encoder skips indents)
        if len(records) <= 1000:
            text = json.dumps(records, indent=2) + "\n"
        else:
            text = "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n"
    else:
        raise UserInputError(f"--out {out}: choose a .json or .csv file")
    if out is not None:
        atomic_write_text(out, text)
    return text
