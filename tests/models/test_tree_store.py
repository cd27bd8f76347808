"""The compact forest store: scikit-survival's numbers bit for bit, from a file that can be trusted only after checks.

References are scikit-survival's own ``RandomSurvivalForest`` grown in one call with the same
settings and seed, predicting on one core (its trees added in the forest's order) on the forest's
binned float32 features. Tolerance zero (``np.array_equal``) throughout: the store keeps the
same float64 leaf values and adds them in the same order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from riskmodel.errors import ModelFileError
from riskmodel.models import SurvivalForest
from riskmodel.models.forest import CHUNK_TREES
from riskmodel.models.tree_store import ARRAYS, load_store
from riskmodel.privacy import PhiGuard
from riskmodel.stats import survival_array


def cohort(n: int, seed: int, *, ties: bool = True) -> tuple[np.ndarray, Any]:
    """Four features (the third 15 % missing, the fourth few-valued: tied values), event times on a
    coarse grid (tied times) or continuous."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[:, 3] = rng.integers(0, 4, n)
    X[rng.random(n) < 0.15, 2] = np.nan
    hazard = np.exp(X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 3])
    time = np.minimum(rng.exponential(10 / hazard), rng.uniform(0, 30, n)) + 0.1
    return X, survival_array(rng.random(n) < 0.7, np.round(time, 0) + 1 if ties else time)


def reference(forest: SurvivalForest, fit: tuple[np.ndarray, Any]) -> Any:
    """scikit-survival's forest grown in one call (one core) on what the forest's fit gave its trees."""
    return clone(forest).sksurv_forest(*fit)


def assert_same_predictions(forest: SurvivalForest, rsf: Any, X: np.ndarray) -> None:
    Xb = np.asarray(forest._binned(X), dtype=np.float32)
    assert np.array_equal(forest.predict_risk(X), rsf.predict(Xb))
    if rsf.low_memory:
        return
    times, cumhaz = forest.cumulative_hazard_matrix(X)
    assert np.array_equal(times, rsf.unique_times_)
    assert np.array_equal(cumhaz, rsf.predict_cumulative_hazard_function(Xb, return_array=True))
    surv = forest.predict_survival(X, rsf.unique_times_).to_numpy()
    assert np.array_equal(surv, rsf.predict_survival_function(Xb, return_array=True))


@pytest.mark.parametrize(
    ("n", "settings", "ties"),
    [
        (300, {"time_grid": None}, True),  # exact: every distinct (tied) time
        (300, {"time_grid": None}, False),  # exact, continuous times
        (1500, {}, False),  # the fast path: time grid, subsample, binned features
        (300, {"time_grid": 12}, True),  # a grid on a small cohort
    ],
)
def test_predictions_equal_scikit_survival_bit_for_bit_over_several_chunks(n: int, settings: dict, ties: bool) -> None:
    X, y = cohort(n, seed=n, ties=ties)
    trees = 2 * CHUNK_TREES + 3  # three chunks at fit, the last one short
    forest = SurvivalForest(n_estimators=trees, min_samples_leaf=5, random_state=4, **settings).fit(X, y)
    rsf = reference(forest, (X, y))
    assert forest.model_.n_trees == len(rsf.estimators_) == trees
    X_new, _ = cohort(200, seed=n + 1, ties=ties)
    assert_same_predictions(forest, rsf, X_new)


def test_the_chunked_fit_grows_the_trees_of_one_call_and_keeps_their_leaves_only() -> None:
    X, y = cohort(400, seed=2)
    forest = SurvivalForest(n_estimators=CHUNK_TREES + 5, random_state=9).fit(X, y)
    rsf = reference(forest, (X, y))
    store = forest.model_
    chf, surv = store.curves(0), store.curves(1)
    for k, tree in enumerate(rsf.estimators_):
        t, mine = tree.tree_, store.tree(k)
        assert np.array_equal(mine["left"], t.children_left)
        assert np.array_equal(mine["right"], t.children_right)
        assert np.array_equal(mine["feature"], t.feature)
        assert np.array_equal(mine["threshold"], t.threshold)
        assert np.array_equal(mine["missing_left"], t.missing_go_to_left)
        assert np.array_equal(mine["cover"], t.weighted_n_node_samples)
        leaves = np.flatnonzero(t.children_left == -1)
        # the leaves' curves, expanded from their steps: scikit-survival's bit for bit
        assert np.array_equal(chf[mine["leaf"][leaves]], t.value[leaves, :, 0])
        assert np.array_equal(surv[mine["leaf"][leaves]], t.value[leaves, :, 1])
    nodes = sum(tree.tree_.node_count for tree in rsf.estimators_)
    assert len(store.leaf_risk) == (store.leaf >= 0).sum() < 0.55 * nodes  # leaves only: about half
    dense = sum(tree.tree_.value.nbytes for tree in rsf.estimators_)
    assert store.step_chf.nbytes + store.step_surv.nbytes < dense / 10  # a few steps a leaf, not every time


def test_a_missing_value_in_a_feature_never_missing_in_training_goes_the_side_scikit_learn_sends_it() -> None:
    X, y = cohort(500, seed=5)
    X[:, 2] = np.nan_to_num(X[:, 2])  # training: no feature missing
    forest = SurvivalForest(n_estimators=30, random_state=1).fit(X, y)
    X_new, _ = cohort(300, seed=6)
    X_new[np.random.default_rng(0).random(X_new.shape) < 0.3] = np.nan  # any feature missing now
    assert_same_predictions(forest, reference(forest, (X, y)), X_new)


def test_a_low_memory_forest_gives_scikit_survivals_risk() -> None:
    X, y = cohort(300, seed=8)
    forest = SurvivalForest(n_estimators=CHUNK_TREES + 2, low_memory=True, random_state=2).fit(X, y)
    assert forest.model_.step_start.max() == 0  # no curves
    assert_same_predictions(forest, reference(forest, (X, y)), cohort(100, seed=9)[0])


def test_each_trees_survival_is_scikit_survivals_tree_by_tree() -> None:
    X, y = cohort(300, seed=10)
    forest = SurvivalForest(n_estimators=6, random_state=3).fit(X, y)
    rsf = reference(forest, (X, y))
    X_new = cohort(5, seed=11)[0]
    grid = np.array([0.5, 3.0, 10.0, 25.0])  # the first before any time: S = 1
    idx = np.searchsorted(rsf.unique_times_, grid, side="right") - 1
    Xb = np.asarray(forest._binned(X_new), dtype=np.float32)
    for k, tree in enumerate(rsf.estimators_):
        curve = tree.predict_survival_function(Xb, return_array=True)
        expected = np.where(idx >= 0, curve[:, np.clip(idx, 0, None)], 1.0)
        assert np.array_equal(forest.tree_survival(X_new, grid)[k], expected)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SurvivalForest, np.ndarray]:
    X, y = cohort(300, seed=12)
    forest = SurvivalForest(n_estimators=8, random_state=5).fit(X, y)
    folder = tmp_path_factory.mktemp("forest")
    forest.save_state(folder)
    return folder, forest, X


def test_a_saved_forest_is_numbers_only_and_reads_back_to_the_same_bits(saved: tuple) -> None:
    folder, forest, X = saved
    assert sorted(p.name for p in folder.iterdir()) == ["estimator.json", "forest.npz"]
    with np.load(folder / "forest.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(ARRAYS)
        assert all(npz[name].dtype == dtype for name, (dtype, _) in ARRAYS.items())
    # every member numeric: the PHI guard reads their headers and passes them unread
    PhiGuard(identifiers=frozenset({"KX90007"})).check_file(folder / "forest.npz", "model/forest.npz")
    loaded = SurvivalForest.load_state(folder)
    assert np.array_equal(loaded.predict_risk(X), forest.predict_risk(X))
    assert np.array_equal(loaded.cumulative_hazard_matrix(X)[1], forest.cumulative_hazard_matrix(X)[1])


def test_a_folder_written_before_the_store_is_converted_as_it_is_read(tmp_path: Path) -> None:
    """The old format, written here as the earlier code wrote it (scikit-survival's forest in
    ``estimator.skops`` beside the same ``estimator.json``), reads back to the same bits."""
    import skops.io as sio

    X, y = cohort(400, seed=13)
    forest = SurvivalForest(n_estimators=7, random_state=6).fit(X, y)
    forest.save_state(tmp_path)
    (tmp_path / "forest.npz").unlink()
    sio.dump(reference(forest, (X, y)), tmp_path / "estimator.skops")
    old = SurvivalForest.load_state(tmp_path)
    X_new = cohort(100, seed=14)[0]
    assert np.array_equal(old.predict_risk(X_new), forest.predict_risk(X_new))
    assert np.array_equal(old.cumulative_hazard_matrix(X_new)[1], forest.cumulative_hazard_matrix(X_new)[1])
    again = tmp_path / "again"
    again.mkdir()
    old.save_state(again)  # saved again: the new format
    assert (again / "forest.npz").exists()
    assert not (again / "estimator.skops").exists()
    shutil.copy(again / "forest.npz", tmp_path / "forest.npz")
    with pytest.raises(ModelFileError, match=r"holds both forest\.npz and estimator\.skops"):
        SurvivalForest.load_state(tmp_path)


def _edited(folder: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the saved forest with arrays replaced (a function of the old array, or a new one)."""
    out = tmp_path / "edited"
    shutil.copytree(folder, out)
    with np.load(folder / "forest.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, change in changes.items():
        arrays[name] = change(arrays[name].copy()) if callable(change) else change
    (out / "forest.npz").unlink()
    with (out / "forest.npz").open("wb") as fh:
        np.savez(fh, **arrays)
    return out


def _set(index: int | tuple[int, ...], value: Any) -> Any:
    def edit(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a

    return edit


def _first_split(folder: Path) -> int:
    with np.load(folder / "forest.npz", allow_pickle=False) as npz:
        return int(np.flatnonzero(npz["left"] >= 0)[0])


HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    "child far outside": ({"left": _set(0, 10**9)}, "has children 1000000000"),
    "child pointing back": ({"right": _set(0, 0)}, "not after it"),
    "leaf with a child": ({"right": lambda a: np.where(a == -1, 1, a).astype(np.int32)}, "children"),
    "feature outside the model": ({"feature": _set(0, 10**6)}, "splits on feature 1000000"),
    "negative feature": ({"feature": _set(0, -5)}, "splits on feature -5"),
    "leaf row outside": ({"leaf": lambda a: np.where(a >= 0, a + 10**6, a).astype(np.int32)}, "leaf rows"),
    "leaf rows repeated": ({"leaf": lambda a: np.where(a >= 0, 0, a).astype(np.int32)}, "leaf rows"),
    "offsets past the nodes": ({"offsets": lambda a: a + 5}, "offsets"),
    "offsets beyond the arrays": ({"offsets": _set(-1, 10**7)}, "does not hold the forest's"),
    "a tree of no nodes": ({"offsets": lambda a: np.concatenate([a[:1], a])}, "offsets"),
    "int64 children": ({"left": lambda a: a.astype(np.int64)}, "left is int64, 1-D"),
    "big-endian thresholds": ({"threshold": lambda a: a.astype(">f8")}, "threshold is >f8"),
    "NaN threshold": ({"threshold": _set(0, np.nan)}, "threshold or missing side"),
    "missing side 7": ({"missing_left": _set(0, 7)}, "threshold or missing side"),
    "infinite curve": ({"step_chf": _set(0, np.inf)}, "not a finite number"),
    "steps past the arrays": ({"step_start": _set(-1, 10**9)}, "step"),
    "a leaf without steps": ({"step_start": lambda a: np.concatenate([a[:1], a[:-1]])}, "step_start is not"),
    "a step column past the times": ({"step_col": _set(-1, 10**6)}, "rise within the"),
    "a leaf starting after column 0": ({"step_col": _set(0, 1)}, "start at column 0"),
    "step columns not rising": ({"step_col": lambda a: np.where(a > 0, 1, 0).astype(np.int32)}, "rise within"),
    "fewer step values": ({"step_surv": lambda a: a[1:]}, "the step arrays do not hold"),
    "times decreasing": ({"unique_times": lambda a: a[::-1].copy()}, "do not increase"),
    "2-D children": ({"left": lambda a: a[:, None]}, "left is int32, 2-D"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_array_is_refused_before_any_walk(case: str, saved: tuple, tmp_path: Path) -> None:
    folder, _, _ = saved
    changes, message = HOSTILE[case]
    if case == "child pointing back":  # the first split's right child set to itself
        changes = {"right": _set(_first_split(folder), _first_split(folder))}
    with pytest.raises(ModelFileError, match="refusing to load") as info:
        SurvivalForest.load_state(_edited(folder, tmp_path, **changes))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_object_array_is_refused_never_unpickled(saved: tuple, tmp_path: Path) -> None:
    folder, _, _ = saved
    edited = _edited(folder, tmp_path, cover=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelFileError, match=r"unreadable array.*allow_pickle"):
        SurvivalForest.load_state(edited)


def test_an_extra_or_missing_member_is_refused(saved: tuple, tmp_path: Path) -> None:
    folder, _, _ = saved
    with pytest.raises(ModelFileError, match=r"holds extra\.npy where a forest's arrays"):
        load_store(_edited(folder, tmp_path, extra=np.zeros(3)) / "forest.npz", 4, False)
    path = tmp_path / "few.npz"
    np.savez(path, left=np.zeros(2, np.int32))
    with pytest.raises(ModelFileError, match="where a forest's arrays are expected"):
        load_store(path, 4, False)


def test_a_store_built_for_more_features_is_refused(saved: tuple, tmp_path: Path) -> None:
    folder, forest, _ = saved
    state = json.loads((folder / "estimator.json").read_text())
    with pytest.raises(ModelFileError, match="splits on feature"):
        load_store(folder / "forest.npz", 1, False)
    assert state["n_features_in"] == forest.n_features_in_ == 4


@pytest.mark.parametrize("horizon", [None, 6.0, 0.01])  # risk; S(6); S before the first time (1)
def test_treeshap_reads_scikit_survivals_tree_arrays_and_leaf_values_from_the_store(horizon: float | None) -> None:
    """The shap tree dicts of the store carry scikit-survival's own structure, cover and leaf values
    exactly (tolerance 0), so TreeSHAP gives the values it gave on scikit-survival's trees."""
    from riskmodel.explain.trees import forest_tree_dicts

    X, y = cohort(300, seed=15)
    forest = SurvivalForest(n_estimators=5, random_state=7).fit(X, y)
    rsf = reference(forest, (X, y))
    col = None if horizon is None else int(np.searchsorted(rsf.unique_times_, horizon, side="right")) - 1
    for tree, d in zip(rsf.estimators_, forest_tree_dicts(forest, horizon), strict=True):
        t = tree.tree_
        leaves = t.children_left == -1
        assert np.array_equal(d["children_left"], t.children_left)
        assert np.array_equal(d["children_default"], np.where(t.missing_go_to_left, t.children_left, t.children_right))
        assert np.array_equal(d["thresholds"], t.threshold)
        assert np.array_equal(d["node_sample_weight"][leaves], t.weighted_n_node_samples[leaves])
        if col is None:
            expected = t.value[:, rsf.is_event_time_, 0].sum(axis=1)
        else:
            expected = t.value[:, col, 1] if col >= 0 else np.ones(t.node_count)
        assert np.array_equal(d["values"][leaves, 0], expected[leaves] / len(rsf.estimators_))


def test_any_columns_in_any_order_read_the_same_values_as_the_whole_curves() -> None:
    """The walk's two readings of a leaf's steps (a run of columns; columns in any order, repeated)
    against the leaves' curves expanded in full, summed tree by tree (tolerance 0)."""
    X, y = cohort(300, seed=16)
    forest = SurvivalForest(n_estimators=4, time_grid=None, random_state=8).fit(X, y)
    store = forest.model_
    Xb = np.asarray(forest._binned(cohort(50, seed=17)[0]), dtype=np.float32)
    rows = store.leaf_rows(Xb)
    times = len(store.unique_times)
    for channel in (0, 1):
        dense = store.curves(channel)
        for cols in (np.arange(3, times), np.array([times - 1, 2, 2, 0, 7, 1]), np.arange(times)):
            expected = np.zeros((len(Xb), cols.size))
            for k in range(store.n_trees):
                expected += dense[rows[:, k]][:, cols]
            assert np.array_equal(store.sums(Xb, risk=False, channel=channel, columns=cols)[1], expected)
    with pytest.raises(ValueError, match="columns outside"):
        store.sums(Xb, risk=False, columns=np.array([times]))


def test_an_older_model_folder_loads_and_predicts_as_the_same_model_saved_now(tmp_path: Path) -> None:
    """A whole riskmodel folder of the earlier format (estimator.skops, manifest to match) passes the
    folder checks and gives the risks, S(t) and SHAP values of the same fit saved as forest.npz."""
    import pandas as pd

    from riskmodel.scoring import RiskModel
    from tests.small_models import new_patients, save_small_model

    new = RiskModel.load(save_small_model(tmp_path / "new", "rsf"))
    old = RiskModel.load(save_small_model(tmp_path / "old", "rsf_legacy"))
    patients = pd.read_csv(new_patients(tmp_path / "patients.csv"))
    assert np.array_equal(old.predict_risk(patients), new.predict_risk(patients))
    assert np.array_equal(old.predict_survival(patients).to_numpy(), new.predict_survival(patients).to_numpy())
    assert np.array_equal(old.explain(patients).values, new.explain(patients).values)


@pytest.mark.parametrize(("n", "settings"), [(300, {"time_grid": None}), (1500, {})])
def test_each_patients_survival_at_their_own_time_is_scikit_survivals_bit_for_bit(n: int, settings: dict) -> None:
    """D-calibration's S_i(t_i): the forest reads one column a patient; the value is scikit-survival's
    S(t) of that patient at the last forest time ≤ t_i (1 before the first), and the diagonal of
    riskmodel's own n × n prediction, bit for bit."""
    X, y = cohort(n, seed=11, ties=False)
    forest = SurvivalForest(n_estimators=25, random_state=3, **settings).fit(X, y)
    rng = np.random.default_rng(4)
    t = np.concatenate([[0.0, forest.max_time_], rng.uniform(0, forest.max_time_, n - 2)])  # before the first time too
    own = forest.survival_at_own_times(X, t)
    col = np.searchsorted(forest.model_.unique_times_, t, side="right") - 1
    if settings.get("time_grid", "auto") is None:  # (on the grid, the reference trees would need snapped times)
        rsf = reference(forest, (X, y))
        table = rsf.predict_survival_function(X.astype(np.float32), return_array=True)
        assert np.array_equal(rsf.unique_times_, forest.model_.unique_times_)
        assert np.array_equal(own, np.where(col >= 0, table[np.arange(n), np.clip(col, 0, None)], 1.0))
    assert col.min() < 0
    assert (own[col < 0] == 1.0).all()
    diagonal = np.array([forest.predict_survival(X[i : i + 1], [t[i]]).to_numpy()[0, 0] for i in range(0, n, 7)])
    assert np.array_equal(own[::7], diagonal)
    with pytest.raises(ValueError, match="one time per patient"):
        forest.survival_at_own_times(X, t[:-1])
