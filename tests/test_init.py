"""``riskmodel init``: a commented, runnable declaration of every column of an export.

Kinds are inferred from the data (numeric, binary, ordinal, categorical with its most common
level as reference), the missing share and the suggested policy are written, columns that are
not covariates (identifiers, free text, dates, empty columns) are left out with a note, and what
init writes validates and trains unedited.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.config import load_experiment
from riskmodel.workflow.init import infer_experiment
from tests.declared_export import COLUMNS, messy_export

OPTIONS = {"time": COLUMNS["time"], "event": COLUMNS["status"], "event_codes": ["1"], "competing_codes": ["2"]}


@pytest.fixture(scope="module")
def export_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("init") / "export.csv"
    messy_export(300, seed=5).raw.to_csv(path, index=False)
    return path


def covariates_of(experiment: dict) -> dict[str, dict]:
    return {c["column"]: c for c in experiment["cohort"]["covariates"]}


def test_kinds_levels_units_and_references_are_inferred(export_path: Path) -> None:
    inferred = infer_experiment(export_path, patient_id=COLUMNS["id"], centre=COLUMNS["centre"], **OPTIONS)
    found = covariates_of(inferred.experiment)
    raw = pd.read_csv(export_path)
    assert found[COLUMNS["age"]] == {
        "name": "age_at_diagnosis",
        "column": COLUMNS["age"],
        "kind": "numeric",
        "unit": "years",
        "missing": "refuse",
    }
    assert found[COLUMNS["smoker"]]["kind"] == "binary"
    assert found[COLUMNS["smoker"]]["levels"] == ["0", "1"]
    # categorical: its levels, and the most common one as the reference (counted here by hand)
    for key in ("sex", "histology"):
        counts = raw[COLUMNS[key]].value_counts()
        assert found[COLUMNS[key]]["kind"] == "categorical"
        assert found[COLUMNS[key]]["levels"] == sorted(counts.index)
        assert found[COLUMNS[key]]["reference"] == counts.index[0]
    assert found[COLUMNS["ecog"]]["kind"] == "ordinal"
    assert found[COLUMNS["ecog"]]["levels"] == ["0", "1", "2", "3"]  # 1.0 in the file is the level 1
    assert any(
        note.startswith("ecog: ordinal with levels ['0', '1', '2', '3']: check the order") for note in inferred.notes
    )
    assert found[COLUMNS["albumin"]]["unit"] == "g/L"


def test_the_outcome_identifier_centre_and_non_covariates_are_not_covariates(export_path: Path) -> None:
    inferred = infer_experiment(export_path, patient_id=COLUMNS["id"], centre=COLUMNS["centre"], **OPTIONS)
    declared = set(covariates_of(inferred.experiment))
    for key in ("id", "centre", "time", "status", "kin", "diagnosed", "comments"):
        assert COLUMNS[key] not in declared
    notes = "\n".join(inferred.notes)
    assert "left out 'Next of kin': 300 distinct texts" in notes
    assert "left out 'Comments': every value is missing" in notes
    assert "left out 'Date of diagnosis'" in notes
    cohort = inferred.experiment["cohort"]
    assert (cohort["id"], cohort["centre"]) == (COLUMNS["id"], COLUMNS["centre"])
    [endpoint] = cohort["endpoints"]
    assert endpoint["time_unit"] == "days"  # read from the header "(days)"
    assert (endpoint["event_codes"], endpoint["competing_codes"], endpoint["censored_codes"]) == ([1], [2], [0])


def test_a_date_column_with_few_distinct_dates_is_not_declared_a_categorical_covariate(tmp_path: Path) -> None:
    frame = messy_export(60, seed=2).raw
    frame[COLUMNS["diagnosed"]] = np.where(np.arange(60) % 2 == 0, "2015-03-17", "2016-11-02")  # two clinic days
    frame.to_csv(tmp_path / "export.csv", index=False)
    inferred = infer_experiment(tmp_path / "export.csv", patient_id=COLUMNS["id"], **OPTIONS)
    assert COLUMNS["diagnosed"] not in covariates_of(inferred.experiment)
    assert any(n.startswith(f"left out {COLUMNS['diagnosed']!r}: dates") for n in inferred.notes)


def test_the_missing_share_suggests_the_policy_and_is_written_as_a_comment(tmp_path: Path) -> None:
    n = 100
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "ID": [f"P{i}" for i in range(n)],
            "Months": rng.uniform(1, 60, n).round(1),
            "Dead": rng.integers(0, 2, n),
            "none missing": rng.normal(0, 1, n),
            "five missing": rng.normal(0, 1, n),
            "six missing": rng.normal(0, 1, n),
            "grade six missing": rng.integers(1, 4, n).astype(float),
            "site six missing": rng.choice(["lung", "liver", "bone"], n),
        }
    )
    frame.loc[:4, "five missing"] = np.nan
    for column in ("six missing", "grade six missing", "site six missing"):
        frame.loc[:5, column] = np.nan
    frame.to_csv(tmp_path / "export.csv", index=False)
    inferred = infer_experiment(tmp_path / "export.csv", time="Months", event="Dead", out=tmp_path / "exp.yaml")
    assert inferred.notes[0] == "identifier: 'ID' (say --id if that is wrong)"
    policies = {c["column"]: c["missing"] for c in inferred.experiment["cohort"]["covariates"]}
    assert policies == {
        "none missing": "refuse",
        "five missing": "complete_case",  # 5 %: losing them costs little
        "six missing": "impute",
        "grade six missing": "impute",
        "site six missing": "impute",  # categorical too: a multinomial imputation model
    }
    text = (tmp_path / "exp.yaml").read_text()
    comments = re.findall(r"^\s*# (\w+); (\d+)% missing", text, flags=re.MULTILINE)
    assert comments == [("numeric", "0"), ("numeric", "5"), ("numeric", "6"), ("ordinal", "6"), ("categorical", "6")]
    assert yaml.safe_load(text) == inferred.experiment  # the comments are comments


def test_a_right_skewed_positive_marker_gets_a_log_encoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "ID": range(1, 201),
            "t (months)": rng.uniform(1, 60, 200).round(1),
            "event": rng.integers(0, 2, 200),
            "CEA (ng/mL)": np.exp(rng.normal(1.5, 1.2, 200)).round(2),
            "Age": rng.normal(60, 8, 200).round(1),
        }
    )
    frame.to_csv(tmp_path / "export.csv", index=False)
    found = covariates_of(infer_experiment(tmp_path / "export.csv", time="t (months)", event="event").experiment)
    assert found["CEA (ng/mL)"]["encoding"] == "log"
    assert "encoding" not in found["Age"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"time": "OS", "event": COLUMNS["status"]}, "--time: no column 'OS' in export.csv"),
        ({"time": COLUMNS["time"], "event": COLUMNS["status"]}, "--event-codes: 'Status' holds 0, 1, 2"),
        ({"time": COLUMNS["smoker"], "event": COLUMNS["status"], "event_codes": ["1"]}, "--time-unit: the unit of"),
    ],
)
def test_what_init_cannot_guess_is_asked_for_by_option(export_path: Path, options: dict, words: str) -> None:
    from riskmodel.errors import UserInputError

    with pytest.raises(UserInputError, match=re.escape(words)):
        infer_experiment(export_path, patient_id=COLUMNS["id"], **options)


def test_the_cli_writes_a_yaml_that_validates_and_refuses_to_overwrite_it(export_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp.yaml"
    args = ["init", str(export_path), "--time", COLUMNS["time"], "--event", COLUMNS["status"], "--time-unit", "days"]
    args += ["--event-codes", "1", "--competing-codes", "2", "--id", COLUMNS["id"], "--centre", COLUMNS["centre"]]
    result = CliRunner().invoke(app, [*args, "--endpoint", "os", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 6 covariates, endpoint 'os'" in result.output
    config = load_experiment(out)
    assert config.endpoints == ["os"]
    assert config.covariates == ["age_at_diagnosis", "sex", "histology", "ecog", "albumin", "smoker"]
    assert Path(config.data.path).resolve() == export_path.resolve()
    again = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert again.exit_code == 2
    assert "exists; choose another file or add --force" in again.output


def test_the_commands_the_yaml_header_suggests_run(export_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp.yaml"
    infer_experiment(export_path, patient_id=COLUMNS["id"], out=out, **OPTIONS)
    [line] = [line for line in out.read_text().splitlines() if line.startswith("# Then:")]
    validate = line.removeprefix("# Then:").split(";")[0].strip()
    assert validate.startswith("riskmodel config validate THIS_FILE")
    args = validate.removeprefix("riskmodel ").replace("THIS_FILE", str(out)).replace("DATA", str(export_path))
    result = CliRunner().invoke(app, args.split())
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_train_runs_on_what_init_wrote_unedited(tmp_path: Path) -> None:
    """500 patients: init's protocol for 500-4,999 (5 folds × 2 repeats, 20 bootstrap resamples)
    and m = 10 imputations, Cox only (``--models`` is a command-line choice, not an edit)."""
    export = tmp_path / "export.csv"
    messy_export(500, seed=3).raw.to_csv(export, index=False)
    out = tmp_path / "exp.yaml"
    init_args = ["init", str(export), "--time", COLUMNS["time"], "--event", "Status", "--event-codes", "1"]
    init_args += ["--competing-codes", "2", "--id", COLUMNS["id"], "--out", str(out)]
    init = subprocess.run(
        [sys.executable, "-m", "riskmodel", *init_args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    written = out.read_text()
    train_args = ["train", str(out), "--models", "cox", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    train = subprocess.run(
        [sys.executable, "-m", "riskmodel", *train_args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    assert out.read_text() == written
    assert "pooled over 10 imputations by Rubin's rules" in train.stdout
    for name in ("age_at_diagnosis", "sex_F", "histology_NOS", "histology_SCC", "ecog", "albumin", "smoker"):
        assert re.search(rf"^\s+{name}\s+HR\s", train.stdout, flags=re.MULTILINE), name
