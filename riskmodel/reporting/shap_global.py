"""The global explanation figures of a trained model, in clinical labels and values.

A model's columns are encodings ("m1", "log_lesion_volume_cm3", "t_stage_T3"); a clinician reads
the variables they came from. Here every figure speaks of the variables:

* the SHAP values of the columns of one input are summed into one per input (a categorical's
  one-hot columns, a spline's terms; Shapley values are additive over a group of players, so the sum
  is the group's share of the prediction, Lundberg & Lee 2017) and named by the input's clinical
  label and unit (:func:`riskmodel.features.labels.input_label`, ``input_unit``);
* the beeswarm colours by the input's clinical value (a categorical by its level's place), and the
  dependence plots put that value, in its unit, on the x-axis, on a log axis where the model reads
  the logarithm (lesion volume in cm³, not its log);
* the permutation importance, which is per model column, names each column clinically
  (:func:`riskmodel.features.labels.column_label`).

A column computed from several inputs (BED) stays a group of its own. The figures are the run's
artifacts and the model report's "Explanations" section (:func:`global_figures`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.features.declared import declaration_of
from riskmodel.features.labels import column_label, feature_input, input_label, variable_label
from riskmodel.reporting.plots import figure_pngs, gc_paused, importance_plot, pyplot, shap_bar, shap_beeswarm

__all__ = [
    "DEPENDENCE_INPUTS",
    "clinical_explanation",
    "explanation_figures",
    "global_figures",
    "input_groups",
]

DEPENDENCE_INPUTS = ("d90", "recurrence_interval", "volume")  # inputs whose dependence plot is drawn


def input_groups(features: Sequence[str], inputs: Sequence[str]) -> dict[str, list[int]]:
    """Model columns grouped by the input they encode, in the columns' order; a column computed from
    several inputs is its own group, keyed by its name.

    >>> input_groups(["d90_gy", "t_stage_T2", "t_stage_T3", "bed_implant_gy_ab10"], ["d90_gy", "t_stage"])
    {'d90_gy': [0], 't_stage': [1, 2], 'bed_implant_gy_ab10': [3]}
    """
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(features):
        groups.setdefault(feature_input(name, inputs) or name, []).append(j)
    return groups


def _clinical_values(X: pd.DataFrame, name: str) -> np.ndarray:
    """An input's values as numbers for colouring: the value, 1/0 for yes/no, a level's place."""
    if name not in X.columns:
        return np.full(len(X), np.nan)
    column = X[name]
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().sum() == column.notna().sum():
        return numbers.to_numpy(float)
    if isinstance(column.dtype, pd.CategoricalDtype):  # the cohort's own level order (T1 < T2, PD < … < CR)
        codes = column.cat.codes.to_numpy(float)
        return np.where(codes < 0, np.nan, codes)
    place = {level: i for i, level in enumerate(sorted(str(v) for v in pd.unique(column.dropna())))}
    return np.array([place.get(str(v), np.nan) if pd.notna(v) else np.nan for v in column], dtype=float)


def clinical_explanation(explanation: Any, X: pd.DataFrame, inputs: Sequence[str], declaration: Any = None) -> Any:
    """One SHAP value per input (its columns' sum), named and valued clinically (module docstring)."""
    import shap

    names = [str(n) for n in explanation.feature_names]
    groups = input_groups(names, inputs)
    values = np.asarray(explanation.values, float)
    summed = np.column_stack([values[:, idx].sum(axis=1) for idx in groups.values()])
    data = np.column_stack(
        [
            _clinical_values(X, key) if key in inputs else np.asarray(explanation.data, float)[:, idx[0]]
            for key, idx in groups.items()
        ]
    )
    labels = [variable_label(k, declaration) if k in inputs else column_label(k, inputs) for k in groups]
    return shap.Explanation(values=summed, base_values=explanation.base_values, data=data, feature_names=labels)


def _dependence(values: np.ndarray, x: np.ndarray, log: bool, title: str, xlabel: str) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    ax.scatter(x, values, s=12, color="C0", alpha=0.7, lw=0)
    ax.axhline(0, color="0.6", lw=0.8)
    if log:  # ticks at 1, 2, 5 × 10^k, written as plain numbers (cm³, not 2×10¹)
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SHAP value (log hazard or risk score)")
    ax.set_title(title, fontsize=10)
    return fig


def explanation_figures(
    explanation: Any,
    X: pd.DataFrame,
    inputs: Sequence[str],
    importance: pd.DataFrame,
    label: str,
    declaration: Any,
    importance_label: str | None = None,
) -> dict[str, tuple[Any, str]]:
    """(matplotlib figure, title) by artifact name (open: the caller renders and closes them)."""
    grouped = clinical_explanation(explanation, X, inputs, declaration)
    names = [str(n) for n in explanation.feature_names]
    relabelled = importance.assign(feature=[column_label(str(f), inputs, declaration) for f in importance["feature"]])
    titles = {
        "plots/shap_beeswarm.png": f"{label}: SHAP of the risk score, per variable",
        "plots/shap_bar.png": f"{label}: mean |SHAP| of the risk score, per variable",
        "plots/permutation_importance.png": f"{importance_label or label}: permutation importance (in-sample)",
    }
    out = {
        "plots/shap_beeswarm.png": (
            shap_beeswarm(grouped, titles["plots/shap_beeswarm.png"]),
            titles["plots/shap_beeswarm.png"],
        ),
        "plots/shap_bar.png": (shap_bar(grouped, titles["plots/shap_bar.png"]), titles["plots/shap_bar.png"]),
        "plots/permutation_importance.png": (
            importance_plot(relabelled, titles["plots/permutation_importance.png"]),
            titles["plots/permutation_importance.png"],
        ),
    }
    for k, (key, idx) in enumerate(input_groups(names, inputs).items()):
        x = _clinical_values(X, key) if key in inputs else np.full(len(X), np.nan)
        if not any(d in key for d in DEPENDENCE_INPUTS) or np.unique(x[~np.isnan(x)]).size <= 2:
            continue
        log = any(names[j] == f"log_{key}" for j in idx)
        title = f"{label}: SHAP dependence on {input_label(key, declaration)}"
        xlabel = variable_label(key, declaration) + (", log axis" if log else "")
        out[f"plots/shap_dependence_{key}.png"] = (_dependence(grouped.values[:, k], x, log, title, xlabel), title)
    return out


def global_figures(
    explanation: Any,
    X: pd.DataFrame,
    features: Any,
    importance: pd.DataFrame,
    label: str,
    importance_label: str | None = None,
) -> tuple[dict[str, bytes], str]:
    """(PNG bytes by artifact name, the model report's "Explanations" section as HTML).

    ``explanation``: SHAP of the risk score on the patients ``X`` (their inputs, in its rows' order);
    ``features``: the model's fitted transformer (the cohort columns it reads, a declared cohort's
    declaration); ``importance``: the permutation importance table (its ``feature`` column: model columns).
    """
    import base64

    inputs = [str(c) for c in features.input_columns()]
    declaration = getattr(features, "declaration", None)
    if isinstance(declaration, dict):
        declaration = declaration_of(declaration)

    with gc_paused():  # (the figures' many small objects set off full collections: riskmodel.reporting.plots)
        drawn = explanation_figures(explanation, X, inputs, importance, label, declaration, importance_label)
        # each figure laid out once: the same bytes (tests/test_figures_once.py)
        pngs = figure_pngs({name: fig for name, (fig, _) in drawn.items()}, one_layout=True)
    images = "".join(
        f'<figure><img alt="{html.escape(drawn[name][1])}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>'
        for name, png in pngs.items()
    )
    section = (
        "<h2>Explanations (SHAP of the risk score, in-sample)</h2><p>Shapley values of the model's risk score "
        "on the training patients, per clinical variable (a variable's encoded columns summed), against an "
        "average patient; dependence plots in the variable's own unit. They describe the model, not causes. "
        "Permutation importance: the drop in Harrell's C when one column is shuffled.</p>" + images
    )
    return pngs, section
