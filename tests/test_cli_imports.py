"""The command line's help and version load none of the heavy libraries (a behaviour, not a timing).

``riskmodel --help`` used to import pandas and scipy (through the package's eager public names)
and could not answer under 0.3 s; MLflow, scikit-learn, shap and matplotlib load only in the
commands that use them. Every command's and group's ``--help`` used to import pydantic (0.1 s):
typer coerced each group's absent ``--help`` (None) through a pydantic adapter. Each case runs in a
fresh interpreter, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskmodel.cli import app

REPO = Path(__file__).resolve().parent.parent
HEAVY = (
    "mlflow",
    "sklearn",
    "shap",
    "matplotlib",
    "sksurv",
    "numba",
    "xgboost",
    "optuna",
    "lifelines",
    "scipy",
    "pandas",
    "pydantic",  # typer imports it to coerce an absent --help of a group unless told its default
)

PROBE = """
import json, runpy, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["riskmodel", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("riskmodel", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def _loaded(args: list[str], tmp_path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RISKMODEL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


LIGHT = [
    ["--help"],
    ["--version"],
    *(
        [command, "--help"]
        for command in ("train", "score", "validate-data", "tune", "evaluate", "serve", "report", "update", "ui")
    ),
    ["models", "list", "--help"],
    ["config", "schema", "--help"],
    *([group.name, "--help"] for group in app.registered_groups),  # each group needs its default_map entry
]


@pytest.mark.parametrize("args", LIGHT, ids=" ".join)
def test_help_and_version_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    result = _loaded(args, tmp_path)
    assert result == {"code": 0, "loaded": []}


def test_the_probe_sees_a_heavy_import_where_a_command_needs_one(tmp_path: Path) -> None:
    """The same probe, on a command that reads a cohort, does see pandas: the check can fail."""
    result = _loaded(["validate-data"], tmp_path)
    assert "pandas" in result["loaded"]  # type: ignore[operator]
