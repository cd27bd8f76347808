"""Malformed, rewritten or non-finite model files are refused with exit 2 and one line (no traceback);
configs refuse NaN and infinities; score files never hold NaN."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.scoring import write_scores
from tests.small_models import new_patients, save_small_model
from tests.test_model_trees import rewrite_manifest


def _json_edit(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        change(data)
        (folder / name).write_text(json.dumps(data))
        rewrite_manifest(folder)

    return edit


def _write(name: str, content: bytes, *, manifest: bool = True) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / name).write_bytes(content)
        if manifest:
            rewrite_manifest(folder)

    return edit


def _symlinked(folder: Path) -> None:
    outside = folder.parent / f"{folder.name}-cox.json"
    shutil.move(folder / "cox.json", outside)
    (folder / "cox.json").symlink_to(outside)


def _files_as_list(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = list(manifest["files"])
    (folder / "manifest.json").write_text(json.dumps(manifest))


DEEP = b"[" * 200_000 + b"]" * 200_000

# (model kind, edit, words the one line must hold)
CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "manifest is a list": ("cox", _write("manifest.json", b"[]", manifest=False), "manifest"),
    "manifest files as a list": ("cox", _files_as_list, "files"),
    "manifest deeply nested": ("cox", _write("manifest.json", DEEP, manifest=False), "manifest"),
    "model.json deeply nested": ("cox", _write("model.json", DEEP), "model.json"),
    "model.json without family": ("cox", _json_edit("model.json", lambda d: d.pop("family")), "family"),
    "model.json with an unknown key": ("cox", _json_edit("model.json", lambda d: d.update(run="x")), "run"),
    "model.json with NaN cut-offs": (
        "cox",
        _json_edit("model.json", lambda d: d.update(risk_cutoffs=[float("nan"), float("nan")])),
        "risk_cutoffs",
    ),
    "model.json with an infinite range": (
        "cox",
        _json_edit("model.json", lambda d: d["numeric_ranges"].update(d90_gy=[0, float("inf")])),
        "numeric_ranges",
    ),
    "model.json features state with NaN": (
        "cox",
        _json_edit("model.json", lambda d: d["features"]["params"].update(alpha_beta=float("nan"))),
        "alpha_beta",
    ),
    "a coefficient 'abc'": ("cox", _json_edit("cox.json", lambda d: d["coef"].__setitem__(0, "abc")), "coef"),
    "NaN coefficients": (
        "cox",
        _json_edit("cox.json", lambda d: d.update(coef=[float("nan")] * len(d["coef"]))),
        "coef",
    ),
    "an infinite baseline hazard": (
        "cox",
        _json_edit("cox.json", lambda d: d["baseline_cumhaz"].__setitem__(-1, float("inf"))),
        "baseline_cumhaz",
    ),
    "coefficients of the wrong length": ("cox", _json_edit("cox.json", lambda d: d["coef"].pop()), "n_features_in"),
    "an unknown estimator parameter": ("cox", _json_edit("cox.json", lambda d: d["params"].update(evil=1)), "evil"),
    "a symlinked member": ("cox", _symlinked, "symbolic link"),
    "random bytes in booster.ubj": ("gbm", _write("booster.ubj", os.urandom(4096)), "booster.ubj"),
    "a boosting baseline with NaN": (
        "gbm",
        _json_edit("gbm.json", lambda d: d["event_times"].__setitem__(0, float("nan"))),
        "event_times",
    ),
    "forest bin edges with NaN": (
        "rsf",
        _json_edit("estimator.json", lambda d: d.update(time_grid=[1.0, float("nan")])),
        "time_grid",
    ),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("clean")
    return {kind: save_small_model(tmp / kind, kind) for kind in ("cox", "gbm", "rsf")}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_model_file_is_refused_with_one_line_and_exit_2(
    clean: dict[str, Path], tmp_path: Path, case: str
) -> None:
    kind, edit, words = CASES[case]
    folder = tmp_path / "model"
    shutil.copytree(clean[kind], folder)
    edit(folder)
    patients = new_patients(tmp_path / "new.csv")
    result = CliRunner().invoke(app, ["score", "--model", str(folder), "--patients", str(patients)])
    assert result.exit_code == 2, (case, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert words in lines[0], lines[0]
    assert len(lines[0]) < 600  # a line, not a dump of the file


def test_the_clean_models_still_score(clean: dict[str, Path], tmp_path: Path) -> None:
    patients = new_patients(tmp_path / "new.csv")
    for kind, folder in clean.items():
        result = CliRunner().invoke(app, ["score", "--model", str(folder), "--patients", str(patients)])
        assert result.exit_code == 0, (kind, result.output)


def _no_nan(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_score_json_writes_null_never_nan(tmp_path: Path) -> None:
    records = [{"row": 2, "risk_score": float("nan"), "survival": {"6": float("inf")}, "flags": []}]
    out = tmp_path / "scores.json"
    write_scores(records, out)
    assert _no_nan(out.read_text()) == [{"row": 2, "risk_score": None, "survival": {"6": None}, "flags": []}]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("risk_group_cutoffs: [.nan, .nan]", "risk_group_cutoffs"),
        ("horizons: [6, .inf]", "horizons"),
        ("landmark_months: .nan", "landmark_months"),
    ],
)
def test_a_config_with_nan_or_infinity_is_refused(tmp_path: Path, line: str, key: str) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: x\nendpoints: [os]\nmodels:\n  cox: {{penalty: 0.1}}\n{line}\n")
    result = CliRunner().invoke(app, ["config", "validate", str(config)])
    assert result.exit_code == 2, result.output
    assert key in result.stderr
    assert "finite" in result.stderr
    assert "Traceback" not in result.stderr
