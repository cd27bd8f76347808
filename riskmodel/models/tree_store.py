"""A fitted random survival forest as a few flat arrays: the nodes a prediction walks, the curves of the leaves only.

scikit-survival's trees store two curves (cumulative hazard and S(t)) over every time at every
node, interior ones included, and a forest is a Python object per tree. A leaf's curves are step
functions that change only at its own patients' event times (a few: a leaf holds a few patients),
so :class:`TreeStore` keeps each leaf's curves as their steps: the first column of each step and
the two values from there on, the same float64 numbers (a step starts wherever either value's
bits change, and at column 0). For all trees concatenated (tree ``k``'s nodes are rows
``offsets[k]:offsets[k + 1]``, child indices counted within the tree as scikit-learn counts them;
leaf ``i``'s steps are ``step_start[i]:step_start[i + 1]``):

=================  ===================  =====================================================
array              dtype, shape         what
=================  ===================  =====================================================
``offsets``        int64, trees + 1     first node of each tree; the last is the node count
``left, right``    int32, nodes         children within the tree; -1 at a leaf
``feature``        int32, nodes         the split's feature; -2 at a leaf
``threshold``      float64, nodes       x <= threshold goes left (scikit-learn's rule)
``missing_left``   uint8, nodes         1: a missing value (NaN) goes left, 0: right
``cover``          float64, nodes       the node's (weighted) training patients (TreeSHAP)
``leaf``           int32, nodes         the node's row in the leaf arrays; -1 at a split
``leaf_risk``      float64, leaves      the leaf's risk (cumulative hazard summed over event times)
``step_start``     int64, leaves + 1    each leaf's first step; the last is the step count
``step_col``       int32, steps         a step's first column (time index); 0 at a leaf's first
``step_chf``       float64, steps       the leaf's cumulative hazard from that column on
``step_surv``      float64, steps       the leaf's S(t) from that column on
``unique_times``   float64, T           the forest's times
``is_event_time``  bool, T              which of them are event times
=================  ===================  =====================================================

:meth:`TreeStore.sums` walks it in compiled code (numba) with scikit-learn's ``Tree.apply`` rule
(a NaN goes the side stored at the split, whether or not the feature was missing in training;
otherwise float32 x <= float64 threshold goes left) and adds each tree's leaf values in the
forest's order: the numbers of scikit-survival's ``predict`` on one core, bit for bit. A file is
checked array by array before the walk ever sees it (:func:`check_store`): a walk out of its
arrays would crash the process, not raise. ``low_memory`` forests (risk only) have no steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numba import njit

from riskmodel.core.archives import check_zip
from riskmodel.errors import ModelFileError

__all__ = ["ARRAYS", "TreeStore", "check_store", "compact_trees", "load_store"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_NODES = 500_000_000  # a forest's nodes across its trees; far beyond any model riskmodel writes
# each array's dtype and number of dimensions, as a file must hold them
ARRAYS: dict[str, tuple[np.dtype[Any], int]] = {
    "offsets": (np.dtype(np.int64), 1),
    "left": (np.dtype(np.int32), 1),
    "right": (np.dtype(np.int32), 1),
    "feature": (np.dtype(np.int32), 1),
    "threshold": (np.dtype(np.float64), 1),
    "missing_left": (np.dtype(np.uint8), 1),
    "cover": (np.dtype(np.float64), 1),
    "leaf": (np.dtype(np.int32), 1),
    "leaf_risk": (np.dtype(np.float64), 1),
    "step_start": (np.dtype(np.int64), 1),
    "step_col": (np.dtype(np.int32), 1),
    "step_chf": (np.dtype(np.float64), 1),
    "step_surv": (np.dtype(np.float64), 1),
    "unique_times": (np.dtype(np.float64), 1),
    "is_event_time": (np.dtype(np.bool_), 1),
}


@dataclass
class TreeStore:
    """A forest's trees as flat arrays (module docstring); built by :func:`compact_trees`."""

    offsets: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    cover: np.ndarray
    leaf: np.ndarray
    leaf_risk: np.ndarray
    step_start: np.ndarray
    step_col: np.ndarray
    step_chf: np.ndarray
    step_surv: np.ndarray
    unique_times: np.ndarray
    is_event_time: np.ndarray
    n_features_in_: int
    low_memory: bool

    # the names the rest of riskmodel reads off a forest's model, as on scikit-survival's
    @property
    def unique_times_(self) -> np.ndarray:
        return self.unique_times

    @property
    def is_event_time_(self) -> np.ndarray:
        return self.is_event_time

    @property
    def n_trees(self) -> int:
        return len(self.offsets) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (:data:`ARRAYS`), as saved."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in ARRAYS}

    def tree(self, k: int) -> dict[str, np.ndarray]:
        """Tree ``k``'s node arrays (views), children counted within the tree."""
        part = slice(int(self.offsets[k]), int(self.offsets[k + 1]))
        return {
            name: getattr(self, name)[part]
            for name in ("left", "right", "feature", "threshold", "missing_left", "cover", "leaf")
        }

    def sums(
        self, X: np.ndarray, *, risk: bool, channel: int = 0, columns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per patient, the sum over the trees (in order) of their leaf's risk (``risk``) and of its
        curve (``channel`` 0: cumulative hazard, 1: S(t)) at ``columns`` (none when None).

        ``X`` must be float32 with the model's features (its columns are not checked here).
        """
        cols = np.zeros(0, np.int64) if columns is None else np.ascontiguousarray(columns, dtype=np.int64)
        if cols.size and (cols.min() < 0 or cols.max() >= len(self.unique_times) or self.low_memory):
            raise ValueError("columns outside the forest's times (or a low_memory forest, which has no curves)")
        curves = (self.step_start, self.step_col, self.step_chf if channel == 0 else self.step_surv)
        out_risk = np.zeros(len(X) if risk else 0)
        out_curve = np.zeros((len(X), cols.size))
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        run = bool(cols.size) and bool((np.diff(cols) == 1).all())  # a run of consecutive columns
        _walk(X32, self._nodes(), self.leaf_risk, curves, cols, run, out_risk, out_curve)
        return out_risk, out_curve

    def extend(self, other: TreeStore) -> None:
        """Append ``other``'s trees (the same forest's next ones) after these, in place.

        Each array grows by ``realloc`` (numpy's ``resize``): a large array is moved by remapping
        its pages (Linux: ``mremap``), not copied beside itself, so the forest's arrays never exist
        twice while its trees are added chunk by chunk. Only for a store nothing else reads yet
        (fit's, as it grows): a view of an array taken before would point at freed memory. An
        array that is itself a view is copied instead.
        """
        nodes, leaves, steps = int(self.offsets[-1]), len(self.leaf_risk), int(self.step_start[-1])
        for name in ARRAYS:
            if name in ("unique_times", "is_event_time"):
                continue
            tail = getattr(other, name)
            if name == "offsets":
                tail = tail[1:] + nodes
            elif name == "step_start":
                tail = tail[1:] + steps
            elif name == "leaf":
                tail = np.where(tail >= 0, tail + leaves, -1).astype(np.int32)
            head = getattr(self, name)
            start = head.shape[0]
            shape = (start + tail.shape[0], *head.shape[1:])
            if head.flags.owndata and head.flags.c_contiguous and head.base is None:
                head.resize(shape, refcheck=False)  # only this store holds it (fit's own arrays)
            else:
                head = np.concatenate([head, np.zeros((shape[0] - start, *head.shape[1:]), head.dtype)])
            head[start:] = tail
            setattr(self, name, head)

    def leaf_values(self, column: int, channel: int) -> np.ndarray:
        """Every leaf's cumulative hazard (``channel`` 0) or S(t) (1) at time index ``column``."""
        values = self.step_chf if channel == 0 else self.step_surv
        lo, hi = self.step_start[:-1], self.step_start[1:]
        upto = np.concatenate([[0], np.cumsum(self.step_col <= column)])  # a leaf's steps up to it: a prefix
        return np.asarray(values[lo + (upto[hi] - upto[lo]) - 1])

    def curves(self, channel: int) -> np.ndarray:
        """The leaves' whole curves (leaves × times), expanded from their steps."""
        return np.stack([self.leaf_values(j, channel) for j in range(len(self.unique_times))], axis=1)

    def leaf_rows(self, X: np.ndarray) -> np.ndarray:
        """Each patient's leaf row in each tree (patients × trees), by the walk of :meth:`sums`."""
        out = np.zeros((len(X), self.n_trees), np.int64)
        _apply(np.ascontiguousarray(X, dtype=np.float32), self._nodes(), out)
        return out

    def _nodes(self) -> tuple[np.ndarray, ...]:
        return (self.offsets, self.left, self.right, self.feature, self.threshold, self.missing_left, self.leaf)

    def save(self, path: Path) -> None:
        """The arrays as an uncompressed ``.npz`` (numbers only; read with ``allow_pickle=False``)."""
        arrays: dict[str, Any] = self.arrays()
        with path.open("wb") as fh:
            np.savez(fh, **arrays)


def _compile(fn: F) -> F:
    """``fn`` compiled (numba), cached on disk where numba finds a writable cache folder; where none
    is writable, compiled afresh in each process (as :mod:`riskmodel.stats.dominance`)."""
    try:
        compiled: Any = njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        compiled = njit(nogil=True)(fn)
    return compiled  # type: ignore[no-any-return]  # numba's dispatcher, called as fn is


@_compile
def _leaf_of(
    X: np.ndarray,
    i: int,
    base: int,
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    leaf: np.ndarray,
) -> int:
    """Patient i's leaf row in the tree whose nodes start at ``base``: scikit-learn's ``Tree.apply``
    rule (NaN: the stored side; otherwise float32 x, as float64, <= the float64 threshold: left)."""
    node = 0
    while left[base + node] != -1:
        at = base + node
        x = X[i, feature[at]]
        if np.isnan(x):
            node = left[at] if missing_left[at] else right[at]
        elif np.float64(x) <= threshold[at]:
            node = left[at]
        else:
            node = right[at]
    return int(leaf[base + node])


@_compile
def _apply(X: np.ndarray, store: tuple[np.ndarray, ...], out: np.ndarray) -> None:
    offsets, left, right, feature, threshold, missing_left, leaf = store
    for k in range(offsets.shape[0] - 1):
        for i in range(X.shape[0]):
            out[i, k] = _leaf_of(X, i, offsets[k], left, right, feature, threshold, missing_left, leaf)


@_compile
def _walk(
    X: np.ndarray,
    store: tuple[np.ndarray, ...],
    leaf_risk: np.ndarray,
    curves: tuple[np.ndarray, np.ndarray, np.ndarray],
    cols: np.ndarray,
    run: bool,
    out_risk: np.ndarray,
    out_curve: np.ndarray,
) -> None:
    offsets, left, right, feature, threshold, missing_left, leaf = store
    step_start, step_col, step_value = curves
    want_risk = out_risk.shape[0] > 0
    # tree by tree (its nodes stay in the cache), each patient's sums still taking the trees in order
    for k in range(offsets.shape[0] - 1):
        for i in range(X.shape[0]):
            row = _leaf_of(X, i, offsets[k], left, right, feature, threshold, missing_left, leaf)
            if want_risk:
                out_risk[i] += leaf_risk[row]
            lo, hi = step_start[row], step_start[row + 1]
            if run:  # columns c0, c0 + 1, …: each step's value over the columns it spans
                for p in range(lo, hi):
                    a = max(step_col[p] - cols[0], 0)
                    b = min(step_col[p + 1] - cols[0], cols.shape[0]) if p + 1 < hi else cols.shape[0]
                    for j in range(a, b):
                        out_curve[i, j] += step_value[p]
                continue
            p = lo
            for j in range(cols.shape[0]):  # the leaf's last step at or before each column
                c = cols[j]
                if step_col[p] > c:  # columns out of order: from the leaf's first step (column 0) again
                    p = lo
                while p + 1 < hi and step_col[p + 1] <= c:
                    p += 1
                out_curve[i, j] += step_value[p]


def compact_trees(trees: list[Any], unique_times: np.ndarray, is_event_time: np.ndarray, low_memory: bool) -> TreeStore:
    """scikit-survival's fitted trees (``SurvivalTree``) as a :class:`TreeStore`, leaves' curves only.

    A leaf's risk is its cumulative hazard summed over the event times with the expression
    scikit-survival's ``SurvivalTree.predict`` uses (``low_memory``: the one value its nodes hold).
    """
    event = np.asarray(is_event_time, dtype=bool)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*ARRAYS, "step_count")}
    counts, n_leaves = [0], 0
    for tree in trees:
        t = tree.tree_
        left = np.asarray(t.children_left)
        is_leaf = left == -1
        leaves = np.flatnonzero(is_leaf)
        value = t.value
        leaf_row = np.full(left.size, -1, np.int32)
        leaf_row[leaves] = np.arange(n_leaves, n_leaves + leaves.size, dtype=np.int32)
        n_leaves += leaves.size
        counts.append(left.size)
        parts["left"].append(left.astype(np.int32))
        parts["right"].append(np.asarray(t.children_right).astype(np.int32))
        parts["feature"].append(np.asarray(t.feature).astype(np.int32))
        parts["threshold"].append(np.asarray(t.threshold, dtype=np.float64))
        parts["missing_left"].append(np.asarray(t.missing_go_to_left).astype(np.uint8))
        parts["cover"].append(np.asarray(t.weighted_n_node_samples, dtype=np.float64))
        parts["leaf"].append(leaf_row)
        if low_memory:
            parts["leaf_risk"].append(np.ascontiguousarray(value[leaves, 0, 0]))
            parts["step_count"].append(np.zeros(leaves.size, np.int64))
        else:
            parts["leaf_risk"].append(value[:, event, 0].sum(1)[leaves])  # SurvivalTree.predict's sum
            _add_steps(parts, value[leaves, :, 0], value[leaves, :, 1])
    store: dict[str, Any] = {
        name: (np.concatenate(p) if p else np.zeros(0, ARRAYS[name][0]))
        for name, p in parts.items()
        if name not in ("offsets", "unique_times", "is_event_time", "step_start", "step_count")
    }
    steps = np.concatenate(parts["step_count"]) if parts["step_count"] else np.zeros(0, np.int64)
    return TreeStore(
        offsets=np.cumsum(counts, dtype=np.int64),
        step_start=np.concatenate([[0], np.cumsum(steps)]).astype(np.int64),
        unique_times=np.asarray(unique_times, dtype=np.float64),
        is_event_time=event,
        n_features_in_=int(trees[0].n_features_in_) if trees else 0,
        low_memory=bool(low_memory),
        **store,
    )


def _add_steps(parts: dict[str, list[np.ndarray]], chf: np.ndarray, surv: np.ndarray) -> None:
    """Leaves' curves (leaves × times) as their steps: where either value's bits change, and column 0."""
    change = np.ones(chf.shape, dtype=bool)
    change[:, 1:] = (np.diff(chf.view(np.int64), axis=1) != 0) | (np.diff(surv.view(np.int64), axis=1) != 0)
    flat = np.flatnonzero(change)  # row-major: each leaf's steps together, in column order
    parts["step_col"].append((flat % chf.shape[1]).astype(np.int32))
    parts["step_chf"].append(chf.ravel()[flat])
    parts["step_surv"].append(surv.ravel()[flat])
    parts["step_count"].append(change.sum(axis=1))


def load_store(path: Path, n_features: int, low_memory: bool) -> TreeStore:
    """The store saved at ``path``, every array's dtype, shape and index checked (:func:`check_store`).

    Read with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    if path.is_symlink() or not path.is_file():
        raise ModelFileError(f"{path}: missing or not a regular file")
    members = check_zip(path)
    expected = {f"{name}.npy" for name in ARRAYS}
    if set(members) != expected:
        odd = sorted(set(members) ^ expected)
        raise ModelFileError(f"{path}: holds {', '.join(odd)} where a forest's arrays are expected; refusing to load")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{path}: unreadable array ({type(exc).__name__}: {str(exc)[:120]})") from None
    store = TreeStore(n_features_in_=n_features, low_memory=low_memory, **arrays)
    check_store(store, str(path))
    return store


def check_store(store: TreeStore, where: str) -> None:
    """Refuse (:class:`ModelFileError`) a store whose arrays could send a walk outside them.

    Every array has its dtype and shape; each tree's nodes are inside the node arrays; a split's
    children lie after it and inside its tree (so no walk leaves the tree or loops) and its feature
    is one of the model's; a leaf has no children and one leaf row, the leaves' rows are 0, 1, …
    in node order; thresholds are numbers (±inf included), every value finite, times increasing.
    """
    arrays = store.arrays()
    for name, (dtype, ndim) in ARRAYS.items():
        a = arrays[name]
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
            got = f"{a.dtype}, {a.ndim}-D" if isinstance(a, np.ndarray) else type(a).__name__
            raise ModelFileError(f"{where}: {name} is {got}, a forest's is {dtype}, {ndim}-D; refusing to load")
    _check_shapes(store, where)
    _check_nodes(store, where)
    values = (store.leaf_risk, store.step_chf, store.step_surv, store.cover, store.unique_times)
    if not all(np.isfinite(v).all() for v in values):
        raise ModelFileError(f"{where}: a node value or time is not a finite number; refusing to load")
    if (np.diff(store.unique_times) <= 0).any():
        raise ModelFileError(f"{where}: the forest's times do not increase; refusing to load")


def _check_shapes(store: TreeStore, where: str) -> None:
    offsets = store.offsets
    if offsets.size < 2 or offsets[0] != 0 or (np.diff(offsets) < 1).any() or offsets[-1] > MAX_NODES:
        raise ModelFileError(f"{where}: offsets are not a forest's node counts (0, then increasing); refusing to load")
    nodes = int(offsets[-1])
    for name in ("left", "right", "feature", "threshold", "missing_left", "cover", "leaf"):
        if getattr(store, name).shape != (nodes,):
            raise ModelFileError(f"{where}: {name} does not hold the forest's {nodes} nodes; refusing to load")
    leaves, times = store.leaf_risk.shape[0], store.unique_times.shape[0]
    if store.is_event_time.shape != (times,):
        raise ModelFileError(f"{where}: is_event_time does not hold the forest's {times} times; refusing to load")
    _check_steps(store, leaves, times, where)


def _check_steps(store: TreeStore, leaves: int, times: int, where: str) -> None:
    """Each leaf's steps inside the step arrays, from column 0, columns increasing and below the
    times' count (a low_memory forest: none)."""
    start, col = store.step_start, store.step_col
    count = int(start[-1]) if start.size else -1
    if start.shape != (leaves + 1,) or start[0] != 0 or (np.diff(start) < (0 if store.low_memory else 1)).any():
        raise ModelFileError(
            f"{where}: step_start is not {leaves} leaves' step counts (0, then increasing); refusing to load"
        )
    if store.low_memory and count != 0:
        raise ModelFileError(f"{where}: a low_memory forest holds no curves; refusing to load")
    if any(a.shape != (count,) for a in (col, store.step_chf, store.step_surv)):
        raise ModelFileError(f"{where}: the step arrays do not hold the leaves' {count} steps; refusing to load")
    first = np.zeros(count, dtype=bool)
    first[start[:-1][np.diff(start) > 0]] = True
    rising = np.ones(count, dtype=bool)
    rising[1:] = col[1:] > col[:-1]
    if (col[first] != 0).any() or not rising[~first].all() or (col >= times).any():
        raise ModelFileError(
            f"{where}: a leaf's steps do not start at column 0 and rise within the {times} times; refusing to load"
        )


def _check_nodes(store: TreeStore, where: str) -> None:
    offsets = store.offsets
    sizes = np.diff(offsets)
    tree_of = np.repeat(np.arange(sizes.size), sizes)
    index = np.arange(int(offsets[-1])) - offsets[tree_of]  # each node's index within its tree
    size = sizes[tree_of]
    left, right = store.left.astype(np.int64), store.right.astype(np.int64)
    leaf = left == -1
    split = ~leaf
    bad = (leaf & (right != -1)) | (split & ((left <= index) | (left >= size) | (right <= index) | (right >= size)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ModelFileError(
            f"{where}: tree {int(tree_of[i])} node {int(index[i])} has children {int(left[i])}, {int(right[i])}, "
            f"outside the tree's {int(size[i])} nodes or not after it; refusing to load"
        )
    bad = split & ((store.feature < 0) | (store.feature >= store.n_features_in_))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ModelFileError(
            f"{where}: tree {int(tree_of[i])} node {int(index[i])} splits on feature {int(store.feature[i])}; "
            f"the model has {store.n_features_in_}; refusing to load"
        )
    if np.isnan(store.threshold[split]).any() or (store.missing_left > 1).any():
        raise ModelFileError(f"{where}: a split's threshold or missing side is not valid; refusing to load")
    rows = store.leaf[leaf]
    if (
        (store.leaf[split] != -1).any()
        or not np.array_equal(rows, np.arange(rows.size))
        or rows.size != store.leaf_risk.size
    ):
        raise ModelFileError(f"{where}: the nodes' leaf rows are not 0, 1, … over the leaves; refusing to load")
