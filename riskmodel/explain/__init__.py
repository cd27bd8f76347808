"""Explanations of every family: SHAP values (exact where possible), what-if sweeps, and
permutation importance. See :mod:`riskmodel.explain.shap_values` for which Shapley values."""

from __future__ import annotations

from riskmodel.explain.importance import permutation_importance
from riskmodel.explain.over_time import OverTime, explain_over_time
from riskmodel.explain.shap_values import MAX_EXACT_FEATURES, explain, interventional_shap, mean_abs, model_output
from riskmodel.explain.trees import forest_tree_dicts, xgboost_tree_dicts
from riskmodel.explain.whatif import what_if

__all__ = [
    "MAX_EXACT_FEATURES",
    "OverTime",
    "explain",
    "explain_over_time",
    "forest_tree_dicts",
    "interventional_shap",
    "mean_abs",
    "model_output",
    "permutation_importance",
    "what_if",
    "xgboost_tree_dicts",
]
