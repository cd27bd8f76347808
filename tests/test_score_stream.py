"""Streamed scoring of a Parquet file (issue 21 §2): chunk by chunk, the same rows as a whole-file scoring.

The reference is the whole-file path, ``RiskModel.score`` on the whole table written by
``write_scores`` (the records, flattened to CSV): an independent implementation of the same
statuses (record by record), not the streamed code's own earlier output. Probabilities are
compared to 1e-12 (they are computed by the same estimator on the same rows, chunk or not).
Peak memory and speed are measured in ``benchmarks/score_stream.py``, not here.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import load_bundled, survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CauseSpecificCox
from riskmodel.scoring import RiskModel, read_patients, write_scores
from riskmodel.scoring.frame import score_frame
from riskmodel.scoring.stream import DEFAULT_CHUNK_ROWS, SeenIds, parquet_chunks, score_stream

sys.path.insert(0, str(Path(__file__).parent))
from small_models import save_small_model

runner = CliRunner()
CHUNK = 700  # 3,000 rows: chunks of 700, 700, 700, 700 and a ragged 200
TOL = 1e-12


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_model(tmp_path_factory.mktemp("stream") / "cox", "cox")


def _patients() -> pd.DataFrame:
    """3,000 synthetic patients (outcomes kept: the landmark rule reads them), with rows the
    whole-file path does not score: refused, unreadable, a repeated ID, outside the training data."""
    df = generate(3000, 21).astype({"kps": str, "patient_id": str})
    df.loc[[150, 1900, 2950], ["os_months", "os_event"]] = [2.0, 1]  # died before the 3-month landmark
    df.loc[1500, "kps"] = "abc"  # third chunk (rows 1401-2100): file row 1501
    df.loc[2500, "patient_id"] = df.loc[10, "patient_id"]  # repeats row 11's patient, four chunks later
    df.loc[2800, "recurrence_interval_months"] = 230.0  # far outside the training range, last chunk
    return df


@pytest.fixture(scope="module")
def patients_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("patients") / "patients.parquet"
    _patients().to_parquet(path, index=False)
    return path


def _whole_file(model_dir: Path, patients: Path, out: Path) -> pd.DataFrame:
    """The whole-file scores (record by record), as the CSV the score command writes from them."""
    records = RiskModel.load(model_dir).score(read_patients(patients))
    write_scores(records, out)
    return pd.read_csv(out)


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> float:
    """Assert every column equal (text exactly, numbers to TOL); return the largest difference."""
    assert set(want.columns) <= set(got.columns)
    assert got[sorted(set(got.columns) - set(want.columns))].isna().all().all()  # e.g. "error" with no error row
    assert len(got) == len(want)
    worst = 0.0
    for c in want.columns:
        a, b = want[c], got[c]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(float), b.to_numpy(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), c
            diff = float(np.nanmax(np.abs(x - y), initial=0.0))
            assert diff <= TOL, (c, diff)
            worst = max(worst, diff)
        else:
            shown = [b.fillna("").astype(str).replace("nan", ""), a.fillna("").astype(str).replace("nan", "")]
            assert shown[0].tolist() == shown[1].tolist(), c
    return worst


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_scores_equal_the_whole_file_row_for_row(
    model_dir: Path, patients_file: Path, tmp_path: Path, suffix: str
) -> None:
    want = _whole_file(model_dir, patients_file, tmp_path / "whole.csv")
    out = tmp_path / f"scores{suffix}"
    code, text = cli(
        "score", "--model", str(model_dir), "--patients", str(patients_file), "--out", str(out), "--chunk-rows", "700"
    )
    assert code == 1, text  # one unreadable row (and one repeated ID): exit 1, as the whole file
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    _same_rows(got, want)
    status = dict(zip(got["row"], got["status"], strict=True))
    assert [status[r] for r in (151, 1901, 2951)] == ["refused"] * 3  # chunks 1, 3 and the ragged 5th
    assert status[1501] == status[2501] == "error"
    assert status[2801] == "outside the development data"
    assert "row 1501: not scored: column kps, value 'abc': must be a number" in text
    assert "row 2501: not scored: column patient_id" in text
    assert "(first seen on row 11)" in text
    # the summary line is the whole-file one (its counts are the records')
    n = want["status"].value_counts()
    assert f"{len(want) - n['refused'] - n['error']} of 3000 patients scored" in text
    assert f"{n['refused']} refused (not at risk after the landmark)" in text


def test_the_whole_file_command_gives_the_same_summary(model_dir: Path, patients_file: Path, tmp_path: Path) -> None:
    """Whole-file (--out .json) and streamed (--out .csv) runs print the same counts and unscored rows."""
    whole = cli("score", "--model", str(model_dir), "--patients", str(patients_file), "--out", str(tmp_path / "a.json"))
    stream = cli(
        "score", "--model", str(model_dir), "--patients", str(patients_file), "--out", str(tmp_path / "a.csv"),
        "--chunk-rows", "700",
    )  # fmt: skip
    assert whole[0] == stream[0] == 1
    lines = [
        [ln for ln in t.splitlines() if "patients scored" in ln or ln.startswith("  row")] for _, t in (whole, stream)
    ]
    assert lines[0] == lines[1]
    assert len(lines[0]) >= 6  # the summary; the refused rows (3 set, more in the data), 1 unreadable, 1 repeat


def _many_bad(tmp_path: Path) -> Path:
    """60 rows breaking one rule, 12 in each chunk of 700: no chunk alone passes the 50-row cap."""
    df = generate(3000, 22).astype({"kps": str})
    bad = np.linspace(720, 2990, 60).astype(int)
    df.loc[bad, "kps"] = "250"
    path = tmp_path / "many_bad.parquet"
    df.to_parquet(path, index=False)
    return path


def test_more_than_50_bad_rows_across_chunks_stop_the_run_and_leave_no_output(model_dir: Path, tmp_path: Path) -> None:
    patients = _many_bad(tmp_path)
    # the whole file is refused too (validation caps a rule at 50 rows)
    assert (
        cli("score", "--model", str(model_dir), "--patients", str(patients), "--out", str(tmp_path / "w.json"))[0] == 2
    )
    out = tmp_path / "scores.parquet"
    code, text = cli(
        "score", "--model", str(model_dir), "--patients", str(patients), "--out", str(out), "--chunk-rows", str(CHUNK)
    )
    assert code == 2, text
    assert "Traceback" not in text
    # file, whole-file row (df index 720 is file row 721, in the 2nd chunk), column, value and rule
    assert "many_bad.parquet, row 721, column kps, value '250': must be at most 100 points" in text
    assert "more rows break this rule" in text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_an_existing_output_is_left_untouched_when_the_run_stops(model_dir: Path, tmp_path: Path) -> None:
    patients = _many_bad(tmp_path)
    out = tmp_path / "scores.csv"
    out.write_text("earlier results\n")
    code, _ = cli(
        "score", "--model", str(model_dir), "--patients", str(patients), "--out", str(out), "--chunk-rows", str(CHUNK)
    )
    assert code == 2
    assert out.read_text() == "earlier results\n"


def test_a_missing_column_is_one_line_and_exit_2(model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "no_d90.parquet"
    generate(1000, 23).drop(columns=["d90_gy"]).to_parquet(path, index=False)
    out = tmp_path / "s.parquet"
    code, text = cli(
        "score", "--model", str(model_dir), "--patients", str(path), "--out", str(out), "--chunk-rows", "300"
    )
    assert code == 2
    assert "d90_gy" in text
    assert "Traceback" not in text
    assert not out.exists()


def test_a_csv_patients_file_can_be_scored_into_parquet(model_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    _patients().iloc[:400].to_csv(csv, index=False)
    want = _whole_file(model_dir, csv, tmp_path / "whole.csv")
    out = tmp_path / "s.parquet"
    code, text = cli("score", "--model", str(model_dir), "--patients", str(csv), "--out", str(out))
    assert code == 0, text
    _same_rows(pd.read_parquet(out), want)  # CSV rows are numbered from 2 (the header is row 1)


def test_seen_ids_find_a_repeat_in_a_later_chunk_with_its_first_row() -> None:
    seen = SeenIds("p.parquet", declared=False, id_column="patient_id")
    first = pd.DataFrame({"patient_id": ["A", " B", None, "C", "B"]}, index=[1, 2, 3, 4, 5])
    assert seen(first) == {}  # a repeat inside one chunk is validation's to find
    later = pd.DataFrame({"patient_id": ["B ", "D", "A", ""]}, index=[6, 7, 8, 9])
    found = seen(later)
    assert sorted(found) == [6, 8]
    assert "(first seen on row 2)" in found[6][0].rule
    assert "(first seen on row 1)" in found[8][0].rule


def test_two_models_streamed_give_each_models_own_table(model_dir: Path, patients_file: Path, tmp_path: Path) -> None:
    """With several models a chunk's IDs are hashed once and shared: each model's rows are still
    its own whole-file table (pseudonyms, statuses, probabilities), row for row."""
    models = [RiskModel.load(model_dir), RiskModel.load(save_small_model(tmp_path / "rsf", "rsf"))]
    _, chunks = parquet_chunks(patients_file, chunk_rows=CHUNK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score_stream(models, chunks, tmp_path / "two.parquet", source="patients.parquet")
        got = pd.read_parquet(tmp_path / "two.parquet")
        for m in models:
            want = score_frame(m, read_patients(patients_file))
            mine = got[got["family"] == m.family].sort_values("row", kind="stable").reset_index(drop=True)
            pd.testing.assert_frame_equal(mine, want, check_dtype=False)


def test_seen_ids_keep_each_ids_smallest_row_whatever_the_order_in_a_chunk() -> None:
    seen = SeenIds("p.parquet", declared=False, id_column="patient_id")
    ids = [f"P{i % 700}" for i in range(2000)]  # each ID two or three times
    rows = np.random.default_rng(3).permutation(np.arange(10, 2010))
    seen(pd.DataFrame({"patient_id": ids}, index=rows))
    found = seen(pd.DataFrame({"patient_id": ["P5", "P699", "nobody"]}, index=[5000, 5001, 5002]))
    smallest = {i: min(r for r, x in zip(rows.tolist(), ids, strict=True) if x == i) for i in ("P5", "P699")}
    assert sorted(found) == [5000, 5001]
    assert f"(first seen on row {smallest['P5']})" in found[5000][0].rule
    assert f"(first seen on row {smallest['P699']})" in found[5001][0].rule


@pytest.mark.filterwarnings("ignore:.*outside the levels seen at fit")
def test_competing_model_frame_equals_its_records(tmp_path: Path) -> None:
    """A competing model's table (both CIFs, event-free, labels) is its score records, flattened."""
    sd = survival_data(load_bundled(), "lc", landmark_months=3, competing=True)
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = CauseSpecificCox(penalty=0.1).fit(features.transform(sd.X), sd.y)
    model = RiskModel.from_training(
        endpoint="lc", family="cox", experiment="t", landmark_months=3, horizons=[3.0, 6.0, 12.0],
        features=features, estimator=est, X=sd.X,
    )  # fmt: skip
    df = generate(500, 24).astype({"kps": object})
    df.loc[5, "kps"] = "x"
    df.index = pd.RangeIndex(2, 502, name="row")
    write_scores(model.score(df), tmp_path / "records.csv")
    frame = score_frame(model, df)
    frame.to_csv(tmp_path / "frame.csv", index=False)
    _same_rows(pd.read_csv(tmp_path / "frame.csv"), pd.read_csv(tmp_path / "records.csv"))
    assert {"cif_12", "cif_competing_12", "event_free_12", "label_cif"} <= set(frame.columns)
    assert (frame["status"] == "error").sum() == 1
    assert frame["cif_12"].notna().sum() > 300


def test_the_cli_default_chunk_is_the_library_default() -> None:
    from riskmodel.cli.score import DEFAULT_CHUNK_ROWS as cli_default

    assert cli_default == DEFAULT_CHUNK_ROWS


def test_a_declared_cohorts_id_repeated_in_a_later_chunk_stops_the_run() -> None:
    """A declared cohort's validation refuses every copy of a repeated ID, the first included; a
    streamed file has written the first already, so the repeat is one line and exit 2 (UserInputError)."""
    from riskmodel.errors import UserInputError

    seen = SeenIds("p.parquet", declared=True, id_column="mrn")
    seen(pd.DataFrame({"mrn": ["A", "B"]}, index=[1, 2]))
    with pytest.raises(UserInputError, match=r"p\.parquet, row 4, column mrn, .*first on row 2"):
        seen(pd.DataFrame({"mrn": ["C", "B"]}, index=[3, 4]))
