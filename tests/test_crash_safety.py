"""Crash safety: SIGKILL at random points never leaves a RUNNING run or a model that half-loads."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskmodel.cohort import load_bundled
from riskmodel.core.files import atomic_write_text, staged_folder
from riskmodel.tracking import load_model

SMALL = (
    "name: crash\nendpoints: [lc, os]\nfeatures: {set: study}\n"
    "models: {cox: {penalty: 0.1}, rsf: {n_estimators: 30}, gbm: {n_estimators: 40}}\n"
    "evaluation: {n_splits: 3, n_repeats: 3, bootstrap: 10}\n"
)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "scores.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):  # fails mid-write
        atomic_write_text(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no temporary left behind


def test_a_failed_staged_folder_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "model"

    def half_written() -> None:
        with staged_folder(final) as stage:
            (stage / "manifest.json").write_text("{}")
            raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        half_written()
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def _runs(uri: str) -> list:  # type: ignore[type-arg]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, max_results=10_000))


def _train_command(tmp_path: Path) -> tuple[list[str], str, dict[str, str]]:
    """``riskmodel train`` of a small experiment, its own tracking store, and the environment."""
    experiment = tmp_path / "crash.yaml"
    experiment.write_text(SMALL)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return [sys.executable, "-m", "riskmodel", "train", str(experiment)], uri, env


@pytest.mark.slow
def test_train_killed_at_five_random_points_then_rerun_leaves_a_consistent_store(tmp_path: Path) -> None:
    cmd, uri, env = _train_command(tmp_path)
    rng = random.Random(20261126)
    for _ in range(5):
        started = len(_runs_or_empty(uri))
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        # kill only once this process has opened its first run: a loaded machine may take long to start
        while len(_runs_or_empty(uri)) <= started and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _runs(uri)
    killed_mid_run = [r for r in before if r.info.status == "RUNNING"]
    # some kill caught a run in flight (closed already by a later start, or still RUNNING)
    assert [r for r in before if r.info.status in ("RUNNING", "KILLED")]
    final = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    if killed_mid_run:
        assert "left RUNNING by an ended process" in final.stdout + final.stderr

    runs = _runs(uri)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    assert {r.info.run_id for r in killed_mid_run} <= {r.info.run_id for r in runs if r.info.status == "KILLED"}
    finished_models = [
        r.info.run_id for r in runs if r.info.status == "FINISHED" and "mlflow.parentRunId" in r.data.tags
    ]
    assert len(finished_models) >= 6  # at least the final train's six (endpoint, family) runs
    patients = load_bundled().data.head(5)
    for run_id in finished_models:
        model = load_model(f"runs:/{run_id}/model", tracking_uri=uri)
        assert model.predict_risk(patients).shape == (5,)


@pytest.mark.slow
def test_sigterm_marks_the_runs_killed_and_exits_143(tmp_path: Path) -> None:
    cmd, uri, env = _train_command(tmp_path)
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not _runs_or_empty(uri) and time.monotonic() < deadline:  # wait until training has begun
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    statuses = {r.info.status for r in _runs(uri)}
    assert "RUNNING" not in statuses
    assert statuses & {"KILLED", "FAILED"}


def _runs_or_empty(uri: str) -> list:  # type: ignore[type-arg]
    try:
        return _runs(uri)
    except Exception:
        return []


def test_a_sigterm_dropped_inside_a_finaliser_is_raised_again_at_the_next_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from riskmodel.cli import common as cli

    monkeypatch.setattr(cli, "_TERMINATED", False)
    monkeypatch.setattr(sys, "unraisablehook", cli._unraisable)

    class Finalised:
        def __del__(self) -> None:
            cli._on_sigterm(signal.SIGTERM, None)  # as if the signal arrived while this ran

    Finalised()  # Python drops an exception raised in __del__: the handler's raise is lost
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        cli.stop_if_terminated()  # the next progress step raises it again


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc), its descendants' included."""
    out: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                for child in map(int, (task / "children").read_text().split()):
                    out += [child, *_children(child)]
    return out


def _running(pid: int) -> bool:
    """True while ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _workers(pid: int) -> list[int]:
    """The loky worker processes among ``pid``'s descendants."""
    found = []
    for child in _children(pid):
        with contextlib.suppress(FileNotFoundError):
            if b"popen_loky_posix" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
def test_the_worker_processes_of_a_killed_train_end_with_it(tmp_path: Path) -> None:
    # SIGKILL leaves the train no chance to stop its workers: each must notice on its own, not wait
    # for ever to hand over a model nobody will read
    cmd, _, env = _train_command(tmp_path)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 180, []
    while proc.poll() is None and time.monotonic() < deadline and len(workers) < 2:
        workers = _workers(proc.pid)
        time.sleep(0.2)
    assert len(workers) == 2, "the small cohort's models are developed on two worker processes"
    time.sleep(3.0)  # into the models' development
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if _running(w)]
    for pid in left:  # not left behind by a failing test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes still running 30 s after their train was killed: {left}"
