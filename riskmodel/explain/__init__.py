"""Explanations of every family: SHAP values (exact where possible), what-if sweeps, and
permutation importance. See :mod:`riskmodel.explain.shap_values` for which Shapley values."""

from __future__ import annotations

from riskmodel.explain.importance import permutation_importance
from riskmodel.explain.shap_values import MAX_EXACT_FEATURES, explain, mean_abs, model_output
from riskmodel.explain.trees import forest_tree_dicts, xgboost_tree_dicts
from riskmodel.explain.whatif import what_if

__all__ = [
    "MAX_EXACT_FEATURES",
    "explain",
    "forest_tree_dicts",
    "mean_abs",
    "model_output",
    "permutation_importance",
    "what_if",
    "xgboost_tree_dicts",
]
