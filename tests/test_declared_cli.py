"""Declared cohorts on the command line: a bad declaration is exit 2 with its key path and reason,
a bad cell is exit 2 with its file, row, column, value and rule, and never a traceback; what the
declaration drops (complete cases, a constant covariate) is said; ``score`` checks new patients
against the model's declaration, row by row."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from riskmodel.cli import app
from tests.declared_export import COLUMNS, messy_export

EXPERIMENT: dict[str, Any] = {
    "name": "cli16",
    "data": {"path": "export.csv"},
    "cohort": {
        "id": COLUMNS["id"],
        "centre": COLUMNS["centre"],
        "covariates": [
            {"name": "age", "column": COLUMNS["age"], "kind": "numeric", "unit": "years"},
            {"name": "sex", "column": "Sex", "kind": "categorical", "levels": ["F", "M"], "reference": "F"},
            {
                "name": "histology",
                "column": "Histology",
                "kind": "categorical",
                "levels": ["ADC", "NOS", "SCC"],
                "reference": "ADC",
            },
            {"name": "ecog", "column": "ECOG", "kind": "ordinal", "levels": ["0", "1", "2", "3"], "missing": "impute"},
            {"name": "albumin", "column": COLUMNS["albumin"], "kind": "numeric", "unit": "g/L", "missing": "impute"},
            {"name": "smoker", "column": "Smoker", "kind": "binary"},
        ],
        "endpoints": [
            {
                "name": "os",
                "time": COLUMNS["time"],
                "time_unit": "days",
                "event": "Status",
                "event_codes": [1],
                "competing_codes": [2],
            }
        ],
    },
    "horizons": [6, 12],
    "models": {"cox": {}, "rsf": None, "gbm": None},
    "evaluation": {"n_splits": 3, "n_repeats": 1, "bootstrap": 0},
    "competing_risks": False,  # the cause-specific view these tests check; competing: test_competing_e2e.py
    "imputation": {"n_imputations": 2},
}


def changed(edit: Any) -> dict[str, Any]:
    experiment = copy.deepcopy(EXPERIMENT)
    edit(experiment, experiment["cohort"]["covariates"])
    return experiment


def write(folder: Path, experiment: dict[str, Any], frame: pd.DataFrame | None = None) -> Path:
    (frame if frame is not None else messy_export(120, seed=8).raw).to_csv(folder / "export.csv", index=False)
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def train(path: Path, folder: Path) -> tuple[int, str, BaseException | None]:
    args = ["train", str(path), "--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, result.exception


# --------------------------------------------------------------------------- bad declarations
def _spline_on_binary(e: dict, c: list) -> None:
    c[5]["encoding"] = "spline"


def _reference_not_a_level(e: dict, c: list) -> None:
    c[1]["reference"] = "X"


def _reference_without_patients(e: dict, c: list) -> None:
    c[2]["levels"].append("LCC")
    c[2]["reference"] = "LCC"


def _kind_contradicts_data(e: dict, c: list) -> None:
    c[2].update(kind="numeric", levels=None, reference=None)


def _binary_on_a_score(e: dict, c: list) -> None:
    c[3].update(kind="binary", levels=None, missing="impute")


def _unknown_column(e: dict, c: list) -> None:
    c[0]["column"] = "Age (yrs)"


def _measured_after_landmark(e: dict, c: list) -> None:
    c[3]["measured_at_months"] = 6
    e["landmark_months"] = 3


def _misspelt_key(e: dict, c: list) -> None:
    c[1]["levles"] = c[1].pop("levels")


BAD = {
    "spline on a binary covariate": (
        _spline_on_binary,
        "exp.yaml: cohort.covariates[5].encoding, value 'spline': encoding spline applies to numeric covariates "
        "only, not to a binary one",
    ),
    "reference not among the levels": (
        _reference_not_a_level,
        "exp.yaml: cohort.covariates[1].reference, value 'X': reference level 'X' is not among the levels ['F', 'M']",
    ),
    "reference level with no patient": (
        _reference_without_patients,
        "error: export.csv, column Histology: cohort.covariates[2].reference (histology): the reference level 'LCC' "
        "has no patient in the file (levels seen: ADC, NOS, SCC)",
    ),
    "kind numeric for text categories": (
        _kind_contradicts_data,
        "error: export.csv, column Histology: cohort.covariates[2].kind (histology): declared numeric, but 120 of "
        "120 values in 'Histology' are not numbers",
    ),
    "kind binary for a 0-3 score": (
        _binary_on_a_score,
        "error: export.csv, column ECOG: cohort.covariates[3].kind (ecog): declared binary, but 'ECOG' has 4 "
        "distinct values",
    ),
    "unknown column": (
        _unknown_column,
        "export.csv: cohort.covariates[0].column (age): no column 'Age (yrs)' in the file (its columns: 'Subject', "
        "'Hospital', 'Age at diagnosis (years)'",
    ),
    "measured_at_months above the landmark": (
        _measured_after_landmark,
        "exp.yaml: cohort.covariates[3].measured_at_months: ecog is measured at 6 months, after the landmark of 3 "
        "months",
    ),
    "misspelt key": (_misspelt_key, "exp.yaml: cohort.covariates[1].levles"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_declaration_is_exit_2_with_its_key_path_and_reason(tmp_path: Path, case: str) -> None:
    edit, line = BAD[case]
    code, output, exception = train(write(tmp_path, changed(edit)), tmp_path)
    assert code == 2, output
    assert isinstance(exception, SystemExit)
    assert any(line in out_line for out_line in output.splitlines()), output  # one line: key path and reason
    assert "Traceback" not in output
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was started


@pytest.mark.parametrize("case", ["spline on a binary covariate", "measured_at_months above the landmark"])
def test_config_validate_reports_the_same_key_path_without_reading_the_data(tmp_path: Path, case: str) -> None:
    edit, line = BAD[case]
    result = CliRunner().invoke(app, ["config", "validate", str(write(tmp_path, changed(edit)))])
    assert result.exit_code == 2
    assert any(line in out_line for out_line in result.output.splitlines()), result.output


def test_a_real_process_shows_the_reason_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, changed(_kind_contradicts_data))
    proc = subprocess.run(
        [sys.executable, "-m", "riskmodel", "train", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "cohort.covariates[2].kind (histology): declared numeric" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_typo_in_one_cell_is_exit_2_naming_file_row_column_value_and_rule(tmp_path: Path) -> None:
    frame = messy_export(120, seed=8).raw
    frame[COLUMNS["albumin"]] = frame[COLUMNS["albumin"]].astype(object)
    frame.loc[5, COLUMNS["albumin"]] = "3B.5"
    frame.loc[9, COLUMNS["status"]] = 7
    code, output, _ = train(write(tmp_path, EXPERIMENT, frame), tmp_path)
    assert code == 2
    assert "export.csv: 2 errors found; the cohort was not loaded" in output
    assert (
        "error: export.csv, row 7, column Albumin (g/L), value '3B.5': albumin is declared numeric: must be a number "
        "(no units)" in output
    )
    assert (
        "error: export.csv, row 11, column Status, value '7': must be one of the declared codes (event [1], "
        "competing [2], censored [0])" in output
    )


# --------------------------------------------------------------------------- what the declaration drops, and scoring
def _riskmodel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RISKMODEL_SALT": "cli16-salt"}
    return subprocess.run(
        [sys.executable, "-m", "riskmodel", *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


@pytest.fixture(scope="module")
def dropped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], dict]:
    """Cox on 150 patients: albumin complete-case, a constant covariate (every patient in arm A)."""
    folder = tmp_path_factory.mktemp("dropped")
    frame = messy_export(150, seed=9).raw.assign(Arm="A")
    experiment = copy.deepcopy(EXPERIMENT)
    covariates = experiment["cohort"]["covariates"]
    covariates[4]["missing"] = "complete_case"
    covariates.append({"name": "arm", "column": "Arm", "kind": "categorical", "levels": ["A", "B"], "reference": "A"})
    path = write(folder, experiment, frame)
    args = ["train", str(path), "--tracking-uri", f"sqlite:///{folder}/mlflow.db"]
    proc = _riskmodel(*args, "--summary-json", str(folder / "s.json"), cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder, proc, json.loads((folder / "s.json").read_text())


@pytest.mark.slow
def test_complete_cases_are_warned_and_a_constant_covariate_is_left_out_with_the_hr_table_kept(
    dropped: tuple[Path, subprocess.CompletedProcess[str], dict],
) -> None:
    folder, proc, _ = dropped
    raw = pd.read_csv(folder / "export.csv")
    n_missing = int(raw[COLUMNS["albumin"]].isna().sum())
    assert n_missing > 10
    assert f"{n_missing} patients left out for a missing albumin (declared missing: complete_case)" in proc.stderr
    assert "note: covariate arm has the same value for every patient: left out of the models" in proc.stdout
    assert f"cox       {150 - n_missing} " in proc.stdout  # the patients the model was trained on
    table = proc.stdout.split("OS Cox hazard ratios", 1)[1]
    for feature in ("age", "sex_M", "histology_NOS", "histology_SCC", "ecog", "albumin", "smoker"):
        assert f"\n  {feature} " in table, feature
    assert "arm" not in table
    assert "(not estimable)" not in table


@pytest.mark.slow
def test_score_checks_new_patients_against_the_declaration_row_by_row(
    dropped: tuple[Path, subprocess.CompletedProcess[str], dict],
) -> None:
    folder, _, summary = dropped
    [run] = summary["runs"]
    new = messy_export(6, seed=10).raw.assign(Arm="A", Extra="not declared")
    new = new.drop(columns=[COLUMNS["time"], COLUMNS["status"]]).astype(object)
    new.loc[1, "Histology"] = "LCC"  # a level the declaration does not allow
    new.loc[2, COLUMNS["age"]] = "sixty"
    new.loc[3, COLUMNS["ecog"]] = None  # imputed
    new.loc[4, COLUMNS["albumin"]] = None  # complete_case: this patient cannot be scored
    new.to_csv(folder / "new.csv", index=False)
    args = ["score", "--model", run["model_uri"], "--patients", str(folder / "new.csv")]
    proc = _riskmodel(
        *args, "--tracking-uri", f"sqlite:///{folder}/mlflow.db", "--out", str(folder / "s.csv"), cwd=folder
    )
    assert proc.returncode == 1, proc.stderr  # some rows could not be scored
    assert "3 of 6 patients scored" in proc.stderr  # every patient of the file is counted
    assert "row 3: not scored: column Histology, value 'LCC': must be one of the declared levels: ADC, NOS, SCC" in (
        proc.stderr
    )
    assert "row 4: not scored: column Age at diagnosis (years), value 'sixty': age is declared numeric" in proc.stderr
    assert (
        "row 6: not scored: column Albumin (g/L), value (empty): albumin is missing; the model was trained on "
        "complete cases (declared missing: complete_case)" in proc.stderr
    )
    scores = pd.read_csv(folder / "s.csv")
    scored = scores[scores["error"].isna()] if "error" in scores else scores
    assert scored["patient_id"].tolist() == [new.loc[i, COLUMNS["id"]] for i in (0, 3, 5)]
    assert (scored["S_6"] >= scored["S_12"]).all()

    missing_column = new.drop(columns=["Smoker"])
    missing_column.to_csv(folder / "no_smoker.csv", index=False)
    args = ["score", "--model", run["model_uri"], "--patients", str(folder / "no_smoker.csv")]
    proc = _riskmodel(*args, "--tracking-uri", f"sqlite:///{folder}/mlflow.db", cwd=folder)
    assert proc.returncode == 2
    assert "cohort.covariates[5].column (smoker): no column 'Smoker' in the file" in proc.stderr
    assert "Traceback" not in proc.stderr
