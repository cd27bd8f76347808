"""The forest plot of a measure pooled across centres (internal-external validation, meta-analysis).

One row per centre (its estimate and CI, a square sized by its random-effects weight), the pooled
estimate as a diamond spanning its CI, and the prediction interval for a new centre as a bar
through the diamond (the layout of Riley, Higgins & Deeks, *BMJ* 2011;342:d549, and of metafor's
``forest``). The figure is drawn from a per-centre table of aggregates and a
:class:`~riskmodel.stats.meta.PooledMeasure`; no patient row reaches it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.errors import UserInputError
from riskmodel.reporting.plots import pyplot
from riskmodel.stats.meta import PooledMeasure

__all__ = ["REFERENCE_LINES", "meta_forest_plot"]

# where a measure shows perfect performance (or none): drawn as a vertical line
REFERENCE_LINES = {"C-index": 0.5, "O/E": 1.0, "calibration slope": 1.0}
_LOG_AXIS = {"log"}


def _label(name: object, row: pd.Series) -> str:
    parts = [str(name)]
    counts = [f"{int(row[c])} {c}" for c in ("patients", "events") if c in row.index and pd.notna(row[c])]
    if counts:
        parts.append(f"({', '.join(counts)})")
    return " ".join(parts)


def _check(table: pd.DataFrame, pooled: PooledMeasure) -> None:
    missing = [c for c in ("estimate", "lower", "upper") if c not in table.columns]
    if missing:
        raise UserInputError(f"forest plot: the per-centre table lacks the column(s) {', '.join(missing)}")
    if len(table) != pooled.meta.k:
        raise UserInputError(f"forest plot: {len(table)} centres in the table but {pooled.meta.k} were pooled")
    values = table[["estimate", "lower", "upper"]].to_numpy(float)
    if not np.isfinite(values).all():
        raise UserInputError("forest plot: every centre's estimate and CI must be finite")
    if not all(math.isfinite(x) for x in (pooled.lower, pooled.upper, pooled.pi_lower, pooled.pi_upper)):
        raise UserInputError(f"forest plot: the pooled {pooled.measure}'s intervals are not finite")
    if pooled.scale in _LOG_AXIS and (values <= 0).any():
        raise UserInputError(f"forest plot: {pooled.measure} is drawn on a log axis; every value must be positive")


def meta_forest_plot(table: pd.DataFrame, pooled: PooledMeasure, title: str | None = None) -> Any:
    """A forest plot of ``pooled.measure``: per-centre rows, pooled diamond, prediction interval.

    ``table`` has one row per centre, indexed by the centre's name, in the order pooled, with
    columns ``estimate``, ``lower`` and ``upper`` (the centre's CI, on the measure's own scale) and
    optionally ``patients`` and ``events`` (shown beside the name). O/E is drawn on a log axis.
    """
    _check(table, pooled)
    plt = pyplot()
    k = len(table)
    fig, ax = plt.subplots(figsize=(6.4, 0.38 * (k + 3) + 1.3))
    rows = np.arange(k + 2, 2, -1)  # centres top down; the pooled row at y = 1
    est = table["estimate"].to_numpy(float)
    low = table["lower"].to_numpy(float)
    high = table["upper"].to_numpy(float)
    ax.hlines(rows, low, high, color="0.25", lw=1.2)
    sizes = 20 + 180 * pooled.meta.weights / max(float(pooled.meta.weights.max()), 1e-12)
    ax.scatter(est, rows, s=sizes, marker="s", color="C0", zorder=3)
    ax.hlines(1, pooled.pi_lower, pooled.pi_upper, color="C3", lw=2.5, label="95% prediction interval")
    diamond = np.array(
        [[pooled.lower, 1], [pooled.estimate, 1.32], [pooled.upper, 1], [pooled.estimate, 0.68], [pooled.lower, 1]]
    )
    ax.fill(diamond[:, 0], diamond[:, 1], color="C1", zorder=4, label="pooled (95% CI)")
    reference = REFERENCE_LINES.get(pooled.measure)
    if reference is not None:
        ax.axvline(reference, color="0.6", lw=1, ls="--")
    if pooled.scale in _LOG_AXIS:
        ax.set_xscale("log")
    meta = pooled.meta
    ax.set_yticks(
        [*rows, 1],
        [_label(name, row) for name, row in table.iterrows()] + [f"Random effects ({meta.method})"],
    )
    ax.set_ylim(0.2, k + 2.8)
    ax.set_xlabel(f"{pooled.measure} (95% CI)")
    summary = (
        f"pooled {pooled.estimate:.3g} ({pooled.lower:.3g} to {pooled.upper:.3g}); "
        f"prediction interval {pooled.pi_lower:.3g} to {pooled.pi_upper:.3g}\n"
        f"tau² = {meta.tau2:.3g} ({pooled.scale} scale), I² = {meta.i2:.0f}%, "
        f"Q = {meta.q:.2f} on {meta.k - 1} df"
    )
    ax.set_title(f"{title or pooled.measure}\n{summary}", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
    return fig
