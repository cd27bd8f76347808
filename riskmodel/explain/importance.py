"""Permutation importance on Harrell's C, with intervals over shuffles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.core.parallel import parallel_map
from riskmodel.metrics import harrell_c

__all__ = ["BATCH_ROWS", "permutation_importance"]

BATCH_ROWS = 200_000  # rows of stacked shuffles scored in one prediction (bounds the memory)


def permutation_importance(
    estimator: Any, Z: np.ndarray, y: Any, names: Sequence[str], *, repeats: int = 20, seed: int = 0
) -> pd.DataFrame:
    """Drop in Harrell's C when one feature is shuffled, over ``repeats`` shuffles each.

    Columns: ``feature``, ``c_drop`` (mean), ``ci_low`` and ``ci_high`` (2.5th and 97.5th
    percentiles over the repeats), ``repeats``; sorted by ``c_drop``. On the data given (in-sample
    when that is the training data): it ranks what the model relies on, not what would generalise.
    """
    event, time = np.asarray(y["event"], bool), np.asarray(y["time"], float)
    Za = np.asarray(Z, dtype=float)
    full = harrell_c(event, time, estimator.predict_risk(Za))
    # one seed per feature, so the features can run anywhere (riskmodel.core.parallel: here, or on
    # the Dask cluster in use) and give the same drops; results come back in feature order
    seeds = np.random.SeedSequence(seed).spawn(len(names))
    units = [(j, repeats, s) for j, s in enumerate(seeds)]
    rows = []
    for name, drops in zip(
        names, parallel_map(_feature_drops, units, shared=(estimator, Za, event, time, full)), strict=True
    ):
        low, high = np.percentile(drops, [2.5, 97.5])
        rows.append({"feature": name, "c_drop": drops.mean(), "ci_low": low, "ci_high": high, "repeats": repeats})
    return pd.DataFrame(rows).sort_values("c_drop", ascending=False, kind="stable").reset_index(drop=True)


def _feature_drops(
    estimator: Any,
    Za: np.ndarray,
    event: np.ndarray,
    time: np.ndarray,
    full: float,
    unit: tuple[int, int, np.random.SeedSequence],
) -> np.ndarray:
    """The drops in Harrell's C over ``repeats`` shuffles of column ``j``."""
    j, repeats, seed = unit
    rng = np.random.default_rng(seed)
    n = len(Za)
    # every shuffle's rows stacked and scored in one prediction per batch (a forest or boosted
    # model pays its per-call overhead once, not once per shuffle); each patient's prediction is
    # its own row's, so each shuffle's C is the one it would be alone (tests/test_train_speed2.py)
    per_batch = max(1, min(repeats, BATCH_ROWS // max(n, 1)))
    drops = np.empty(repeats)
    for start in range(0, repeats, per_batch):
        k = min(per_batch, repeats - start)
        stacked = np.tile(Za, (k, 1))
        for r in range(k):
            stacked[r * n : (r + 1) * n, j] = rng.permutation(Za[:, j])
        risk = estimator.predict_risk(stacked)
        for r in range(k):
            drops[start + r] = full - harrell_c(event, time, risk[r * n : (r + 1) * n])
    return drops
