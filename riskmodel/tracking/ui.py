"""``riskmodel ui``: the MLflow UI on the tracking store, as one process group that ends with us.

``mlflow ui`` starts uvicorn, a job runner and huey consumers. They run in a session of their own
(``start_new_session``), so Ctrl-C in the terminal does not reach them half-way, and whatever ends
``riskmodel ui`` (Ctrl-C, SIGTERM, SIGHUP, a return) ends the whole group: SIGTERM first, SIGKILL
after a grace period, including any descendant that moved to a session of its own.

The store's URI, which may hold a password, goes to the server through its environment
(``MLFLOW_BACKEND_STORE_URI``), never on its command line where ``ps`` shows it, and the server's
output is passed on with every secret taken out.

MLflow's UI has no authentication: anyone who reaches the port can read, change and delete every
run. It therefore listens on a loopback address unless the user asks for another with
``allow_remote``.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from riskmodel.core.redact import redact_text, redact_url
from riskmodel.errors import UserInputError
from riskmodel.tracking.store import EXPERIMENT_KIND, TAG_PREFIX, mlflow_module, prepare_store, resolve_tracking_uri

__all__ = ["GRACE_SECONDS", "ML_VIEW", "is_loopback", "remote_warning", "run_ui", "server_command", "stop_process_tree"]

ML_VIEW = "#/experiments?workflowType=machine_learning"  # opens experiments on their runs table
GRACE_SECONDS = 10.0  # after SIGTERM, how long the server may take to close before SIGKILL


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.1.2.3", "example.org")]
    [True, True, True, False, False, False]
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def remote_warning(host: str, port: int) -> str:
    """The warning printed when the UI is served beyond this machine."""
    return (
        f"warning: serving the MLflow UI on {host}:{port}: MLflow's UI has no authentication; anyone who "
        "reaches this port can read, change and delete every run and model in the store"
    )


def _check_host(host: str, port: int, allow_remote: bool) -> None:
    if not 0 < port < 65536:
        raise UserInputError(f"--port {port}: give a port between 1 and 65535")
    if not is_loopback(host) and not allow_remote:
        raise UserInputError(
            f"--host {host}: not a loopback address, and MLflow's UI has no authentication (anyone who reaches "
            "it can read, change and delete every run); add --allow-remote to serve it anyway"
        )


def server_command(uri: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow ui`` command line and environment: the store's URI travels in the environment only."""
    argv = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port)]
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_TRACKING_URI": uri}
    return argv, env


def _check_store(uri: str) -> None:
    """Open the store first: a store that is down is one line (exit 2), not a server's traceback.

    riskmodel's experiments are (re)marked as model-training experiments on the way, so the UI
    opens them on the runs table.
    """
    try:
        client = mlflow_module(uri).MlflowClient()
        for experiment in client.search_experiments(max_results=1000):
            if EXPERIMENT_KIND[0] in experiment.tags:
                continue
            ours = f"tags.`{TAG_PREFIX}pid` != ''"
            if client.search_runs([experiment.experiment_id], filter_string=ours, max_results=1):
                client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
    except Exception as exc:
        raise UserInputError(
            f"cannot open the MLflow tracking store {redact_url(uri)}: {redact_text(str(exc), uri)}"
        ) from None


def _forward(stream: IO[str], out: IO[str], uri: str) -> None:
    for line in stream:
        out.write(redact_text(line, uri))
        out.flush()


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent PID, state, start time) of a process from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def _tree(root: int) -> dict[int, str]:
    """Every live descendant of ``root`` (and ``root``), each with its start time (against PID reuse)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            found[pid] = starts[pid]
            todo += children.get(pid, [])
    return found


def _alive(pid: int, start: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == start and stat[1] != "Z"


def _signal_all(group: int, pids: dict[int, str], sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for pid, start in pids.items():
        if _alive(pid, start):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def stop_process_tree(process: subprocess.Popen[Any], grace: float = GRACE_SECONDS) -> None:
    """End ``process`` (started with ``start_new_session``), its process group and every descendant."""
    pids = _tree(process.pid) if Path("/proc").is_dir() else {}
    _signal_all(process.pid, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()
        pids.update(_tree(process.pid))
        if process.returncode is not None and not any(_alive(p, s) for p, s in pids.items()):
            break
        time.sleep(0.1)
    _signal_all(process.pid, pids, signal.SIGKILL)
    process.wait()


@contextmanager
def _signals_interrupt() -> Iterator[Callable[[], None]]:
    """SIGTERM and SIGHUP interrupt like Ctrl-C inside the block; the caller may then mute them all."""
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in signals} if main else {}

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def mute() -> None:  # while the group is being stopped, a second signal must not cut it short
        for s in before:
            signal.signal(s, signal.SIG_IGN)

    for s in before:
        signal.signal(s, interrupt)
    try:
        yield mute
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def run_ui(
    tracking_uri: str | None = None,
    port: int = 5000,
    host: str = "127.0.0.1",
    *,
    allow_remote: bool = False,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Serve the MLflow UI on the tracking store until interrupted; returns the server's exit code
    (0 after Ctrl-C or SIGTERM). A non-loopback ``host`` is refused unless ``allow_remote``."""
    _check_host(host, port, allow_remote)
    uri = resolve_tracking_uri(tracking_uri)
    prepare_store(uri)
    _check_store(uri)
    argv, env = server_command(uri, host, port)
    if announce is not None:
        shown = f"[{host}]" if ":" in host else host
        # MLflow 3.17 chooses the GenAI or the model-training view by a browser setting that this
        # parameter overrides; the experiments' kind tag covers the versions that read the tag
        announce(f"MLflow UI on http://{shown}:{port}/{ML_VIEW} for {redact_url(uri)} (Ctrl-C to stop)")
        if not is_loopback(host):
            announce(remote_warning(host, port))
    with _signals_interrupt() as mute:
        process = subprocess.Popen(
            argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        pumps = [
            threading.Thread(target=_forward, args=(stream, out, uri), daemon=True)
            for stream, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))
        ]
        for pump in pumps:
            pump.start()
        code = 0
        try:
            code = process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            mute()
            stop_process_tree(process)
            for pump in pumps:
                pump.join(timeout=5)
    return code
