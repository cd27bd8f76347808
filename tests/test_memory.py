"""Bounded peak memory (issue 21): skops files written straight to disk, freed pages returned.

The model files must not change: the streamed file holds the same members with the same bytes as
``skops.io.dump``'s (tolerance 0), and the forest read back predicts exactly what was saved."""

from __future__ import annotations

import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import skops.io as sio

from riskmodel.core.memory import dump_skops, release_freed_memory
from riskmodel.models import SurvivalForest
from riskmodel.stats import survival_array


def _forest() -> tuple[SurvivalForest, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 4))
    time = rng.exponential(np.exp(-X[:, 0]))
    event = rng.random(600) < 0.7
    forest = SurvivalForest(n_estimators=30, time_grid=40, random_state=0).fit(X, survival_array(event, time))
    return forest, X


def _sksurv_forest() -> object:
    """scikit-survival's forest (what gradient boosting's sksurv backend and older forest folders write with skops)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 4))
    time = rng.exponential(np.exp(-X[:, 0]))
    event = rng.random(600) < 0.7
    return SurvivalForest(n_estimators=30, time_grid=40, random_state=0).sksurv_forest(X, survival_array(event, time))


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_streamed_skops_file_equals_skops_dump(tmp_path: Path) -> None:
    forest = _sksurv_forest()
    sio.dump(forest, tmp_path / "skops.skops")
    dump_skops(forest, tmp_path / "streamed.skops")
    theirs, ours = _members(tmp_path / "skops.skops"), _members(tmp_path / "streamed.skops")
    # skops names objects and array members by the ids of (ephemeral) Python objects: two dumps of
    # one model differ in those numbers only, so members are compared in order and the ids in the
    # schema by their order of first appearance
    assert len(ours) == len(theirs)
    assert list(ours)[-1] == list(theirs)[-1] == "schema.json"
    for mine, skops_name in zip(list(ours)[:-1], list(theirs)[:-1], strict=True):
        assert mine.endswith(".npy")
        assert skops_name.endswith(".npy")
        assert ours[mine] == theirs[skops_name]  # byte for byte
    assert _ids_in_order(ours["schema.json"]) == _ids_in_order(theirs["schema.json"])


def _ids_in_order(schema: bytes) -> str:
    seen: dict[str, str] = {}
    return re.sub(r"[0-9]{9,}", lambda m: seen.setdefault(m.group(), f"id{len(seen)}"), schema.decode())


def test_saved_forest_reads_back_to_the_same_predictions(tmp_path: Path) -> None:
    forest, X = _forest()
    forest.save_state(tmp_path)
    loaded = SurvivalForest.load_state(tmp_path)
    times = np.array([0.2, 0.5, 1.0])
    assert np.array_equal(loaded.predict_risk(X), forest.predict_risk(X))
    assert np.array_equal(loaded._survival_matrix(X, times), forest._survival_matrix(X, times))


def test_streamed_dump_keeps_no_copy_of_the_model_in_memory(tmp_path: Path) -> None:
    """skops's dump holds the whole zip in memory (peak ≥ the file's size); the streamed one holds
    a tree's arrays at a time (skops's own state of the trees reaches ~half the file here)."""
    forest = _sksurv_forest()
    peaks = {}
    for name, dump in (("skops", sio.dump), ("streamed", dump_skops)):
        tracemalloc.start()
        dump(forest, tmp_path / f"{name}.skops")
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    size = (tmp_path / "streamed.skops").stat().st_size
    assert peaks["skops"] >= size
    assert peaks["streamed"] < 0.6 * size


def test_release_freed_memory_changes_nothing() -> None:
    forest, X = _forest()
    before = forest.predict_risk(X)
    release_freed_memory()
    assert np.array_equal(forest.predict_risk(X), before)
