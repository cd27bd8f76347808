"""Experiment configs: every shipped one is valid; bad ones are refused with one line per problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.errors import UserInputError
from tests.conftest import REPO

SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_experiment(path)
    assert config.name == path.stem


def test_default_and_preimplant_are_what_the_issue_asks() -> None:
    default = load_experiment(REPO / "experiments" / "default.yaml")
    assert default.landmark_months == 3
    assert default.uses_response
    assert set(default.models.enabled()) == {"cox", "rsf", "gbm"}
    assert default.endpoints == ["lc", "os"]
    assert default.horizons == [6, 12, 24]
    planning = load_experiment(REPO / "experiments" / "preimplant.yaml")
    assert planning.landmark_months == 0
    assert not planning.uses_response


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nmodels: {cox: {penality: 1}}\n", "models.cox.penality, value 1: Extra inputs are not permitted"),
        ("name: x\nhorizons: [6, '12']\n", "horizons[1], value '12': Input should be a valid number"),
        ("name: x\nseed: 1.5\n", "seed, value 1.5: Input should be a valid integer"),
        ("name: x\nendpoints: [pfs]\n", "endpoints: pfs is not an endpoint of the bundled study (lc, os)"),
        ("name: x\nfeatures: {set: study}\nlandmark_months: 0\n", "landmark of at least 3 months"),
        ("name: x\nfeatures: {set: study}\nlandmark_months: 2\n", "landmark of at least 3 months \\(got 2\\)"),
        ("name: x\ndata: {path: nowhere.csv}\n", "data.path: file not found: nowhere.csv"),
        ("name: x\nhorizons: [12, 6]\n", "horizons must be positive, increasing and distinct"),
        ("name: x\nmodels: {cox: null, rsf: null, gbm: null}\n", "at least one model family"),
        ("- a\n- list\n", "an experiment file must be a YAML mapping"),
        ("name: [unclosed\n", "not a readable YAML file"),
        ("description: no name\n", "name: Field required"),
    ],
)
def test_bad_configs(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserInputError, match=message if "\\(" in message else re.escape(message)):
        load_experiment(path)


def test_landmark_defaults_follow_the_features(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    assert load_experiment(path).landmark_months == 3  # the default features use response
    path.write_text("name: x\nfeatures: {set: preimplant}\n")
    assert load_experiment(path).landmark_months == 0


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nseed: no\nmodels: {rsf: {n_estimators: 0}}\nbogus: 1\n")
    with pytest.raises(UserInputError) as info:
        load_experiment(path)
    assert len(str(info.value).splitlines()) == 3


def test_cli_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nunknown_key: 1\n")
    for args in (["train", str(path)], ["config", "validate", str(path)], ["train", str(tmp_path / "none.yaml")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


def test_schema_command_prints_the_json_schema() -> None:
    result = CliRunner().invoke(app, ["config", "schema"])
    schema = json.loads(result.output)
    assert schema == ExperimentConfig.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "landmark_months" in schema["properties"]
