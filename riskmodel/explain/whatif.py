"""What-if sweeps: a model's predictions as one input changes, all else held fixed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from riskmodel.errors import UserInputError

__all__ = ["what_if"]


def what_if(
    model: Any, df: pd.DataFrame, feature: str, values: Sequence[float], times: Sequence[float] | None = None
) -> pd.DataFrame:
    """Predictions with one cohort column set to each of ``values``, everything else held fixed.

    One row per (patient row, value): ``row`` (the index of ``df``), ``value``, ``risk_score`` and
    ``S_<h>`` at ``times`` (default: the model's horizons). A model association, not a causal dose-response.
    """
    if feature not in model.input_columns:
        raise UserInputError(f"what-if: the model does not read {feature!r}; it reads {', '.join(model.input_columns)}")
    grid = [float(v) for v in values]
    # only the columns the model reads: another column tied to this one by a cohort rule (D100 is
    # at most D90) would refuse the sweep, though the model never sees it
    inputs = df[[c for c in model.input_columns if c in df.columns]]
    frames = []
    for value in grid:
        changed = inputs.copy()
        changed[feature] = value
        pred = model.predict_frame(changed, times)
        pred.insert(0, "value", value)
        pred.insert(0, "row", list(df.index))
        frames.append(pred)
    out: pd.DataFrame = pd.concat(frames, ignore_index=True).sort_values(["row", "value"], kind="stable")
    return out.reset_index(drop=True)
