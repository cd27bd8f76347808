"""Tree ensembles in shap's tree-dict form, and path-dependent TreeSHAP over them.

A survival forest's compact trees and xgboost's boosters are converted here: each leaf holds the value
being explained (risk or S(t)), each internal node the cover-weighted mean of its children, and
shap's compiled TreeSHAP runs on the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskmodel.errors import UserInputError

__all__ = ["forest_shap", "forest_tree_dicts", "tree_shap", "xgboost_tree_dicts"]


def forest_tree_dicts(forest: Any, horizon: float | None) -> list[dict[str, np.ndarray]]:
    """A forest's compact trees (:class:`~riskmodel.models.tree_store.TreeStore`) as shap tree
    dicts, each leaf holding that tree's risk or S(t), / n_trees.

    Internal nodes get the cover-weighted mean of their children, which is what path-dependent
    TreeSHAP takes as the expected value below a node.
    """
    store = forest.model_
    if horizon is not None:
        if store.low_memory:
            raise UserInputError("this forest was fitted with low_memory=True: it gives risk scores, not curves")
        col = int(np.searchsorted(store.unique_times, horizon, side="right")) - 1
        at_horizon = store.leaf_values(col, 1) if col >= 0 else None
    out = []
    for k in range(store.n_trees):
        t = store.tree(k)
        left, right, rows = t["left"], t["right"], t["leaf"]
        leaf = np.zeros(left.size)  # internal nodes: filled in by _shap_tree
        is_leaf = rows >= 0
        if horizon is None:  # scikit-survival's predict: the cumulative hazard summed over event times
            leaf[is_leaf] = store.leaf_risk[rows[is_leaf]]
        else:
            leaf[is_leaf] = at_horizon[rows[is_leaf]] if at_horizon is not None else 1.0
        # where the tree sends a missing value: the side it learned, or stored for a feature seen complete
        default = np.where(t["missing_left"].astype(bool), left, right)
        out.append(_shap_tree(left, right, default, t["feature"], t["threshold"], leaf / store.n_trees, t["cover"]))
    return out


def _shap_tree(
    left: np.ndarray,
    right: np.ndarray,
    default: np.ndarray,
    features: np.ndarray,
    thresholds: np.ndarray,
    leaf: np.ndarray,
    cover: np.ndarray,
) -> dict[str, np.ndarray]:
    """One tree in shap's dict form (go left when x <= threshold). Leaves keep ``leaf``; each
    internal node gets the cover-weighted mean of its children."""
    values = np.asarray(leaf, dtype=float).copy()
    cover = np.asarray(cover, dtype=float).copy()
    order = np.argsort(_depths(left, right))[::-1]  # deepest first: children before parents
    for node in order:
        if left[node] >= 0:
            a, b = left[node], right[node]
            # a parent's cover is its children's (a printed cover may be rounded): TreeSHAP's
            # local accuracy needs the shares of each split to add up to one exactly
            cover[node] = cover[a] + cover[b]
            values[node] = (cover[a] * values[a] + cover[b] * values[b]) / cover[node]
    return {
        "children_left": left.astype(np.int32),
        "children_right": right.astype(np.int32),
        "children_default": default.astype(np.int32),
        "features": features.astype(np.int32),
        "thresholds": thresholds.astype(float),
        "values": values[:, None],
        "node_sample_weight": cover.astype(float),
    }


def _depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    depth = np.zeros(len(left), dtype=int)
    stack = [0]
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                depth[child] = depth[node] + 1
                stack.append(child)
    return depth


def xgboost_tree_dicts(model: Any) -> tuple[list[dict[str, np.ndarray]], float]:
    """An xgboost booster's trees in shap's dict form (float64 leaves), and the margin's offset.

    xgboost sends x left when float32(x) < split; with float32-exact inputs that is
    x <= the float32 number just below the split, which is the threshold given to shap.
    """
    frame = model.trees_frame()
    _, offset = model.leaf_values()
    out = []
    for _, tree in frame.groupby("Tree", sort=True):
        n = int(tree["Node"].max()) + 1
        node = tree["Node"].to_numpy(int)

        def ids(column: str, tree: pd.DataFrame = tree, n: int = n, node: np.ndarray = node) -> np.ndarray:
            child = np.full(n, -1)
            split = tree[column].notna().to_numpy()
            child[node[split]] = [int(str(v).split("-")[1]) for v in tree[column][split]]
            return child

        features = np.full(n, -2)
        thresholds = np.full(n, -2.0)
        leaf = np.zeros(n)
        cover = np.zeros(n)
        is_leaf = (tree["Feature"] == "Leaf").to_numpy()
        features[node[~is_leaf]] = [int(str(f).lstrip("f")) for f in tree["Feature"][~is_leaf]]
        split = tree["Split"][~is_leaf].to_numpy(float).astype(np.float32)
        thresholds[node[~is_leaf]] = np.nextafter(split, np.float32(-np.inf)).astype(float)
        leaf[node[is_leaf]] = tree["Gain"][is_leaf].to_numpy(float)
        cover[node] = tree["Cover"].to_numpy(float)
        out.append(_shap_tree(ids("Yes"), ids("No"), ids("Missing"), features, thresholds, leaf, cover))
    return out, offset


def forest_shap(forest: Any, Z: np.ndarray, horizon: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Path-dependent TreeSHAP of a fitted forest's risk (``horizon`` None) or S(horizon): (values, base values)."""
    # scikit-learn compares float32 features with float64 thresholds; give shap the same numbers
    return tree_shap(forest_tree_dicts(forest, horizon), forest._binned(Z).astype(np.float32).astype(np.float64))


def tree_shap(
    trees: list[dict[str, np.ndarray]], X: np.ndarray, n_jobs: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """shap's path-dependent TreeSHAP (its compiled algorithm) over trees in dict form.

    shap's algorithm runs on one core; from 500 patients the batch is split over every core
    (separate processes: about 1.8x on 2 cores for a 300-tree forest).
    """
    import os

    jobs = n_jobs if n_jobs is not None else (min(os.cpu_count() or 1, len(X) // 250) if len(X) >= 500 else 1)
    if jobs > 1:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=jobs)(delayed(tree_shap)(trees, part, 1) for part in np.array_split(X, jobs))
        return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    import shap

    explainer = shap.TreeExplainer({"trees": trees}, feature_perturbation="tree_path_dependent")
    values = np.asarray(explainer.shap_values(X, check_additivity=False), dtype=float).reshape(len(X), -1)
    return values, np.full(len(X), float(np.ravel(explainer.expected_value)[0]))
