"""The command line: exit codes, one line per problem, and never a traceback for user errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_bundled_cohort_is_valid() -> None:
    code, out = cli("validate-data")
    assert code == 0, out
    assert "36 patients" in out
    assert "0 errors, 0 warnings: valid" in out


def test_errors_exit_2_with_one_line_each(canonical_frame: pd.DataFrame, write_csv: Callable[..., Path]) -> None:
    frame = canonical_frame.copy()
    frame.loc[0, "d90_gy"] = "-3"
    frame.loc[1, "n_stage"] = "N9"
    code, out = cli("validate-data", str(write_csv(frame)))
    assert code == 2
    assert "error: cohort.csv, row 2, column d90_gy, value '-3': must be at least 0 Gy (hard limit)" in out
    assert "error: cohort.csv, row 3, column n_stage, value 'N9': must be one of N0, N1, N2, N3" in out
    assert "2 errors, 0 warnings: NOT VALID" in out  # no knock-on errors from the bad D90


def test_warnings_exit_1_only_when_strict(canonical_frame: pd.DataFrame, write_csv: Callable[..., Path]) -> None:
    path = write_csv(canonical_frame.assign(kps=canonical_frame["kps"].replace("80", "85")))
    code, out = cli("validate-data", str(path))
    assert code == 0
    assert "12 warnings" in out
    assert "is not a multiple of 10" in out
    assert cli("validate-data", str(path), "--strict")[0] == 1


def test_scoring_mode_and_unknown_response_rule(bundled, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    bundled.data.drop(columns=["os_months", "os_event", "lc_months", "lc_event"]).to_csv(path, index=False)
    assert cli("validate-data", str(path))[0] == 2
    assert cli("validate-data", str(path), "--scoring")[0] == 0
    code, out = cli("validate-data", str(path), "--response-rule", "diameter")
    assert code == 2
    assert "must be 'recist' or 'volume'" in out


def test_data_dictionary_lists_every_column() -> None:
    from riskmodel.cohort.contract import COLUMNS

    code, out = cli("data-dictionary")
    assert code == 0
    assert all(f"`{c.name}`" in out for c in COLUMNS)


def test_synthetic_writes_a_valid_cohort(tmp_path: Path) -> None:
    code, _ = cli("synthetic", str(tmp_path / "s.csv"), "--n", "500", "--seed", "3")
    assert code == 0
    assert cli("validate-data", str(tmp_path / "s.csv"))[0] == 0
    code, out = cli("synthetic", str(tmp_path / "s.json"))
    assert code == 2
    assert "choose a .csv or .parquet" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\x00\x01binary\x00", "binary content"),
        (b"patient_id,d90_gy\nP1,abc\n", "value 'abc': must be a number"),
        (None, "file not found"),
    ],
)
def test_real_process_has_no_traceback(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "riskmodel", "validate-data", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_help_teaches() -> None:
    code, out = cli("validate-data", "--help")
    assert code == 0
    assert "Exit codes" in out
    assert "--mapping" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--out", "{file}"], "is a file; give a folder"),
        (["train", "--summary-json", "{missing}/s.json"], "does not exist"),
        (["score", "--model", "x", "--patients", "{file}", "--out", "{missing}/s.json"], "does not exist"),
        (["score", "--model", "x", "--patients", "{file}", "--out", "{tmp}"], "is a folder; give a file name"),
    ],
)
def test_unwritable_outputs_are_refused_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "afile").write_text("x")
    filled = [a.format(file=tmp_path / "afile", missing=tmp_path / "missing", tmp=tmp_path) for a in args]
    code, out = cli(*filled)
    assert code == 2, out
    assert message in out
