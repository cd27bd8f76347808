"""The report's "Dose-response" section: a continuous dose's partial effect on the log hazard, its
tests, and the threshold analysis (:mod:`riskmodel.validation.dose_response`,
:mod:`riskmodel.validation.threshold`).

The figure draws the curve as ``rms::Predict`` plots it (log hazard ratio against the reference
dose, pointwise 95% band, the pre-specified cut-off marked) with a rug of the observed doses. The
report is shareable and passes the PHI guard, so **the rug is binned**: a strip of patient counts
per dose bin (:func:`binned_rug`), never one tick per patient's exact dose; the curve runs from the
5th smallest to the 5th largest dose, so neither does it end on one patient's extreme.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.core.csvout import write_safe_csv
from riskmodel.reporting.page import json_safe, table_html
from riskmodel.reporting.plots import figure_html, pyplot
from riskmodel.validation.dose_response import DoseResponse, dose_response
from riskmodel.validation.threshold import ThresholdAnalysis, threshold_analysis

__all__ = ["band_curve", "binned_rug", "dose_response_plot", "dose_section", "rug_strip"]


def _bin_width(values: np.ndarray, bins: int = 20) -> float:
    """A round width (1, 2 or 5 × 10^k) giving about ``bins`` bins over the values' range."""
    span = float(np.ptp(values)) or 1.0
    raw = span / bins
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def binned_rug(dose: Any, width: float | None = None) -> pd.DataFrame:
    """Patients per dose bin (``bin_low`` ≤ dose < ``bin_high``), bins on multiples of ``width``.

    >>> binned_rug([101.0, 103.5, 109.9, 110.0], width=5).to_dict(orient="list")
    {'bin_low': [100.0, 105.0, 110.0], 'bin_high': [105.0, 110.0, 115.0], 'patients': [2, 1, 1]}
    """
    x = np.asarray(dose, float)
    x = x[~np.isnan(x)]
    w = _bin_width(x) if width is None else float(width)
    low = np.floor(x / w) * w
    edges, counts = np.unique(low, return_counts=True)
    return pd.DataFrame({"bin_low": edges, "bin_high": edges + w, "patients": counts})


def dose_response_plot(response: DoseResponse, rug: pd.DataFrame, cutoff: float | None, title: str, xlabel: str) -> Any:
    """Log hazard ratio against the reference dose with its band, the cut-off marked, the binned rug."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    c = response.curve
    band_curve(ax, c["dose"], c, f"restricted cubic spline, {len(response.knots)} knots")
    if cutoff is not None:
        ax.axvline(cutoff, color="C3", ls="--", lw=1.2, label=f"{cutoff:g}: the cut-off tested")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"log hazard ratio vs {response.reference:g}")
    ax.set_title(title)
    rug_strip(fig, ax, rug)
    return fig


def band_curve(ax: Any, x: Any, curve: pd.DataFrame, label: str) -> None:
    """The log hazard ratio of ``curve`` against ``x`` (labelled ``label``), its pointwise 95% band
    (``lower``, ``upper``) and the line of no effect, on ``ax``."""
    ax.fill_between(x, curve["lower"], curve["upper"], color="C0", alpha=0.2, lw=0, label="pointwise 95% band")
    ax.plot(x, curve["log_hr"], color="C0", lw=1.8, label=label)
    ax.axhline(0, color="0.5", lw=0.8)


def rug_strip(fig: Any, ax: Any, rug: pd.DataFrame) -> None:
    """The binned rug (:func:`binned_rug`) as bars behind ``ax``, along its bottom sixth; then the
    legend and a tight layout of ``fig``."""
    strip = ax.twinx()
    strip.bar(rug["bin_low"], rug["patients"], width=rug["bin_high"] - rug["bin_low"], align="edge", color="0.8")
    strip.set_ylim(0, 6 * max(float(rug["patients"].max()), 1.0))
    strip.set_yticks([])
    strip.set_ylabel("patients per bin (rug, binned)", color="0.4")
    ax.set_zorder(strip.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()


def _tests_sentence(response: DoseResponse) -> str:
    overall, nonlinear = response.test("overall"), response.test("nonlinear")
    w_overall, w_nonlinear = response.test("overall", "Wald"), response.test("nonlinear", "Wald")
    return (
        f"Likelihood-ratio tests: overall χ² {overall[0]:.2f} on {overall[1]} df (p {overall[2]:.3f}); "
        f"non-linearity χ² {nonlinear[0]:.2f} on {nonlinear[1]} df (p {nonlinear[2]:.3f}). Wald tests as rms's "
        f"anova: overall {w_overall[0]:.2f} (p {w_overall[2]:.3f}), non-linear {w_nonlinear[0]:.2f} "
        f"(p {w_nonlinear[2]:.3f}). Knots at {', '.join(f'{k:.4g}' for k in response.knots)} (Harrell's "
        f"quantiles); the reference is the median, {response.reference:g}. {response.events} events in "
        f"{response.patients} patients"
        + (f"; {response.missing} without a dose left out." if response.missing else ".")
    )


def dose_section(
    time: Any,
    event: Any,
    dose: Any,
    out: Path,
    prefix: str,
    summary: dict[str, Any],
    *,
    label: str,
    name: str = "D90",
    unit: str = "Gy",
    cutoff: float | None = 110.0,
    knots: int = 4,
    n_resamples: int = 200,
    seed: int = 0,
) -> list[str]:
    """HTML parts of the section; tables ``{prefix}_dose_response.csv``, ``{prefix}_dose_tests.csv``,
    ``{prefix}_threshold.csv`` and ``{prefix}_dose_rug.csv`` in ``out``; the numbers in ``summary``.

    A dose the spline cannot be fitted to (too few distinct values, a fit that does not converge)
    gives a note instead of the section.
    """
    heading = f"<h3>{html.escape(label)}: dose-response of {html.escape(name)}, without a cut-off</h3>"
    try:
        response = dose_response(time, event, dose, knots=knots, name=name)
        threshold: ThresholdAnalysis | None = None
        if cutoff is not None:
            threshold = threshold_analysis(
                time,
                event,
                dose,
                cutoff=cutoff,
                knots=response.knots.tolist(),
                n_resamples=n_resamples,
                seed=seed,
                name=name,
                unit=unit,
            )
    except (ValueError, np.linalg.LinAlgError) as exc:
        return [heading, f"<p class='note'>No dose-response analysis: {html.escape(str(exc).splitlines()[0])}.</p>"]
    rug = binned_rug(dose)
    write_safe_csv(response.curve, out / f"{prefix}_dose_response.csv", index=False)
    write_safe_csv(response.tests, out / f"{prefix}_dose_tests.csv", index=False)
    write_safe_csv(rug, out / f"{prefix}_dose_rug.csv", index=False)
    summary["knots"] = response.knots.tolist()
    summary["reference"] = response.reference
    summary["tests"] = response.tests.to_dict(orient="records")
    title = f"{label}: partial effect of {name} on the log hazard"
    parts = [
        heading,
        figure_html(dose_response_plot(response, rug, cutoff, title, f"{name} ({unit})" if unit else name), title),
        f"<p>{html.escape(_tests_sentence(response))} The rug under the curve is binned (patients per "
        f"{float(rug['bin_high'].iloc[0] - rug['bin_low'].iloc[0]):g} {html.escape(unit)}): this report is shareable, "
        "so no single patient's dose is drawn.</p>",
        table_html(response.tests, f"{label}: tests of {name} (rcs, {len(response.knots)} knots)"),
    ]
    if threshold is not None:
        write_safe_csv(threshold.table, out / f"{prefix}_threshold.csv", index=False)
        summary["threshold"] = json_safe(
            {
                "table": threshold.table.to_dict(orient="records"),
                "cut_point": threshold.cut_point,
                "verdict": threshold.verdict,
                "resamples": threshold.n_resamples,
                "failed": threshold.failed,
            }
        )
        parts.append(
            table_html(
                threshold.table,
                f"{label}: {name} linear, as a spline, dichotomised at {cutoff:g} {unit} and at a data-driven "
                f"cut-point (Harrell's C corrected by {threshold.n_resamples} bootstrap resamples, "
                f"{threshold.failed} left out; the search repeated in each). AIC treats every cut-point as "
                "fixed; the data-driven row's p is corrected for its search (Lausen & Schumacher 1992)",
            )
        )
        parts.append(f"<p><b>Threshold?</b> {html.escape(threshold.verdict)}</p>")
    return parts
