"""Tracker.log_files: a run's artifacts in one upload (train's recording), the bytes log_text and
log_bytes would log, every file through the PHI guard first, and nothing uploaded on a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskmodel.privacy import PrivacyError
from riskmodel.reporting.plots import figure_png, pyplot
from riskmodel.tracking import Tracker


def artifacts(tracker: Tracker, run_id: str) -> dict[str, bytes]:
    root = Path(tracker.mlflow.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def a_png() -> bytes:
    fig, ax = pyplot().subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    return figure_png(fig)


def test_one_upload_logs_the_bytes_of_one_call_per_file(tmp_path: Path) -> None:
    tracker = Tracker("files", f"sqlite:///{tmp_path}/mlflow.db")
    png = a_png()
    files: list[tuple[str, str | bytes]] = [
        ("config.yaml", "name: default\nseed: 2013\n"),
        ("tables/hr.csv", "feature,hr\nd90 (Gy),0.97 – 1.01 ≥ 5\n"),  # not ASCII: written as UTF-8
        ("plots/calibration_6.png", png),
    ]
    with tracker.parent("one-by-one", {}) as one:
        tracker.log_text(files[0][1], files[0][0])  # type: ignore[arg-type]
        tracker.log_text(files[1][1], files[1][0])  # type: ignore[arg-type]
        tracker.log_bytes(png, "plots/calibration_6.png")
    with tracker.parent("together", {}) as together:
        tracker.log_files(files)
    assert artifacts(tracker, together) == artifacts(tracker, one)
    assert set(artifacts(tracker, together)) == {"config.yaml", "tables/hr.csv", "plots/calibration_6.png"}


def test_a_refused_file_stops_the_whole_upload(tmp_path: Path) -> None:
    tracker = Tracker("files", f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(PrivacyError), tracker.parent("refused", {}) as run_id:
        tracker.log_files([("fine.csv", "group,n\nlow,12\n"), ("dates.csv", "patient,surgery\nA,2019-03-04\n")])
    assert artifacts(tracker, run_id) == {}  # not even the file that passed


def test_a_name_outside_the_runs_artifacts_is_refused(tmp_path: Path) -> None:
    tracker = Tracker("files", f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(ValueError, match="not a path inside"), tracker.parent("escape", {}):
        tracker.log_files([("../../outside.txt", "x")])
    assert not (tmp_path / "outside.txt").exists()
