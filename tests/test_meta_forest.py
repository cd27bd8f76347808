"""The forest plot of a pooled measure draws what the meta-analysis computed, and only aggregates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.patches import Polygon

from riskmodel.errors import UserInputError
from riskmodel.reporting.forest import meta_forest_plot
from riskmodel.reporting.plots import figure_png, pyplot
from riskmodel.stats.meta import pool_c_index, pool_log_oe

C = [0.71, 0.66, 0.78, 0.74]
SE = [0.03, 0.04, 0.025, 0.05]


def _table(estimates: list[float], lower: list[float], upper: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "estimate": estimates,
            "lower": lower,
            "upper": upper,
            "patients": [120, 80, 200, 60],
            "events": [40, 22, 90, 15],
        },
        index=pd.Index(["Leeds", "Oslo", "Lyon", "Graz"], name="centre"),
    )


def test_the_forest_plot_draws_each_centre_the_diamond_and_the_prediction_interval() -> None:
    pooled = pool_c_index(C, SE)
    lower = [c - 1.96 * s for c, s in zip(C, SE, strict=True)]
    upper = [c + 1.96 * s for c, s in zip(C, SE, strict=True)]
    fig = meta_forest_plot(_table(C, lower, upper), pooled)
    ax = fig.axes[0]
    squares = next(c for c in ax.collections if isinstance(c, PathCollection))
    np.testing.assert_allclose(squares.get_offsets()[:, 0], C)
    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    spans = sorted((float(s[0, 0]), float(s[1, 0])) for s in segments)
    assert (pooled.pi_lower, pooled.pi_upper) in [pytest.approx(s) for s in spans]
    for lo, hi in zip(lower, upper, strict=True):
        assert (lo, hi) in [pytest.approx(s) for s in spans]
    diamond = next(p for p in ax.patches if isinstance(p, Polygon)).get_xy()
    assert diamond[:, 0].min() == pytest.approx(pooled.lower)
    assert diamond[:, 0].max() == pytest.approx(pooled.upper)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "Leeds (120 patients, 40 events)"
    assert labels[-1] == "Random effects (REML)"
    title = ax.get_title()
    assert f"{pooled.meta.tau2:.3g}" in title
    assert f"I² = {pooled.meta.i2:.0f}%" in title
    assert figure_png(fig).startswith(b"\x89PNG")


def test_o_over_e_is_drawn_on_a_log_axis_around_one() -> None:
    oe = [0.8, 1.2, 1.05, 0.9]
    pooled = pool_log_oe(oe, observed=[40, 22, 90, 15])
    fig = meta_forest_plot(_table(oe, [x * 0.8 for x in oe], [x * 1.25 for x in oe]), pooled)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(line.get_xdata()[0] == 1.0 for line in ax.get_lines())
    pyplot().close(fig)


def test_a_table_that_does_not_match_the_pooling_is_refused() -> None:
    pooled = pool_c_index(C, SE)
    with pytest.raises(UserInputError, match="3 centres in the table but 4 were pooled"):
        meta_forest_plot(_table(C, C, C).iloc[:3], pooled)
    with pytest.raises(UserInputError, match="lacks the column"):
        meta_forest_plot(_table(C, C, C).drop(columns="upper"), pooled)
