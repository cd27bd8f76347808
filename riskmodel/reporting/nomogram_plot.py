"""Drawing a nomogram in the ``rms`` layout, and writing it with its points table.

Rows from the top: a 0-100 points axis; one axis per predictor at its points (a log feature's ticks
fall at log spacing, a spline's at its non-linear scale; ticks closer than a label's width, or
running backwards, alternate above and below the line; a tick with no room either side stays
unlabelled); total points; the linear predictor; one survival-probability axis per horizon (a
Fine-Gray model: one axis of the event of interest's CIF per horizon, and a caption saying the
competing event's CIF is not drawn). The figure carries only the model's axes (clinical values
within the stored training ranges), never a patient's row or identifier.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import atomic_write_bytes, atomic_write_text
from riskmodel.errors import UserInputError
from riskmodel.reporting.nomogram import Nomogram, nomogram_table
from riskmodel.reporting.plots import figure_html, pyplot
from riskmodel.scoring import RiskModel

__all__ = ["FORMATS", "nomogram_figure", "nomogram_html", "write_nomogram"]

FORMATS = ("svg", "png", "pdf")
_LEFT = -4.0  # labels end here (points coordinates)
_CROWDED = 4.5  # ticks closer than this (points) alternate their labels


def _row(ax: Any, y: float, label: str, positions: list[float], ticks: list[str]) -> None:
    """One axis: a line over its ticks, the tick marks, their labels, the axis name at the left."""
    ax.text(_LEFT, y, label, ha="right", va="center", fontsize=8.5)
    if not positions:
        ax.text(0, y, "(no ticks within reach)", ha="left", va="center", fontsize=7, color="#777")
        return
    ax.plot([min(positions), max(positions)], [y, y], color="black", lw=0.8)
    last = {True: -1e9, False: -1e9}  # where the last label above / below the line sits
    for x, text in sorted(zip(positions, ticks, strict=True), key=lambda pair: pair[0]):
        ax.plot([x, x], [y, y + 0.12], color="black", lw=0.8)
        room = _CROWDED * max(1, len(text)) / 3
        up = x - last[True] >= room
        if not up and x - last[False] < room:
            continue  # no room on either side: the tick stays, unlabelled
        last[up] = x
        ax.text(x, y + (0.18 if up else -0.2), text, ha="center", va="bottom" if up else "top", fontsize=7)


def nomogram_figure(nom: Nomogram, title: str | None = None) -> Any:
    """The nomogram as a matplotlib figure."""
    plt = pyplot()
    n_rows = 1 + len(nom.axes) + 2 + len(nom.horizons)
    fig, ax = plt.subplots(figsize=(10, 0.55 * n_rows + 1.0))
    y = float(n_rows)
    _row(ax, y, "Points", [float(p) for p in range(0, 101, 10)], [str(p) for p in range(0, 101, 10)])
    for a in nom.axes:
        y -= 1
        _row(ax, y, a.label, a.points, a.ticks)
    totals = nom.total_ticks()
    stretch = 100.0 / max(totals[-1], 1e-12)  # the total-points axes span the same width as 0-100
    y -= 1
    _row(ax, y, "Total points", [t * stretch for t in totals], [f"{t:g}" for t in totals])
    y -= 1
    lps = nom.lp_ticks()
    _row(ax, y, "Linear predictor", [(v - nom.intercept) * nom.scale * stretch for v in lps], [f"{v:g}" for v in lps])
    for h in nom.horizons:
        y -= 1
        ticks = nom.probability_ticks(h)
        label = f"{h:g}-month {nom.endpoint.upper()} probability" if nom.outcome == "survival" else nom.axis_label(h)
        _row(ax, y, label, [t * stretch for _, t in ticks], [f"{p:g}" for p, _ in ticks])
    ax.set_xlim(-45, 104)
    ax.set_ylim(y - 0.8, n_rows + 0.7)
    ax.axis("off")
    heading = title or f"Nomogram: {nom.endpoint.upper()}, time zero: {nom.time_origin}"
    if nom.outcome == "cif":
        heading += f" (Fine-Gray model of {nom.events[0]})\n{nom.caption}"
    ax.set_title(heading, fontsize=10, loc="left")
    if nom.notes:
        fig.text(0.01, 0.005, "\n".join(nom.notes), fontsize=6.5, color="#a00", va="bottom")
    return fig


def nomogram_html(model: RiskModel) -> str:
    """The model report's nomogram section (figure and points table), or a note saying why not."""
    try:
        nom = nomogram_table(model)
    except UserInputError as exc:
        return f"<h3>Nomogram</h3><p>{html.escape(str(exc))}</p>"
    table = nom.points_table()
    what = "the survival probability at each horizon."
    if nom.outcome == "cif":
        what = (
            f"the cumulative incidence of {nom.events[0]} at each horizon (the Fine-Gray model of the event, "
            f"{nom.events[1]} competing). {nom.caption}"
        )
    return (
        "<h3>Nomogram</h3><p>Points per predictor value as <code>rms::nomogram</code> scales them (the widest "
        "predictor spans 0-100), from the fitted model's coefficients; total points give the linear predictor "
        f"and {html.escape(what)} Axes cover the training ranges only.</p>"
        + figure_html(nomogram_figure(nom), f"nomogram of the {model.endpoint.upper()} model")
        + table.to_html(index=False, border=0, escape=True, classes="t", float_format=lambda v: f"{v:.1f}")
    )


def write_nomogram(model: RiskModel, out: Path, horizons: list[float] | None = None) -> tuple[Path, Path]:
    """Draw the nomogram into ``out`` (.svg, .png or .pdf) and its points table beside it
    (``<stem>_points.csv``). Returns both paths."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserInputError(f"--out {out}: the nomogram is written as .svg, .png or .pdf, not {out.suffix or 'none'}")
    nom = nomogram_table(model, horizons)
    import io

    plt = pyplot()
    fig = nomogram_figure(nom)
    buf = io.BytesIO()
    with plt.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "riskmodel"}):
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=_metadata(fmt))
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    table_path = out.with_name(f"{out.stem}_points.csv")
    atomic_write_text(table_path, safe_csv_text(nom.points_table(), index=False))
    return out, table_path


def _metadata(fmt: str) -> dict[str, Any]:
    """No creation date in the file (reproducible bytes)."""
    if fmt == "svg":
        return {"Date": None}
    if fmt == "pdf":
        return {"CreationDate": None}
    return {}
