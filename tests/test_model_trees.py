"""Crafted tree files (a child index of 10¹², a feature index of 10⁹, a foreign estimator, a zip bomb)
are refused with one line and exit 2, before any tree is walked or any archive member read."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.core.archives import check_zip
from riskmodel.errors import ModelFileError
from riskmodel.scoring import RiskModel
from tests.conftest import REPO
from tests.small_models import new_patients, save_small_model


def rewrite_manifest(folder: Path) -> None:
    """What an attacker who edits a model folder also does: make the manifest match again."""
    import hashlib

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _skops(path: Path) -> object:
    import skops.io as sio

    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def _edit_tree(folder: Path, field: str, value: int) -> None:
    import skops.io as sio

    path = folder / "estimator.skops"
    model = _skops(path)
    trees = model.estimators_ if hasattr(model.estimators_, "__len__") else []  # type: ignore[attr-defined]
    tree = np.asarray(trees, dtype=object).ravel()[0].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    state["nodes"] = nodes
    tree.__setstate__(state)
    path.unlink()
    sio.dump(model, path)


def _edit_store(folder: Path, name: str, value: int, *, at_leaf: bool = False) -> None:
    """One entry of the compact forest's arrays (forest.npz) rewritten: at the first split, or the first leaf."""
    path = folder / "forest.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    node = int(np.flatnonzero((arrays["left"] == -1) if at_leaf else (arrays["left"] >= 0))[0])
    arrays[name][node] = value
    path.unlink()
    np.savez(path, **arrays)


def _edit_booster(folder: Path, field: str, value: int) -> None:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(folder / "booster.ubj"))
    raw = json.loads(booster.save_raw("json"))
    raw["learner"]["gradient_booster"]["model"]["trees"][0][field][0] = value
    crafted = xgb.Booster()
    crafted.load_model(bytearray(json.dumps(raw).encode()))
    crafted.save_model(str(folder / "booster.ubj"))


CRAFTED: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "old forest child 1e12": ("rsf_legacy", lambda f: _edit_tree(f, "left_child", 10**12), "children"),
    "old forest feature 1e9": ("rsf_legacy", lambda f: _edit_tree(f, "feature", 10**9), "feature"),
    "old forest child pointing back": ("rsf_legacy", lambda f: _edit_tree(f, "right_child", 0), "children"),
    "forest child 1e9": ("rsf", lambda f: _edit_store(f, "left", 10**9), "children"),
    "forest feature 1e9": ("rsf", lambda f: _edit_store(f, "feature", 10**9), "feature"),
    "forest child pointing back": ("rsf", lambda f: _edit_store(f, "right", 0), "children"),
    "forest leaf row 1e9": ("rsf", lambda f: _edit_store(f, "leaf", 10**9, at_leaf=True), "leaf rows"),
    "sksurv boosting child 1e12": ("gbm_sksurv", lambda f: _edit_tree(f, "left_child", 10**12), "children"),
    "xgboost child 1e9": ("gbm", lambda f: _edit_booster(f, "left_children", 10**9), "children"),
    "xgboost feature 1e9": ("gbm", lambda f: _edit_booster(f, "split_indices", 10**9), "feature"),
}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("crafted")
    kinds = ("rsf", "rsf_legacy", "gbm_sksurv", "gbm")
    clean = {kind: save_small_model(tmp / f"clean-{kind}", kind) for kind in kinds}
    out = {}
    for name, (kind, edit, _) in CRAFTED.items():
        folder = tmp / name.replace(" ", "-")
        shutil.copytree(clean[kind], folder)
        edit(folder)
        rewrite_manifest(folder)
        out[name] = folder
    return out


def test_crafted_tree_arrays_are_refused_by_score_in_a_process_of_their_own(
    crafted: dict[str, Path], tmp_path: Path
) -> None:
    """Each in a subprocess: on the old code these crashed the process (SIGSEGV), which must fail
    this test rather than kill pytest."""
    patients = new_patients(tmp_path / "new.csv")
    script = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from riskmodel.cli import app\n"
        "out = {}\n"
        "for name, folder in json.loads(sys.argv[1]).items():\n"
        "    r = CliRunner().invoke(app, ['score', '--model', folder, '--patients', sys.argv[2]])\n"
        "    out[name] = [r.exit_code, r.stderr]\n"
        "print(json.dumps(out))\n"
    )
    folders = json.dumps({k: str(v) for k, v in crafted.items()})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, folders, str(patients)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, f"the scoring process died with {done.returncode}: {done.stderr[-2000:]}"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (code, stderr) in results.items():
        assert code == 2, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1, (name, stderr)
        assert "Traceback" not in stderr
        assert CRAFTED[name][2] in stderr, (name, stderr)


def test_a_logistic_regression_in_estimator_skops_is_refused_though_skops_trusts_it(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    folder = save_small_model(tmp_path / "rsf", "rsf_legacy")
    assert not sio.get_untrusted_types(data=sio.dumps(LogisticRegression()))  # skops would load it silently
    (folder / "estimator.skops").unlink()
    sio.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), folder / "estimator.skops")
    rewrite_manifest(folder)
    with pytest.raises(
        ModelFileError,
        match=r"outside the allow-list: sklearn\.linear_model\._logistic\.LogisticRegression \(this family",
    ):
        RiskModel.load(folder)


def test_a_forest_holding_a_foreign_type_inside_is_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    folder = save_small_model(tmp_path / "rsf", "rsf_legacy")
    forest = _skops(folder / "estimator.skops")
    forest.estimators_[0] = LogisticRegression()  # type: ignore[attr-defined]
    (folder / "estimator.skops").unlink()
    sio.dump(forest, folder / "estimator.skops")
    rewrite_manifest(folder)
    with pytest.raises(
        ModelFileError, match=r"outside the allow-list: sklearn\.linear_model\._logistic\.LogisticRegression"
    ):
        RiskModel.load(folder)


def _bomb(path: Path, mb: int) -> None:
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("schema.json", "w") as fh,
    ):
        block = b"\0" * (1 << 20)
        for _ in range(mb):
            fh.write(block)


@pytest.mark.parametrize(("kind", "name"), [("rsf_legacy", "estimator.skops"), ("rsf", "forest.npz")])
def test_a_zip_bomb_in_a_forest_file_is_refused_before_any_member_is_read(
    kind: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = save_small_model(tmp_path / "rsf", kind)
    (folder / name).unlink()
    _bomb(folder / name, 64)
    assert (folder / name).stat().st_size < 1 << 20  # 64 MB of zeros in under 1 MB
    rewrite_manifest(folder)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a member of the archive was read")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_reading)
    result = CliRunner().invoke(
        app, ["score", "--model", str(folder), "--patients", str(new_patients(tmp_path / "p.csv"))]
    )
    assert result.exit_code == 2, result.exception
    assert "zip bomb" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_total_uncompressed_size_is_capped_and_the_message_says_how_to_lift_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.npy", os.urandom(3 << 20))
    monkeypatch.setenv("RISKMODEL_MAX_MODEL_MB", "2")
    with pytest.raises(ModelFileError, match=r"over 2 MB uncompressed.*RISKMODEL_MAX_MODEL_MB"):
        check_zip(path)
    monkeypatch.setenv("RISKMODEL_MAX_MODEL_MB", "4")
    assert check_zip(path) == ["a.npy"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs.npy", "link"])
def test_a_member_that_leaves_the_archive_or_is_a_symlink_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo(name)
        if name == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(ModelFileError, match=r"outside the archive|symbolic link"):
        check_zip(path)
