"""Figures shared by the reports and the MLflow runs (matplotlib, headless).

Every function takes aggregated tables (never per-patient rows) and returns a matplotlib figure;
:func:`figure_png` and :func:`figure_html` turn one into PNG bytes or a self-contained ``<img>``.
The exceptions draw one unlabelled point per patient or death, as the standard plots do (SHAP's
beeswarm, the scaled Schoenfeld residuals); no identifier reaches them.
"""

from __future__ import annotations

import atexit
import base64
import gc
import html
import io
import pickle
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.reporting.page import format_p
from riskmodel.stats import PHTest, ph_smooth

__all__ = [
    "calibration_plot",
    "decision_curve_plot",
    "figure_html",
    "figure_png",
    "figure_pngs",
    "figure_worker",
    "forest_plot",
    "gc_paused",
    "importance_plot",
    "over_time_plot",
    "pyplot",
    "schoenfeld_plot",
    "shap_bar",
    "shap_beeswarm",
    "shap_waterfall",
    "stacked_cif_plot",
]


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (servers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def gc_paused() -> Iterator[None]:
    """Inside the block, no cyclic garbage collection (it is enabled again after, if it was).

    A matplotlib figure is thousands of small objects (artists, transforms, callback registries);
    building and drawing a few of them in a process that holds a fitted model, pandas and shap
    (a quarter of a million tracked objects) sets off a full collection every few hundred
    allocations, a fifth of the figures' CPU. The figures' garbage is collected after the block,
    by the next collection; what they draw is unchanged."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def figure_png(fig: Any, dpi: int = 110, *, one_layout: bool = False) -> bytes:
    """The figure as PNG bytes, cropped to its tight bounding box; the figure is closed.

    ``one_layout``: the tight box is read from the figure as built, at ``dpi``, and handed to
    ``savefig``, which then draws the figure once instead of twice (``bbox_inches="tight"`` lays the
    whole figure out in a first, unrendered draw only to measure it). For the global explanation
    figures (:mod:`riskmodel.reporting.shap_global`) the bytes are the same as without it (tested);
    a figure with a layout engine is laid out first either way.
    """
    import matplotlib

    buf = io.BytesIO()
    box: Any = "tight"
    if one_layout and fig.get_layout_engine() is None:
        shown_dpi = fig.dpi
        fig.dpi = dpi  # measured at the saved resolution, as savefig measures it
        try:
            box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
        finally:
            fig.dpi = shown_dpi
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=box)
    pyplot().close(fig)
    return buf.getvalue()


# the worker process of :func:`figure_worker` (None: every figure is drawn in this process)
_WORKER: list[Executor] = []


def _close_workers() -> None:
    while _WORKER:
        _WORKER.pop().shutdown(wait=True)  # figure_pngs waited for every figure it sent


atexit.register(_close_workers)


@contextmanager
def figure_worker() -> Iterator[None]:
    """Inside the block, :func:`figure_pngs` draws every other figure on one worker process while
    this process draws the rest (a ``train`` draws about 100 figures, most of their cost in
    ``savefig``; the worker starts at the first batch and ends with the block)."""
    if _WORKER:  # nested: the outer block's worker serves
        yield
        return
    from joblib.externals.loky import ProcessPoolExecutor as loky_pool  # main is not re-imported there

    _WORKER.append(loky_pool(max_workers=1))
    try:
        yield
    finally:
        _close_workers()


def _png_of_pickled(pickled: bytes, dpi: int, one_layout: bool = False) -> bytes:
    """A pickled figure's PNG (runs on the worker process; the bytes are those of :func:`figure_png`)."""
    pyplot()
    # a figure the parent process pickled, never a file
    return figure_png(pickle.loads(pickled), dpi, one_layout=one_layout)


def figure_pngs(figures: Mapping[str, Any], dpi: int = 110, *, one_layout: bool = False) -> dict[str, bytes]:
    """PNG bytes of several figures (each closed), by name in the order given: the same bytes as
    :func:`figure_png` of each (with ``one_layout``). Inside :func:`figure_worker`, every other figure
    is drawn on the worker process while this one draws the others; a figure that cannot be pickled
    is drawn here."""
    later: dict[str, tuple[bytes, Future[bytes]]] = {}
    if _WORKER and len(figures) > 1:
        for name in list(figures)[1::2]:
            try:
                pickled = pickle.dumps(figures[name])
            except (pickle.PicklingError, TypeError, AttributeError):
                continue
            later[name] = pickled, _WORKER[0].submit(_png_of_pickled, pickled, dpi, one_layout)
            pyplot().close(figures[name])
    here = {name: figure_png(fig, dpi, one_layout=one_layout) for name, fig in figures.items() if name not in later}
    for name, (pickled, future) in later.items():
        try:
            here[name] = future.result()
        except Exception:  # a worker that died: the figure is drawn here instead
            here[name] = _png_of_pickled(pickled, dpi, one_layout)
    return {name: here[name] for name in figures}


def figure_html(fig: Any, alt: str) -> str:
    """The figure as an ``<img>`` with the PNG inlined (the page stays one self-contained file)."""
    data = base64.b64encode(figure_png(fig)).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def calibration_plot(groups: pd.DataFrame, smooth: pd.DataFrame, title: str) -> Any:
    """Predicted against observed risk: KM per group with 95 % CIs, and the smoothed curve with its band.

    ``groups`` and ``smooth`` are :class:`riskmodel.calibration.CalibrationCurve`'s tables.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    top = float(max(groups[["predicted", "observed_high"]].max().max(), smooth["predicted"].max(), 0.05))
    top = min(1.0, top * 1.08)
    ax.plot([0, top], [0, top], color="0.6", ls="--", lw=1, label="ideal")
    ax.fill_between(
        smooth["predicted"],
        smooth["observed_low"],
        smooth["observed_high"],
        color="C0",
        alpha=0.2,
        lw=0,
        label="smoothed, 95% bootstrap band",
    )
    ax.plot(smooth["predicted"], smooth["observed"], color="C0", lw=1.8, label="smoothed (Cox, RCS)")
    low = (groups["observed"] - groups["observed_low"]).clip(lower=0).fillna(0)
    high = (groups["observed_high"] - groups["observed"]).clip(lower=0).fillna(0)
    ax.errorbar(
        groups["predicted"],
        groups["observed"],
        yerr=[low, high],
        fmt="o",
        color="C3",
        capsize=3,
        label="groups: Kaplan-Meier, 95% CI",
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted risk")
    ax.set_ylabel("observed risk")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def decision_curve_plot(table: pd.DataFrame, title: str) -> Any:
    """Net benefit against threshold probability: the model, treat-all and treat-none."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    ax.plot(table["threshold"], table["model"], color="C0", lw=1.8, label="model")
    ax.plot(table["threshold"], table["treat_all"], color="C1", lw=1.2, label="treat all")
    ax.plot(table["threshold"], table["treat_none"], color="0.3", lw=1.2, label="treat none")
    best = float(max(table["model"].max(), table["treat_all"].max(), 0.01))
    ax.set_ylim(-0.05 * max(best, 0.2), best * 1.15)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _shap_figure(draw: Any, width: float = 6.4, height: float = 4.2) -> Any:
    """Run a ``shap.plots`` function on a fresh figure and return that figure."""
    plt = pyplot()
    before = set(plt.get_fignums())
    plt.figure(figsize=(width, height))
    draw()
    fig = plt.gcf()
    for number in set(plt.get_fignums()) - before - {fig.number}:
        plt.close(number)  # shap's scatter opens a figure of its own
    fig.set_size_inches(width, height)
    return fig


def shap_beeswarm(explanation: Any, title: str) -> Any:
    """shap's beeswarm: one dot per patient and feature, coloured by the feature's value."""
    import shap

    # shap jitters the dots with NumPy's global generator: seeded here (and given back as it was), so
    # that one run's figure is the next run's, byte for byte
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002 - shap reads the global generator
    try:
        fig = _shap_figure(lambda: shap.plots.beeswarm(explanation, show=False, max_display=15))
    finally:
        np.random.set_state(state)  # noqa: NPY002
    fig.axes[0].set_title(title, fontsize=10)
    return fig


def shap_bar(explanation: Any, title: str) -> Any:
    """Mean |SHAP| per feature."""
    import shap

    fig = _shap_figure(lambda: shap.plots.bar(explanation, show=False, max_display=15))
    fig.axes[0].set_title(title, fontsize=10)
    return fig


def shap_waterfall(explanation: Any, title: str) -> Any:
    """One patient's explanation: from the base value to the prediction, feature by feature."""
    import shap

    fig = _shap_figure(lambda: shap.plots.waterfall(explanation, show=False, max_display=12), 6.4, 4.0)
    fig.axes[0].set_title(title, fontsize=10)
    return fig


def importance_plot(table: pd.DataFrame, title: str) -> Any:
    """Permutation importance: mean drop in C with its interval over repeats."""
    plt = pyplot()
    t = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(5.8, 0.35 * len(t) + 1.2))
    ax.errorbar(
        t["c_drop"],
        range(len(t)),
        xerr=[(t["c_drop"] - t["ci_low"]).clip(lower=0), (t["ci_high"] - t["c_drop"]).clip(lower=0)],
        fmt="o",
        color="C0",
        capsize=3,
    )
    ax.axvline(0, color="0.6", lw=1)
    ax.set_yticks(range(len(t)), t["feature"])
    ax.set_xlabel("drop in Harrell's C when shuffled (95% interval over repeats)")
    ax.set_title(title, fontsize=10)
    return fig


def forest_plot(table: pd.DataFrame, title: str) -> Any:
    """Hazard ratios with 95% CIs on a log axis (rows without a finite CI show the point only)."""
    plt = pyplot()
    t = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(5.8, 0.4 * len(t) + 1.2))
    low = (t["hr"] - t["hr_lower_95"]).where(t["hr_lower_95"].notna(), 0).clip(lower=0)
    high = (t["hr_upper_95"] - t["hr"]).where(t["hr_upper_95"].notna(), 0).clip(lower=0)
    finite = high.replace([float("inf")], 0)
    ax.errorbar(t["hr"], range(len(t)), xerr=[low, finite], fmt="s", color="C0", capsize=3)
    ax.axvline(1, color="0.6", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(t)), [str(i) for i in t.index])
    ax.set_xlabel("hazard ratio per unit (95% CI, log scale)")
    ax.set_title(title, fontsize=10)
    return fig


def schoenfeld_plot(test: PHTest, names: list[str], title: str, *, level: float = 0.95) -> Any:
    """β(t) per covariate: scaled Schoenfeld residuals against transformed time, as R's ``plot.cox.zph``.

    Each panel shows the residuals, their natural-spline smooth (4 df) with its pointwise ``level``
    band (R draws ± 2 se), and β̂, the constant effect the model assumes; a smooth that leaves the
    line of β̂ is an effect changing over time. The axis is spaced by the test's transform and
    labelled in months.
    """
    plt = pyplot()
    cols = min(len(names), 2)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.6 * rows), squeeze=False)
    x = test.transformed_time
    ticks = _month_ticks(test)
    for j, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        y = test.scaled_residuals[:, j]
        ax.scatter(x, y, s=14, color="0.35", alpha=0.7, lw=0, label="scaled Schoenfeld residual")
        smooth = ph_smooth(test, j, level=level)
        if smooth is not None:
            ax.fill_between(
                smooth.grid, smooth.lower, smooth.upper, color="C0", alpha=0.2, lw=0, label=f"{level:.0%} band"
            )
            ax.plot(smooth.grid, smooth.fit, color="C0", lw=1.8, label="spline smooth (4 df)")
        ax.axhline(float(test.coef[j]), color="C3", ls="--", lw=1, label="β̂ (constant effect)")
        if ticks is not None:
            ax.set_xticks(*ticks)
        ax.set_xlabel(f"months ({test.transform} scale)" if test.transform != "identity" else "months")
        ax.set_ylabel(f"β(t) for {name}")
        ax.set_title(f"{name}: χ² {test.chisq[j]:.2f}, p {format_p(float(test.p[j]))}", fontsize=9)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _month_ticks(test: PHTest, count: int = 6) -> tuple[np.ndarray, list[str]] | None:
    """Ticks on a transformed axis at round times in months, as R's plot does; None on a month axis."""
    x, t = test.transformed_time, test.event_time
    if test.transform == "identity" or np.ptp(x) == 0:
        return None
    first = np.unique(x, return_index=True)[1]
    months = np.interp(np.linspace(x.min(), x.max(), count), x[first], t[first])
    months = np.unique([float(f"{m:.2g}") for m in months])
    months = months[(months >= t.min()) & (months <= t.max())]  # rounding can step past the last death
    return np.interp(months, t[first], x[first]), [f"{m:g}" for m in months]


def stacked_cif_plot(
    grid: np.ndarray,
    cif: np.ndarray,
    cif_competing: np.ndarray,
    labels: tuple[str, str, str],
    horizons: list[float],
    xlabel: str,
    title: str,
) -> Any:
    """One patient's competing-risk prediction as stacked bands over ``grid`` (months): the CIF of
    the event at the bottom, the competing event's CIF stacked on it, the event-free probability the
    remainder up to 1. ``labels``: (event, competing event, neither); dotted lines at ``horizons``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    top = cif + cif_competing
    ax.fill_between(grid, 0, cif, step="post", color="C3", alpha=0.75, lw=0, label=labels[0])
    ax.fill_between(grid, cif, top, step="post", color="0.55", alpha=0.75, lw=0, label=labels[1])
    ax.fill_between(grid, top, 1, step="post", color="C2", alpha=0.35, lw=0, label=labels[2])
    for h in horizons:
        ax.axvline(h, color="0.2", lw=0.8, ls=":")
    ax.set_xlim(0, float(grid[-1]))
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=10)
    return fig


def over_time_plot(table: pd.DataFrame, title: str, ylabel: str, max_lines: int = 8) -> Any:
    """Contribution curves over time (SurvSHAP(t)-style): one line per feature (rows of ``table``,
    times as columns), the ``max_lines`` with the largest area drawn, a zero line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    order = table.abs().sum(axis=1).sort_values(ascending=False).index[:max_lines]
    times = np.asarray(table.columns, dtype=float)
    for k, name in enumerate(order):
        ax.plot(times, table.loc[name].to_numpy(float), color=f"C{k % 10}", lw=1.6, marker="o", ms=3, label=str(name))
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("months")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return fig
