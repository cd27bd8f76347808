"""Random survival forest: scikit-survival's ``RandomSurvivalForest`` behind the shared interface.

For large cohorts the forest is made fast the way randomForestSRC and ranger are, each step on by
default above :data:`LARGE_COHORT` patients and exact (plain scikit-survival) below it (the time
grid also above 100 distinct event times, where the stored curves would otherwise run to
gigabytes):

* **Time grid** (``time_grid``, default 100 points). scikit-survival's log-rank split search
  costs O(node size × distinct times) per node, and every node stores a curve over all distinct
  times. Event times are rounded *up* to the nearest of K quantiles of the event-time
  distribution, and censoring times to the nearest grid point, so the trees see at most K + 1
  distinct times. S(t) is exact at the grid points and, between two of them, holds the value of
  the lower one: it can read high by at most the events of one grid cell (1/K of the events).
* **Per-tree subsample** (``max_samples``, default 30·√n patients per tree, so 3,000 of 10,000
  and 9,500 of 100,000), as randomForestSRC's ``sampsize``.
* **Binned features** (``max_bins``, default 128): a continuous covariate is rounded up to the
  nearest of its training quantiles, so each node evaluates at most 128 split points per feature.
  The same rounding is applied before every prediction, so thresholds keep their original units.
  The quantiles are those of the observed values, and a missing value (NaN) stays missing.
* **Both cores** (``n_jobs=None`` means all cores above :data:`LARGE_COHORT`, one below).

Missing values (NaN) are handled by scikit-survival's trees (≥ 0.28, splitter "best"): a split
sends them to the child that gives the larger log-rank statistic and stores that side for
prediction; a split on a feature complete in its node stores the side with more patients.

After fit only the trees' compact form is kept (:mod:`riskmodel.models.tree_store`: the node arrays
a prediction walks and the leaves' curves as their few steps, the same numbers; 67 MiB where
scikit-survival's forest of 100,000 patients took 3.0 GiB), grown and compacted
:data:`CHUNK_TREES` trees at a time, and saved as ``forest.npz`` (numbers only). Model
folders of earlier versions (scikit-survival's forest in ``estimator.skops``) are converted as they
are read.

``benchmarks/run_all.py`` measures the speed-up and the cost in held-out C against plain
scikit-survival on the same data.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import FiniteFloat
from sklearn.utils.validation import check_is_fitted

from riskmodel.core.memory import release_freed_memory
from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models.base import StateFile, SurvivalEstimator, check_horizons, estimator_params, read_json, write_json
from riskmodel.models.tree_store import TreeStore, compact_trees, load_store
from riskmodel.models.untrusted import check_sklearn_tree, load_skops_exclusive
from riskmodel.stats import survival_array

__all__ = ["LARGE_COHORT", "ForestFile", "SurvivalForest", "bin_edges", "snap_times"]

LARGE_COHORT = 1000  # above this many patients the speed settings switch on by default
DEFAULT_TIME_GRID = 100
DEFAULT_MAX_BINS = 128
SAMPLES_PER_ROOT_N = 30  # per-tree subsample: 30·√n patients
CHUNK_TREES = 20  # trees grown per call at fit, each chunk compacted before the next is grown
STORE_FILE = "forest.npz"
OLD_FILE = "estimator.skops"  # model folders written before the compact store (read, converted)
PREDICT_BLOCK = 4096  # patients per block of a prediction (memory: block × times × 8 bytes a tree)

Auto = Literal["auto"]


def snap_times(event: np.ndarray, time: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Round times onto a grid of at most ``points`` event-time quantiles; returns (grid, times).

    Events move up to the next grid point (so the cumulative hazard at a grid point counts every
    event up to it); censoring times move to the nearest grid point. Censoring before the first
    grid point keeps its time, and nothing moves past the last event.

    >>> grid, t = snap_times(np.array([True, True, True, False]), np.array([1.0, 2.0, 3.0, 2.4]), 2)
    >>> grid.tolist(), t.tolist()
    ([2.0, 3.0], [2.0, 2.0, 3.0, 2.0])
    """
    event_times = time[event]
    grid = np.unique(np.quantile(event_times, np.linspace(0.0, 1.0, points + 1)[1:], method="inverted_cdf"))
    snapped = time.copy()
    up = np.minimum(np.searchsorted(grid, time[event], side="left"), grid.size - 1)
    snapped[event] = grid[up]
    c = time[~event]
    right = np.minimum(np.searchsorted(grid, c, side="left"), grid.size - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(grid[left] - c) <= np.abs(grid[right] - c), grid[left], grid[right])
    before_first = c < grid[0]
    snapped[~event] = np.where(before_first, c, np.minimum(nearest, grid[-1]))
    return grid, snapped


def bin_edges(X: np.ndarray, max_bins: int) -> list[np.ndarray | None]:
    """Per column, the quantile edges values are rounded up to, or None when it has few values.

    Edges come from the observed values only: a missing value (NaN) has no rank, and one NaN in
    ``np.quantile`` would make every edge NaN. A column with no observed value gets None.

    >>> bin_edges(np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]]), 2)[0].tolist()
    [1.0, 3.0]
    >>> bin_edges(np.array([[0.0], [np.nan], [1.0], [2.0], [3.0]]), 2)[0].tolist()
    [1.0, 3.0]
    """
    edges: list[np.ndarray | None] = []
    for column in X.T:
        observed = column[~np.isnan(column)]
        if np.unique(observed).size <= max_bins:
            edges.append(None)
        else:
            q = np.linspace(0.0, 1.0, max_bins + 1)[1:]
            edges.append(np.unique(np.quantile(observed, q, method="inverted_cdf")))
    return edges


class ForestFile(StateFile):
    """``estimator.json`` of a forest: the bin edges and time grid, finite."""

    bin_edges: list[list[FiniteFloat] | None] | None = None
    time_grid: list[FiniteFloat] | None = None


class SurvivalForest(SurvivalEstimator):
    """Random survival forest (log-rank splitting), with S(t) at any horizon within follow-up.

    Parameters mirror :class:`sksurv.ensemble.RandomSurvivalForest`; the defaults suit small
    cohorts (leaves of at least 3 patients). The speed settings (module docstring) take
    ``"auto"`` (on above :data:`LARGE_COHORT` patients), ``None`` (off) or a value:

    * ``time_grid``: number of event-time quantiles;
    * ``max_samples``: patients per tree, as a count or a fraction;
    * ``max_bins``: quantile bins per continuous feature.

    ``low_memory=True`` keeps only the risk score in the trees (much less memory on big cohorts);
    such a forest ranks patients but refuses ``predict_survival``.
    """

    FILES = frozenset({STORE_FILE, OLD_FILE, "estimator.json"})
    # the only types an older folder's estimator.skops may hold besides plain data (untrusted.DATA_TYPES)
    SKOPS_ROOT = "sksurv.ensemble.forest.RandomSurvivalForest"
    SKOPS_ALLOWED = frozenset(
        {
            "sklearn.tree._tree.Tree",
            "sksurv.ensemble.forest.RandomSurvivalForest",
            "sksurv.tree.tree.SurvivalTree",
        }
    )

    def __init__(
        self,
        n_estimators: int = 200,
        min_samples_leaf: int = 3,
        max_features: str | float | None = "sqrt",
        max_depth: int | None = None,
        time_grid: int | Auto | None = "auto",
        max_samples: int | float | Auto | None = "auto",
        max_bins: int | Auto | None = "auto",
        low_memory: bool = False,
        n_jobs: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_depth = max_depth
        self.time_grid = time_grid
        self.max_samples = max_samples
        self.max_bins = max_bins
        self.low_memory = low_memory
        self.n_jobs = n_jobs
        self.random_state = random_state

    all_levels = True  # trees: no reference level (riskmodel.models.base)

    @property
    def handles_missing(self) -> bool:
        """True: scikit-survival's trees (splitter "best") send the missing values of a split to the
        child that gives the better log-rank statistic, and store that side for prediction."""
        return True

    def _settings(self, n: int, event_times: int = 0) -> tuple[int | None, int | float | None, int | None, int]:
        """(time grid points, patients per tree, bins, jobs) for a cohort of n patients with
        ``event_times`` distinct event times."""
        large = n > LARGE_COHORT
        # every node stores a curve over all distinct times: beyond a few hundred event times the
        # forest runs to gigabytes (707 MB at 800 patients), so the grid starts where it would bite
        gridded = large or event_times > DEFAULT_TIME_GRID
        grid = (DEFAULT_TIME_GRID if gridded else None) if self.time_grid == "auto" else self.time_grid
        if self.max_samples == "auto":
            samples: int | float | None = min(n, int(SAMPLES_PER_ROOT_N * math.sqrt(n))) if large else None
        else:
            samples = self.max_samples
        bins = (DEFAULT_MAX_BINS if large else None) if self.max_bins == "auto" else self.max_bins
        jobs = self.n_jobs if self.n_jobs is not None else (-1 if large else 1)
        for name, value in (("time_grid", grid), ("max_bins", bins)):
            if value is not None and (not isinstance(value, int) or value < 2):
                raise UserInputError(f"{name} must be an integer ≥ 2, 'auto' or None; got {value!r}")
        return grid, samples, bins, jobs

    def fit(self, X: Any, y: Any) -> SurvivalForest:
        """Fit the forest; returns ``self``.

        The trees are grown :data:`CHUNK_TREES` at a time (scikit-learn's ``warm_start``: the same
        trees as one call with the same seed) and each chunk is compacted into the leaf-only
        :class:`~riskmodel.models.tree_store.TreeStore` before the next is grown, so scikit-survival's
        whole forest, with two curves at every node, never exists at once.
        """
        Xb, target, jobs = self._prepare(X, y)
        rsf = self._sksurv(jobs, warm_start=True)
        store = self._grow(rsf, Xb, target, 0)
        for done in range(CHUNK_TREES, self.n_estimators, CHUNK_TREES):
            store.extend(self._grow(rsf, Xb, target, done))
            release_freed_memory()
        self.model_ = store
        return self

    def _grow(self, rsf: Any, Xb: np.ndarray, target: Any, done: int) -> TreeStore:
        """The next chunk of trees (after the first ``done``), grown by scikit-survival and compacted."""
        rsf.set_params(n_estimators=min(done + CHUNK_TREES, self.n_estimators))
        rsf.fit(Xb, target)
        chunk = compact_trees(rsf.estimators_[done:], rsf.unique_times_, rsf.is_event_time_, self.low_memory)
        rsf.estimators_ = [None] * len(rsf.estimators_)  # the count warm_start reads; the trees freed
        return chunk

    def sksurv_forest(self, X: Any, y: Any, *, n_jobs: int = 1) -> Any:
        """scikit-survival's ``RandomSurvivalForest`` grown in one call on what :meth:`fit` would give
        it (binned features, snapped times, the same settings and seed; ``n_jobs`` threads, one by
        default, which predicts adding the trees in order): the reference the compact trees are
        tested and benchmarked against. Sets the bin edges and time grid, not ``model_``."""
        Xb, target, _ = self._prepare(X, y)
        return self._sksurv(n_jobs, warm_start=False).fit(Xb, target)

    def _prepare(self, X: Any, y: Any) -> tuple[np.ndarray, Any, int]:
        """(binned features, target on the time grid, jobs), the fit's settings recorded."""
        release_freed_memory()  # a freed forest's pages (the held-out split's) are not built beside
        Xa, event, time = self._begin_fit(X, y)
        grid, samples, bins, jobs = self._settings(len(time), int(np.unique(time[event]).size))
        self.bin_edges_ = bin_edges(Xa, bins) if bins is not None else None
        target = y
        self.time_grid_ = None
        if grid is not None:
            self.time_grid_, snapped = snap_times(event, time, grid)
            target = survival_array(event, snapped)
        self.max_samples_ = samples
        return self._binned(Xa), target, jobs

    def _sksurv(self, jobs: int, *, warm_start: bool) -> Any:
        from sksurv.ensemble import RandomSurvivalForest

        return RandomSurvivalForest(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            max_depth=self.max_depth,
            max_samples=self.max_samples_,
            low_memory=self.low_memory,
            n_jobs=jobs,
            random_state=self.random_state,
            warm_start=warm_start,
        )

    def _binned(self, X: Any) -> np.ndarray:
        """Features rounded up onto the training bin edges (unchanged when binning is off); NaN stays NaN."""
        Xa = np.asarray(X, dtype=float)
        edges = getattr(self, "bin_edges_", None)
        if not edges:
            return Xa
        out = Xa.copy()
        for j, e in enumerate(edges):
            if e is not None:
                x = Xa[:, j]
                # searchsorted puts NaN past the last edge; a missing value must stay missing
                rounded = e[np.minimum(np.searchsorted(e, x, side="left"), e.size - 1)]
                out[:, j] = np.where(np.isnan(x), np.nan, rounded)
        return out

    def _predictor(self, X: Any) -> np.ndarray:
        """The features checked and rounded onto the training bin edges, as the trees read them (float32)."""
        check_is_fitted(self, "model_")
        return np.ascontiguousarray(self._binned(self._check_features(X)), dtype=np.float32)

    def _ensemble(self, X: Any, kind: Literal["risk", "cumhaz", "survival"], columns: int | None = None) -> np.ndarray:
        """The mean over the trees of each tree's risk, cumulative hazard or S(t) (n, or n × times;
        ``columns``: only the first that many times).

        The trees' own prediction, without scikit-survival's per-tree input checks and thread pool:
        each tree's leaf (found by ``Tree.apply``'s rule, which sends a missing value the side its
        split stored) indexes the leaf values of the compact store (:class:`TreeStore`), summed tree
        by tree in the forest's order and divided by the number of trees, the operations of
        scikit-survival's ``_predict`` on one core, so the result is bit-identical to it
        (tests/models/test_forest_predict.py, tests/models/test_tree_store.py). A tree's risk (its
        cumulative hazard summed over the event times, scikit-survival's ``SurvivalTree.predict``)
        is summed once per leaf at fit, not once per patient. Every patient's sum
        runs in the same order whatever the block, so blocks of :data:`PREDICT_BLOCK` patients
        bound the memory and run on every core for a large batch (above 10 × :data:`LARGE_COHORT`)
        with the same result: deterministic, where scikit-survival's threads add trees in any order.
        """
        if kind == "risk":
            return self._tree_means(X, risk=True)[0]
        cols = len(self.model_.unique_times_) if columns is None else columns
        return self._tree_means(X, curve=(1 if kind == "survival" else 0, slice(0, cols)))[1]

    def _tree_means(
        self, X: Any, *, risk: bool = False, curve: tuple[int, slice | np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_ensemble`'s walk: each tree's leaves read once for the risk (``risk``) and for a
        curve (``curve``: the channel, 0 cumulative hazard or 1 S(t), and its columns, the first
        ones or the picked ones), the same sums in the same order for each (an empty array for
        what is not asked)."""
        Xb = self._predictor(X)
        store = self.model_
        channel, cols = curve if curve is not None else (0, slice(0, 0))
        columns = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else np.asarray(cols, dtype=np.int64)

        def block(start: int) -> tuple[np.ndarray, np.ndarray]:
            return store.sums(Xb[start : start + PREDICT_BLOCK], risk=risk, channel=channel, columns=columns)

        starts = range(0, len(Xb), PREDICT_BLOCK)
        if len(Xb) > 10 * LARGE_COHORT and (os.cpu_count() or 1) > 1:
            with ThreadPoolExecutor(os.cpu_count()) as pool:
                parts = list(pool.map(block, starts))
        else:
            parts = [block(s) for s in starts]
        r = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        c = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, columns.size))
        r /= store.n_trees
        c /= store.n_trees
        return r, c

    def tree_survival(self, X: Any, times: np.ndarray) -> np.ndarray:
        """Each tree's own S(t) at ``times`` (1 before the first time): trees × patients × times."""
        store = self.model_
        if store.low_memory:
            raise UserInputError("this forest was fitted with low_memory=True: it gives risk scores, not curves")
        idx = np.searchsorted(store.unique_times, times, side="right") - 1
        rows = store.leaf_rows(self._predictor(X)).T  # trees × patients
        out = np.ones((*rows.shape, idx.size))
        for j, col in enumerate(idx):
            if col >= 0:
                out[:, :, j] = store.leaf_values(int(col), 1)[rows]
        return out

    def predict_risk(self, X: Any) -> np.ndarray:
        """Sum of the ensemble cumulative hazard over the training event times (higher = worse)."""
        return self._ensemble(X, "risk")

    def cumulative_hazard_matrix(self, X: Any, until: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(the forest's times, the ensemble cumulative hazard of each patient at them: n × times);
        with ``until``, only the times up to it (the rest of the curve is not computed).

        Each tree's leaf holds the Nelson-Aalen estimate of its patients, so the ensemble average
        is non-decreasing in t with increments in [0, 1]. The times are every distinct training
        time (on the time grid when it is on); the hazard is flat at censoring times.
        """
        if self.model_.low_memory:
            raise UserInputError("this forest was fitted with low_memory=True: it gives risk scores, not curves")
        times = np.asarray(self.model_.unique_times_, dtype=float)
        if until is not None:
            times = times[: int(np.searchsorted(times, until, side="right"))]
        return times, self._ensemble(X, "cumhaz", columns=times.size)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        if self.model_.low_memory:
            raise UserInputError("this forest was fitted with low_memory=True: it gives risk scores, not curves")
        return self._risk_and_curve(X, times, risk=False)[1]

    def predict_risk_and_survival(self, X: Any, times: Any) -> tuple[np.ndarray, np.ndarray]:
        """The risk and S(t) at ``times`` from one walk of each tree (the same numbers as
        :meth:`predict_risk` and :meth:`predict_survival`)."""
        check_is_fitted(self, "max_time_")
        if self.model_.low_memory:
            raise UserInputError("this forest was fitted with low_memory=True: it gives risk scores, not curves")
        return self._risk_and_curve(X, check_horizons(times, self.max_time_), risk=True)

    def survival_at_own_times(self, X: Any, times: Any) -> np.ndarray:
        """Each patient's S at their own time (row i at ``times[i]``, as D-calibration asks): the
        diagonal of ``predict_survival(X, times)``, bit for bit, from one column a patient.

        The diagonal of the n × n matrix cost n times the work; here the patients are grouped by
        the forest time their own time falls on, and each group's trees read at that column only.
        """
        check_is_fitted(self, "max_time_")
        store = self.model_
        if store.low_memory:
            raise UserInputError("this forest was fitted with low_memory=True: it gives risk scores, not curves")
        t = check_horizons(times, self.max_time_)
        Xb = self._predictor(X)
        if len(t) != len(Xb):
            raise ValueError(f"one time per patient: {len(Xb)} patients, {len(t)} times")
        idx = np.searchsorted(store.unique_times_, t, side="right") - 1
        out = np.ones(len(t))  # S = 1 before the forest's first time

        def group(col: int) -> None:
            rows = np.flatnonzero(idx == col)
            column = np.array([col], dtype=np.int64)
            for start in range(0, len(rows), PREDICT_BLOCK):
                part = rows[start : start + PREDICT_BLOCK]
                out[part] = store.sums(Xb[part], risk=False, channel=1, columns=column)[1][:, 0] / store.n_trees

        columns = [int(c) for c in np.unique(idx[idx >= 0])]
        if len(Xb) > 10 * LARGE_COHORT and (os.cpu_count() or 1) > 1:
            with ThreadPoolExecutor(os.cpu_count()) as pool:
                list(pool.map(group, columns))
        else:
            for col in columns:
                group(col)
        return out

    def _risk_and_curve(self, X: Any, times: np.ndarray, *, risk: bool) -> tuple[np.ndarray, np.ndarray]:
        """S(t) at ``times`` (1 before the first time), read from the trees at those times only; the risk if asked."""
        idx = np.searchsorted(self.model_.unique_times_, times, side="right") - 1
        r, surv = self._tree_means(X, risk=risk, curve=(1, np.clip(idx, 0, None)))
        return r, np.where(idx[None, :] >= 0, surv, 1.0)

    def save_state(self, folder: Path) -> None:
        """The compact trees as ``forest.npz`` (numbers only: :class:`TreeStore`); bin edges and
        time grid in ``estimator.json``."""
        self.model_.save(folder / STORE_FILE)
        extra = {"bin_edges": self.bin_edges_, "time_grid": self.time_grid_}
        write_json(folder / "estimator.json", {**self._common_state(), **extra})

    @classmethod
    def load_state(cls, folder: Path) -> SurvivalForest:
        """The fitted forest from the files :meth:`save_state` wrote, every array checked before use;
        a folder written before the compact store (``estimator.skops``: skops types on the allow-list
        only, every tree checked) is converted as it is read."""
        d = read_json(folder / "estimator.json", ForestFile)
        forest = cls(**estimator_params(cls, d["params"], folder / "estimator.json"))
        forest._restore_common(d)
        new, old = (folder / STORE_FILE).exists(), (folder / OLD_FILE).exists()
        if new and old:
            raise ModelFileError(f"{folder}: holds both {STORE_FILE} and {OLD_FILE}; a forest is one or the other")
        if new or not old:
            forest.model_ = load_store(folder / STORE_FILE, forest.n_features_in_, bool(forest.low_memory))
        else:
            forest.model_ = _converted(folder / OLD_FILE, forest.n_features_in_)
        edges = d.get("bin_edges")
        forest.bin_edges_ = None if edges is None else [None if e is None else np.asarray(e) for e in edges]
        grid = d.get("time_grid")
        forest.time_grid_ = None if grid is None else np.asarray(grid, float)
        return forest


def _converted(path: Path, n_features: int) -> TreeStore:
    """An older folder's scikit-survival forest (``estimator.skops``), checked, as a compact store."""
    model = load_skops_exclusive(path, SurvivalForest.SKOPS_ROOT, SurvivalForest.SKOPS_ALLOWED)
    _check_forest(model, path)
    if int(model.n_features_in_) != n_features:
        raise ModelFileError(f"{path}: built for {model.n_features_in_} features, the model has {n_features}")
    return compact_trees(model.estimators_, model.unique_times_, model.is_event_time_, bool(model.low_memory))


def _check_forest(model: Any, path: Path) -> None:
    """Every tree of a loaded forest checked before its first use (riskmodel.models.untrusted)."""
    from sklearn.tree._tree import Tree
    from sksurv.tree import SurvivalTree

    n_features = int(model.n_features_in_)
    times = np.asarray(model.unique_times_, dtype=float)
    if times.ndim != 1 or not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise ModelFileError(f"{path}: the forest's event times are not finite and increasing; refusing to load")
    for i, tree in enumerate(model.estimators_):
        where = f"{path}: tree {i}"
        if not isinstance(tree, SurvivalTree) or not isinstance(tree.tree_, Tree):
            raise ModelFileError(f"{where}: not a survival tree; refusing to load")
        check_sklearn_tree(tree.tree_, n_features, where)
        shape = tree.tree_.value.shape
        expected = (1, 1) if model.low_memory else (times.size, 2)
        if shape[1:] != expected or len(tree.unique_times_) != times.size or len(tree.is_event_time_) != times.size:
            raise ModelFileError(f"{where}: node values of shape {shape[1:]}, the forest needs {expected}")
