"""``riskmodel ui`` (issue 17, part 5): loopback only unless asked, the store's password never on a
command line, every server process ended with it, and riskmodel's experiments opened on their runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import riskmodel.tracking.ui as ui_module
from riskmodel.cli import app
from riskmodel.tracking.ui import ML_VIEW
from tests.browser import CHROMIUM, headless
from tests.test_secrets import PASSWORD, SMALL, assert_hidden


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _descendants(root: int) -> dict[int, str]:
    """Live (non-zombie) descendants of ``root``, each with its start time."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        try:
            text = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if text:
            fields = text[text.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            info[int(entry.name)] = (fields[0], fields[19])
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and info[child][0] != "Z":
                found[child] = info[child][1]
                todo.append(child)
    return found


def _still_running(pids: dict[int, str]) -> list[int]:
    alive = []
    for pid, start in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


def test_a_remote_host_is_refused_without_allow_remote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_popen = subprocess.Popen

    def no_server(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        assert "mlflow" not in argv, "no server may start"
        return real_popen(argv, **kwargs)

    monkeypatch.setattr(ui_module.subprocess, "Popen", no_server)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--tracking-uri", uri])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "--allow-remote" in lines[0]
    assert "no authentication" in lines[0]


def test_the_server_gets_the_store_in_its_environment_not_on_its_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}
    real_popen = subprocess.Popen

    def fake_server(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        if argv[1:4] != ["-m", "mlflow", "ui"]:  # anything else MLflow itself starts
            return real_popen(argv, **kwargs)
        seen.update(argv=argv, env=kwargs["env"], new_session=kwargs.get("start_new_session"))
        return real_popen([sys.executable, "-c", "print('server up')"], **kwargs)

    monkeypatch.setattr(ui_module.subprocess, "Popen", fake_server)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db?password={PASSWORD}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--allow-remote", "--port", "5123"])
    assert result.exit_code == 0, result.output
    assert_hidden(" ".join(seen["argv"]))
    assert_hidden(result.output)
    assert seen["argv"][-4:] == ["--host", "0.0.0.0", "--port", "5123"]
    assert seen["env"]["MLFLOW_BACKEND_STORE_URI"] == uri
    assert seen["new_session"] is True
    assert "no authentication" in result.output


def _start_ui(store: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db?password={PASSWORD}"}
    # its own session: the test can clean up whatever a failing riskmodel leaves
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskmodel", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240  # a loaded machine takes long to start uvicorn and its workers
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill_all(proc)
            pytest.fail(f"riskmodel ui did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.5)
    return proc


def _kill_all(proc: subprocess.Popen[str]) -> None:
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigterm_ends_the_ui_and_every_process_it_started(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start_ui(tmp_path, port)
    try:
        started = _descendants(proc.pid)
        assert len(started) >= 2  # mlflow ui, uvicorn and its workers, the job runner, huey consumers
        for pid in started:
            assert_hidden(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            _kill_all(proc)
    assert not _listening(port)
    assert _still_running(started) == []
    assert_hidden(out + err)
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A store holding one small train, served by ``riskmodel ui``: (port, experiment ID)."""
    from riskmodel.workflow import train

    store = tmp_path_factory.mktemp("ui-store")
    (store / "e.yaml").write_text(SMALL)
    result = train(store / "e.yaml", models=["cox"], tracking_uri=f"sqlite:///{store}/mlflow.db?password={PASSWORD}")
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(f"sqlite:///{store}/mlflow.db").get_run(result.parent_run_id).info.experiment_id
    port = _free_port()
    proc = _start_ui(store, port)
    try:
        yield port, experiment
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                _kill_all(proc)


def _chromium(url: str, scratch: Path, *mode: str) -> str:
    cmd = headless(scratch, 20000, "--window-size=1400,900", *mode, url)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=scratch).stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_riskmodel_experiments_open_on_their_runs_table(served: tuple[int, str], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    port, experiment = served
    tags = MlflowClient(f"http://127.0.0.1:{port}").get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    # the address riskmodel ui prints, taken to the experiment
    url = f"http://127.0.0.1:{port}/{ML_VIEW.replace('#/experiments', f'#/experiments/{experiment}')}"
    dom = _chromium(url, tmp_path, "--dump-dom")
    assert "train-secrettest" in dom  # the runs table lists the parent run
    assert "Run Name" in dom
    assert "Token" not in dom  # not the GenAI overview (traces, token usage)
    _chromium(url, tmp_path, f"--screenshot={tmp_path / 'experiment.png'}")
    assert (tmp_path / "experiment.png").stat().st_size > 10_000
