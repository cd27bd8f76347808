"""Keeping a shared study consistent when workers crash or are stopped, with Optuna's public API.

A trial names its worker (``owner``: host and pid) as its first write. A trial left RUNNING by a
dead worker on this host is failed at the next start; one of another host is failed by Optuna's
heartbeat after its grace period.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from riskmodel.core.files import process_alive
from riskmodel.tuning.objective import optuna_module

__all__ = ["FINISHED", "UNCLAIMED_SECONDS", "abandon_own_trials", "await_other_workers", "count", "fail_dead_trials"]

UNCLAIMED_SECONDS = 10  # a live worker names itself on a new trial within milliseconds
FINISHED = ("COMPLETE", "PRUNED")


def count(study: Any, states: Sequence[str]) -> int:
    """How many of the study's trials are in ``states`` (names of Optuna's TrialState)."""
    optuna = optuna_module()
    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


def _fail(study: Any, trial: Any) -> None:
    optuna = optuna_module()
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _running(study: Any) -> list[Any]:
    optuna = optuna_module()
    return list(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def fail_dead_trials(study: Any) -> int:
    """FAIL the RUNNING trials left by crashed workers, so that they free their slots now.

    Failed here: trials of a process on this host that is gone, and trials that never named a
    worker (a worker killed between creating and naming one) once they are older than
    :data:`UNCLAIMED_SECONDS`. Trials of other hosts are left to the heartbeat, which Optuna
    checks whenever a worker starts optimising.
    """
    host, failed = socket.gethostname(), 0
    deadline = time.monotonic() + UNCLAIMED_SECONDS + 1
    while True:
        unclaimed = False
        for t in _running(study):
            owner = str(t.user_attrs.get("owner", ""))
            name, _, pid = owner.rpartition(":")
            dead = name == host and pid.isdigit() and not process_alive(int(pid))
            if not owner and t.datetime_start is not None:
                age = (dt.datetime.now() - t.datetime_start).total_seconds()
                dead = age > UNCLAIMED_SECONDS
                unclaimed = unclaimed or not dead
            if dead:
                _fail(study, t)
                failed += 1
        if not unclaimed or time.monotonic() > deadline:
            return failed
        time.sleep(1.0)


def await_other_workers(
    study: Any, trials: int, progress: Callable[[int, int], None] | None = None, poll: float = 1.0
) -> None:
    """Wait while other workers' trials are RUNNING and the study still lacks finished ones.

    A worker leaves its loop once every slot is claimed, while the last claimed trials may still
    be running elsewhere; concluding then would pick the best of an incomplete study (and close
    the parent run as if it had timed out). Trials of workers that die meanwhile are failed:
    this host's at once, other hosts' by Optuna's heartbeat after its grace period.
    """
    optuna = optuna_module()
    last = -1
    while (finished := count(study, FINISHED)) < trials and _running(study):
        if progress and finished != last:
            progress(finished, trials)
        last = finished
        fail_dead_trials(study)
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll)


def abandon_own_trials(study: Any, tracker: Any, me: str) -> None:
    """After Ctrl-C or SIGTERM: FAIL this worker's trials still RUNNING, and KILL their MLflow runs.

    Optuna fails a trial interrupted inside the objective, but not one interrupted while it is
    created or recorded. Ours are those naming this process; an unnamed one still unnamed half a
    second later is ours too (a live worker names its trial within milliseconds).
    """
    unnamed = {t.number for t in _running(study) if "owner" not in t.user_attrs}
    if unnamed:
        time.sleep(0.5)
    for t in _running(study):
        owner = t.user_attrs.get("owner")
        if owner == me or (owner is None and t.number in unnamed):
            _fail(study, t)
            run_id = t.user_attrs.get("mlflow_run_id")
            if run_id and tracker.run_status(run_id) == "RUNNING":
                tracker.close_run(run_id, "KILLED")
