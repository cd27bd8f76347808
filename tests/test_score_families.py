"""The score table (``score_frame``, built column by column, its risks and S(t) from one pass of
the estimator) is ``RiskModel.score``'s records, for every family of model.

The reference is the record-by-record path: ``RiskModel.score`` calls ``predict_risk`` and
``predict_survival`` apart and builds each patient's status, reason, risk group and flags one by
one. Numbers are compared with zero tolerance (the same estimator on the same rows must give the
same bits), text exactly; the patients include rows refused by the landmark rule, unreadable rows,
a repeated ID and values outside the training data.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort.synthetic import generate
from riskmodel.scoring import RiskModel
from riskmodel.scoring.frame import score_frame

sys.path.insert(0, str(Path(__file__).parent))
from small_models import save_small_model


def patients() -> pd.DataFrame:
    df = generate(1500, 33).astype({"kps": object, "patient_id": object})
    df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    df.loc[[4, 700], ["os_months", "os_event"]] = [1.5, 1]  # died before the 3-month landmark
    df.loc[9, "kps"] = "abc"  # unreadable
    df.loc[20, "patient_id"] = df.loc[2, "patient_id"]  # a repeated ID
    df.loc[30, "patient_id"] = "   "  # a blank ID
    df.loc[[40, 41], "recurrence_interval_months"] = 400.0  # far outside the training range
    df.loc[50, "d90_gy"] = 1.0
    return df


def as_table(records: list[dict[str, Any]], columns: list[str]) -> dict[str, list[Any]]:
    """The records as the score table's columns (S(t) by horizon, flags joined by "; ")."""
    out: dict[str, list[Any]] = {c: [] for c in columns}
    for r in records:
        for c in columns:
            if c.startswith("S_"):
                out[c].append(r.get("survival", {}).get(c[2:], np.nan))
            elif c == "flags":
                out[c].append("; ".join(r.get("flags", [])))
            elif c == "risk_score":
                out[c].append(r.get(c, np.nan))
            else:
                out[c].append(r.get(c))
    return out


@pytest.mark.parametrize("kind", ["cox", "rsf", "gbm", "gbm_sksurv"])
@pytest.mark.parametrize("extrapolate", [False, True])
def test_the_score_table_is_the_records_of_each_family(tmp_path: Path, kind: str, extrapolate: bool) -> None:
    model = RiskModel.load(save_small_model(tmp_path / kind, kind))
    df = patients()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = score_frame(model, df, [3.0, 6.0, 12.0], allow_extrapolation=extrapolate)
        records = model.score(df, [3.0, 6.0, 12.0], allow_extrapolation=extrapolate)
    want = as_table(records, list(table.columns))
    for c in table.columns:
        got = table[c].to_numpy()
        if c.startswith("S_") or c == "risk_score":
            assert np.array_equal(got.astype(float), np.asarray(want[c], dtype=float), equal_nan=True), c
        else:
            assert got.tolist() == want[c], c
    status = table["status"].value_counts().to_dict()
    assert status["refused"] >= 2  # the two deaths, and any response PD at the 3-month CT
    assert status["error"] >= 2  # the unreadable row and the blank ID (the repeat by the whole-file rule)
    assert sum(v for k, v in status.items() if "outside the development data" in k) >= 3
    assert status["scored"] > 1000, status
