"""The PHI guard: unit rules, and canary values absent from every byte of mlruns/ and reports."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from riskmodel.cohort import bundled_cohort_path, load
from riskmodel.privacy import PhiGuard, PrivacyError, pseudonym, salt
from riskmodel.tracking import Tracker

GUARD = PhiGuard(
    identifiers=frozenset({"MRN55501234", "RECON-07", "Zebulon Quackenbush"}),
    free_text=("Zebulon Quackenbush", "lives near the old mill"),
    n_patients=36,
    cohort_columns=frozenset({"d90_gy", "age_years", "patient_id", "os_months"}),
)


@pytest.mark.parametrize(
    "text",
    ["2014-03-17", "17/03/2014", "3/17/2014", "17.03.2014", "03/2014", "2014-03", "17 Mar 2014", "Mar 17, 2014",
     "March 2014", "implant on 2014/3/17 at noon"],
)  # fmt: skip
def test_full_dates_are_refused(text: str) -> None:
    with pytest.raises(PrivacyError, match="full date") as info:
        GUARD.check_text("tags.note", text)
    assert text not in str(info.value)  # the refusal names the field, never the value
    assert "tags.note" in str(info.value)


@pytest.mark.parametrize(
    "text", ["2014", "follow-up 2013-2015", "0.2013", "2013.5", "3.2014", "v2.4.6", "td_auc_12", "10/12", "2024-25"]
)
def test_years_versions_and_numbers_pass(text: str) -> None:
    GUARD.check_text("params.x", text)


def test_identifiers_and_free_text_are_refused_but_decimals_are_not_identifiers() -> None:
    with pytest.raises(PrivacyError, match="identifier"):
        GUARD.check("params.note", "patient RECON-07 was excluded")
    with pytest.raises(PrivacyError, match="identifier"):
        GUARD.check("tags", {"who": "Zebulon Quackenbush"})
    with pytest.raises(PrivacyError, match="free text"):
        PhiGuard(free_text=("lives near the old mill",)).check_text("artifact notes.txt", "He lives near the old mill.")
    guard = PhiGuard(identifiers=frozenset({"1001"}))
    guard.check_text("metrics", "harrell_c 0.1001, ibs 1001.5")  # a decimal is not the ID 1001
    with pytest.raises(PrivacyError):
        guard.check_text("metrics", "row 1001 excluded")


def test_row_number_ids_leave_counts_and_years_alone_but_other_numeric_ids_stay_guarded() -> None:
    numbered = pd.DataFrame({"patient_id": [str(i) for i in range(1, 2501)]})  # a file numbered 1 to n
    PhiGuard.for_cohort(numbered).check_text("tags.cohort_size", "2500 patients, 1995 to 2003, 1001 events")
    registry = pd.DataFrame({"patient_id": [str(i) for i in range(5001, 7501)]})  # beyond the rows: real IDs
    with pytest.raises(PrivacyError, match="identifier"):
        PhiGuard.for_cohort(registry).check_text("tags.note", "patient 5001 excluded")


def test_patient_level_tables_and_per_patient_lists_are_refused() -> None:
    with pytest.raises(PrivacyError, match="patient-level"):
        GUARD.check_text("artifact x.csv", "patient_id,d90_gy,age_years\nA,110,60\n")
    GUARD.check_text("artifact cv_folds.csv", "repeat,fold,harrell_c\n0,0,0.7\n")  # aggregates pass
    with pytest.raises(PrivacyError, match="one per patient"):
        GUARD.check("params.times", list(range(36)))
    GUARD.check("params.horizons", [6, 12, 24])


def test_the_salt_file_is_private_and_pseudonyms_are_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKMODEL_SALT")
    monkeypatch.setenv("RISKMODEL_HOME", str(tmp_path))
    first = salt()
    assert stat.S_IMODE((tmp_path / "salt").stat().st_mode) == 0o600
    assert salt() == first
    a = pseudonym("MRN55501234")
    monkeypatch.setenv("RISKMODEL_HOME", str(tmp_path / "other"))
    assert pseudonym("MRN55501234") != a  # another installation, another pseudonym


def test_tracker_refuses_before_anything_reaches_mlflow(tmp_path: Path) -> None:
    tracker = Tracker("guarded", f"sqlite:///{tmp_path}/mlflow.db", guard=GUARD)
    with tracker.parent("train", {"experiment": "guarded"}), pytest.raises(PrivacyError, match="params"):
        tracker.log(params={"note": "seen 2014-03-17"})
    with pytest.raises(PrivacyError, match="artifact"):
        tracker.log_text("patient_id,d90_gy\nRECON-07,110\n", "rows.csv")


# --------------------------------------------------------------------------- canaries end to end
CANARY_IDS = [f"MRN{55500000 + 7 * i}" for i in range(36)]
CANARY_NAMES = [f"Canaryname Quackenbush-{i:02d}" for i in range(36)]
CANARY_NOTES = [f"canary note {i}: lives near the old mill" for i in range(36)]
CANARY_BIRTH = [f"19{40 + i}-0{1 + i % 9}-{10 + i % 18}" for i in range(36)]
CANARY_VISIT = [f"{10 + i % 18}/0{1 + i % 9}/20{10 + i % 9}" for i in range(36)]


def _canary_cohort(path: Path) -> Path:
    frame = pd.read_csv(bundled_cohort_path(), dtype=str, keep_default_na=False)
    frame["patient_id"] = CANARY_IDS
    frame["patient_name"] = CANARY_NAMES
    frame["clinical_notes"] = CANARY_NOTES
    frame["date_of_birth"] = CANARY_BIRTH
    frame["last_clinic_visit"] = CANARY_VISIT
    frame.to_csv(path, index=False)
    return path


def _riskmodel(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskmodel", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def _all_bytes(folder: Path) -> bytes:
    """Every file under folder, with zip members (skops files) unpacked."""
    chunks = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        chunks.append(data)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                chunks += [zf.read(name) for name in zf.namelist()]
    return b"\n".join(chunks)


@pytest.mark.slow
def test_no_canary_reaches_mlruns_or_the_report_after_train_report_and_score(tmp_path: Path) -> None:
    data = _canary_cohort(tmp_path / "canary.csv")
    sensitive = load(data).sensitive  # names, notes and both date columns are recognised
    assert {*CANARY_NAMES, *CANARY_NOTES, *CANARY_BIRTH, *CANARY_VISIT} <= sensitive
    experiment = tmp_path / "canary.yaml"
    experiment.write_text(
        "name: canary\nendpoints: [lc, os]\nfeatures: {set: study}\n"
        "models: {cox: {penalty: 0.1}, rsf: {n_estimators: 20}, gbm: {n_estimators: 30}}\n"
        # every step of train (CV, the bootstrap, the final fit, the figures) runs; how many resamples does
        # not change what is written, only how long it takes
        "evaluation: {n_splits: 3, n_repeats: 1, bootstrap: 2}\n"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        "RISKMODEL_SALT": "s3cret-salt",
    }
    trained = _riskmodel("train", str(experiment), "--data", str(data), env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run_uri = next(w for w in trained.stdout.split() if w.startswith("runs:/"))
    reported = _riskmodel("report", "--data", str(data), "--out", str(tmp_path / "report"), env=env, cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    scored = _riskmodel(
        "score",
        "--model",
        run_uri,
        "--patients",
        str(data),
        "--out",
        str(tmp_path / "scores.json"),
        env=env,
        cwd=tmp_path,
    )
    assert scored.returncode == 0, scored.stderr
    assert CANARY_IDS[0] in (tmp_path / "scores.json").read_text()  # the user's own output keeps their IDs

    shared = _all_bytes(tmp_path / "mlruns") + _all_bytes(tmp_path / "report")
    assert len(shared) > 100_000  # the scan saw the real store and report
    logs = (trained.stdout + trained.stderr + reported.stdout + reported.stderr + scored.stderr).encode()
    canaries = [*CANARY_IDS, *CANARY_NAMES, *CANARY_NOTES, *CANARY_BIRTH, *CANARY_VISIT, "old mill", "s3cret-salt"]
    for canary in canaries:
        needle = canary.encode()
        assert needle not in shared, f"{canary!r} leaked into mlruns/ or the report"
        assert needle not in logs, f"{canary!r} leaked into the command output"


def test_many_metric_names_are_not_mistaken_for_a_per_patient_list(tmp_path: Path) -> None:
    tracker = Tracker("metrics", f"sqlite:///{tmp_path}/mlflow.db", guard=GUARD)
    with tracker.parent("train", {"experiment": "metrics"}):
        tracker.log(metrics={f"metric_{i}": 0.5 for i in range(100)})  # 100 names > 36 patients


def test_inlined_and_logged_pngs_are_checked_by_their_text_chunks_not_their_pixels(tmp_path: Path) -> None:
    import base64
    import zlib

    from riskmodel.privacy import PhiGuard, PrivacyError

    guard = PhiGuard(identifiers=frozenset({"MRN0042"}))

    def png(*chunks: tuple[bytes, bytes]) -> bytes:
        body = b"".join(len(d).to_bytes(4, "big") + k + d + bytes(4) for k, d in chunks)
        return b"\x89PNG\r\n\x1a\n" + body

    # compressed pixels whose bytes, and whose base64 text, happen to hold something like a date
    pixels = png((b"IDAT", b"..03/2014.." + base64.b64decode("03/2014A")))
    inline = base64.b64encode(pixels).decode()
    assert "03/2014" in inline
    guard.check_text("page", "<img src='data:image/png;base64," + inline + "'>")
    (tmp_path / "a.png").write_bytes(pixels)
    guard.check_file(tmp_path / "a.png")
    hidden = png((b"zTXt", b"Comment\x00\x00" + zlib.compress(b"patient MRN0042 seen 17/03/2014")))
    with pytest.raises(PrivacyError, match="full date"):
        guard.check_text("page", "<img src='data:image/png;base64," + base64.b64encode(hidden).decode() + "'>")
    (tmp_path / "b.png").write_bytes(hidden)
    with pytest.raises(PrivacyError, match="full date"):
        guard.check_file(tmp_path / "b.png")
    with pytest.raises(PrivacyError, match="full date"):
        guard.check_text("page", "seen 17/03/2014 <img src='data:image/png;base64,AAAA'>")  # text outside still checked
