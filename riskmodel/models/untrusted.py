"""Tree models read from a model folder, which anyone could have edited: checked before first use.

scikit-learn's ``Tree`` and xgboost's trees walk their node arrays in compiled code without bounds
checks, so a child index of 10¹² or a feature index of 10⁹ in a rewritten file crashes the process
(a segmentation fault, not an exception). Before a loaded tree is used, every node is checked:

- a leaf has no children (-1, -1); a split has two, each with a larger index than its own and
  below the node count (so no index leaves the arrays and no path loops);
- a split's feature is one of the model's features; a leaf's is scikit-learn's -2 (xgboost: any);
- thresholds are numbers (±inf included: a split of missing values), node values are finite,
  and the arrays' shapes agree with the node count.

A skops file is opened only after its zip directory passed :func:`riskmodel.core.archives.check_zip`
and every type its schema names (objects, arrays, type references) is on the family's exclusive
list: a scikit-learn estimator that skops itself would trust (``LogisticRegression``) is refused
as firmly as an unknown one.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from riskmodel.core.archives import check_zip
from riskmodel.errors import ModelFileError

__all__ = ["DATA_TYPES", "check_sklearn_tree", "check_xgboost_model", "load_skops_exclusive", "skops_types"]

# the plain data skops writes around any estimator: containers, text, numbers, arrays, a seed
DATA_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.NoneType",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.float32",
        "numpy.int64",
        "numpy.int32",
        "numpy.bool_",
        "numpy.random.mtrand.RandomState",
    }
)
# how skops rebuilds each node; a function, method or operator node is never in a model riskmodel writes
_LOADERS = frozenset(
    {"DictNode", "ListNode", "TupleNode", "JsonNode", "NdArrayNode", "ObjectNode", "TreeNode", "TypeNode"}
    | {"RandomStateNode", "DTypeNode"}
)
_MAX_DEPTH = 200
_MAX_NODES = 50_000_000


def _nodes(schema: Any, path: Path) -> Iterator[dict[str, Any]]:
    """Every object node of a skops schema, walked without recursion (a deep file cannot blow the stack)."""
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ModelFileError(f"{path}: nested more than {_MAX_DEPTH} levels deep; refusing to load")
        if isinstance(item, dict):
            if "__class__" in item or "__loader__" in item:
                yield item
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def skops_types(path: Path) -> tuple[str, set[str]]:
    """(the root type, every type and loader a skops file names), read from its schema without loading it."""
    members = check_zip(path)
    if "schema.json" not in members:
        raise ModelFileError(f"{path}: not a skops file (no schema.json)")
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path}: unreadable skops schema ({type(exc).__name__})") from None
    if not isinstance(schema, dict):
        raise ModelFileError(f"{path}: unreadable skops schema (not an object)")
    found: set[str] = set()
    for node in _nodes(schema, path):
        found.add(f"{node.get('__module__')}.{node.get('__class__')}")
        found.add(f"loader:{node.get('__loader__')}")
    return f"{schema.get('__module__')}.{schema.get('__class__')}", found


def load_skops_exclusive(path: Path, root: str, allowed: frozenset[str]) -> Any:
    """A skops file whose root is ``root`` and whose every type is in ``allowed`` or :data:`DATA_TYPES`."""
    import skops.io as sio

    top, found = skops_types(path)
    if top != root:
        raise ModelFileError(
            f"{path} holds types outside the allow-list: {top} (this family writes a {root}); refusing to load"
        )
    loaders = {t.removeprefix("loader:") for t in found if t.startswith("loader:")}
    types = {t for t in found if not t.startswith("loader:")}
    refused = sorted((types - allowed - DATA_TYPES) | {f"{x} (skops loader)" for x in loaders - _LOADERS})
    if refused:
        raise ModelFileError(f"{path} holds types outside the allow-list: {', '.join(refused)}; refusing to load")
    try:
        return sio.load(path, trusted=sorted(types - {"builtins.NoneType"}))
    except ModelFileError:
        raise
    except Exception as exc:  # a malformed array or state: refused, never a traceback
        raise ModelFileError(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None


def check_sklearn_tree(tree: Any, n_features: int, where: str) -> None:
    """Refuse a scikit-learn ``Tree`` whose node arrays could send a prediction outside them."""
    n = int(tree.node_count)
    if not 0 < n <= _MAX_NODES:
        raise ModelFileError(f"{where}: {n} nodes; refusing to load")
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    feature, threshold, value = np.asarray(tree.feature), np.asarray(tree.threshold), np.asarray(tree.value)
    if any(a.shape != (n,) for a in (left, right, feature, threshold)) or value.ndim != 3 or value.shape[0] != n:
        raise ModelFileError(f"{where}: node arrays of inconsistent shapes; refusing to load")
    if int(tree.n_features) != n_features:
        raise ModelFileError(f"{where}: built for {tree.n_features} features, the model has {n_features}")
    _check_nodes(left, right, feature, threshold, n_features, where, leaf_feature=-2)
    if not np.isfinite(value).all():
        raise ModelFileError(f"{where}: a node value is not a finite number; refusing to load")


def _check_nodes(
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    n_features: int,
    where: str,
    leaf_feature: int | None,
) -> None:
    n = len(left)
    index = np.arange(n)
    leaf = left == -1
    split = ~leaf
    bad_child = (leaf & (right != -1)) | (split & ((left <= index) | (left >= n) | (right <= index) | (right >= n)))
    if bad_child.any():
        i = int(np.flatnonzero(bad_child)[0])
        raise ModelFileError(
            f"{where}: node {i} has children {int(left[i])}, {int(right[i])}, outside the tree's {n} nodes "
            "or not after it; refusing to load"
        )
    bad_feature = split & ((feature < 0) | (feature >= n_features))
    if leaf_feature is not None:
        bad_feature |= leaf & (feature != leaf_feature)
    if bad_feature.any():
        i = int(np.flatnonzero(bad_feature)[0])
        raise ModelFileError(
            f"{where}: node {i} splits on feature {int(feature[i])}; the model has {n_features}; refusing to load"
        )
    # ±inf is a real threshold (missing values one way, every observed value the other); NaN is not
    if np.isnan(threshold[split]).any():
        raise ModelFileError(f"{where}: a split threshold is not a number (NaN); refusing to load")


def _ints(tree: dict[str, Any], key: str, n: int, where: str) -> np.ndarray:
    raw = tree.get(key)
    if not isinstance(raw, list) or len(raw) != n:
        raise ModelFileError(f"{where}: {key} is not a list of {n} values; refusing to load")
    try:
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelFileError(f"{where}: {key} holds a value that is not a number; refusing to load") from None


def check_xgboost_model(model: Any, n_features: int, where: str) -> None:
    """Refuse an xgboost model (its JSON form, as ``Booster.save_raw("json")`` gives it) whose trees
    could send a prediction outside their arrays, or that is not a plain tree booster."""
    try:
        learner = model["learner"]
        booster = learner["gradient_booster"]
        trees = booster["model"]["trees"]
        name = booster["name"]
    except (KeyError, TypeError):
        raise ModelFileError(f"{where}: not an xgboost tree model; refusing to load") from None
    if name != "gbtree" or not isinstance(trees, list):
        raise ModelFileError(f"{where}: an xgboost {name!r} booster; riskmodel writes gbtree; refusing to load")
    for k, tree in enumerate(trees):
        label = f"{where}: tree {k}"
        if not isinstance(tree, dict) or not isinstance(tree.get("tree_param"), dict):
            raise ModelFileError(f"{label}: malformed; refusing to load")
        try:
            n = int(tree["tree_param"]["num_nodes"])
            deleted = int(tree["tree_param"].get("num_deleted", 0))
            leaf_vector = int(tree["tree_param"].get("size_leaf_vector", 1))
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{label}: malformed tree_param; refusing to load") from None
        if not 0 < n <= _MAX_NODES or deleted != 0 or leaf_vector > 1:
            raise ModelFileError(f"{label}: {n} nodes ({deleted} deleted); refusing to load")
        if any(tree.get(k) for k in ("categories", "categories_nodes")) or any(_ints(tree, "split_type", n, label)):
            raise ModelFileError(f"{label}: categorical splits, which riskmodel never writes; refusing to load")
        left, right = _ints(tree, "left_children", n, label), _ints(tree, "right_children", n, label)
        feature = _ints(tree, "split_indices", n, label)
        values = _ints(tree, "split_conditions", n, label)
        _check_nodes(left, right, feature, values, n_features, label, leaf_feature=None)
        leaves = left == -1
        if not np.isfinite(values[leaves]).all() or not np.isfinite(_ints(tree, "base_weights", n, label)).all():
            raise ModelFileError(f"{label}: a node value is not a finite number; refusing to load")
