"""The pieces every statistics report's page is made of: an HTML table with its caption, a
Kaplan-Meier figure with its bands and numbers at risk, the page around them, and JSON-safe values
for ``summary.json``. Aggregates only: a figure's curves come from groups, never from named rows.
"""

from __future__ import annotations

import html
import warnings
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["format_p", "format_probability", "json_safe", "km_plot", "page", "table_html"]


def format_probability(p: float, digits: int = 2) -> str:
    """A probability as a page shows it: never "0.00" or "1.00" for one that is not.

    >>> format_probability(0.4567), format_probability(0.003), format_probability(0.9991), format_probability(0.0)
    ('0.46', '< 0.01', '> 0.99', '0.00')
    >>> format_probability(float("nan"))
    '–'
    """
    if p != p:
        return "–"
    step = 10.0**-digits
    if 0 < p < step / 2:
        return f"< {step:.{digits}f}"
    if 1 - step / 2 <= p < 1:
        return f"> {1 - step:.{digits}f}"
    return f"{p:.{digits}f}"


def format_p(p: float, spec: str = ".3g") -> str:
    """A p-value: "< 0.001" below 0.001, else as ``spec`` formats it.

    >>> format_p(0.0423), format_p(2e-7), format_p(0.0123, ".4f"), format_p(float("nan"))
    ('0.0423', '< 0.001', '0.0123', '–')
    """
    if p != p:
        return "–"
    return "< 0.001" if p < 0.001 else format(p, spec)


def _is_p_column(name: object) -> bool:
    text = str(name).strip().lower()
    return text in ("p", "p-value", "p value") or text.endswith((" p", "_p")) or text.startswith("p ")


def table_html(frame: pd.DataFrame, caption: str) -> str:
    """The table under an ``<h3>`` caption; numbers to 3 significant digits, p-values below 0.001 as
    "< 0.001", NaN as an en dash."""
    p_columns = [c for c in frame.columns if _is_p_column(c) and pd.api.types.is_float_dtype(frame[c])]
    if p_columns:
        frame = frame.assign(**{str(c): frame[c].map(format_p) for c in p_columns})
    body = frame.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.3g}", border=0, escape=True)
    return f"<h3>{html.escape(caption)}</h3>{body}"


def km_plot(groups: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str = "months") -> Any:
    """Kaplan-Meier curves of ``groups`` (label: (time, event)): 95% bands, censoring ticks, numbers at risk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fig, ax = plt.subplots(figsize=(7, 4.6))
    fitters = []
    for label, (t, e) in groups.items():
        km = KaplanMeierFitter(label=f"{label} (n={len(t)})").fit(t, e)
        km.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"marker": "|", "ms": 7})
        fitters.append(km)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    fig.tight_layout()
    return fig


def page(parts: list[str]) -> str:
    """One self-contained HTML page of ``parts``."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>riskmodel report</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}.note{background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def json_safe(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN and infinities (e.g. an open CI) to null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
