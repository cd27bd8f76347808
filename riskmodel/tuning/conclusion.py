"""One worker concludes a shared study: refits the chosen trial, logs and registers the model.

Workers sharing a study (``--storage postgresql://…``) all reach the end together. Each one
refitting and logging the same model would register it several times and write the parent run's
tags at the same moment; instead they agree, through the study's user attribute ``conclusion``,
on one worker to do it, and the others wait for its record:

1. A finished conclusion of the same study state (same chosen trial, same number of finished
   trials) is reused.
2. A claim of the same state whose heartbeat is fresh is waited for.
3. Otherwise the worker writes its claim, waits ``settle`` seconds and reads the claim back: the
   last writer wins, the others wait (Optuna's RDB storage drops, without an error, the insert
   that loses a race for a new attribute, so every claim ends as one value). The winner
   refreshes the heartbeat while it works; a winner that dies (heartbeat older than ``grace``;
   the clocks of the workers' hosts are assumed to agree within it) is replaced by a waiting
   worker, and a winner whose work raises gives its claim up at once.

The same study state (parent run, finished trials, chosen trial) concluded again by a later run
(``riskmodel tune`` repeated with the same ``--trials``) reuses the model logged the first time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from riskmodel.tuning.storage import GRACE_SECONDS, HEARTBEAT_SECONDS

__all__ = ["ATTR", "conclude_once"]

ATTR = "conclusion"


def _read(study: Any) -> dict[str, Any]:
    value = study.user_attrs.get(ATTR)
    return value if isinstance(value, dict) else {}


def conclude_once(
    study: Any,
    state: str,
    me: str,
    work: Callable[[], dict[str, Any]],
    *,
    settle: float = 1.0,
    poll: float = 1.0,
    grace: float = GRACE_SECONDS,
    beat_every: float = HEARTBEAT_SECONDS,
) -> tuple[dict[str, Any], str]:
    """``work()``'s record for study state ``state``, run by one of the workers sharing ``study``.

    Returns (record, worker that produced it). ``work`` must return JSON-serialisable values.
    """
    while True:
        seen = _read(study)
        if seen.get("state") == state and "record" in seen:
            return dict(seen["record"]), str(seen.get("by", ""))
        claimed = seen.get("state") == state and time.time() - float(seen.get("beat", 0.0)) < grace
        if not claimed:
            study.set_user_attr(ATTR, {"state": state, "by": me, "beat": time.time()})
            time.sleep(settle)
            seen = _read(study)
            if seen.get("state") == state and seen.get("by") == me and "record" not in seen:
                return _work_with_heartbeat(study, state, me, work, beat_every), me
        time.sleep(poll)


def _work_with_heartbeat(
    study: Any, state: str, me: str, work: Callable[[], dict[str, Any]], beat_every: float
) -> dict[str, Any]:
    """Run ``work`` while a thread refreshes this worker's claim; record its result."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(beat_every):
            study.set_user_attr(ATTR, {"state": state, "by": me, "beat": time.time()})

    beating = threading.Thread(target=beat, name="riskmodel-conclusion-heartbeat", daemon=True)
    beating.start()
    try:
        record = work()
    except BaseException:
        done.set()
        beating.join()
        # give the claim up at once: a waiting worker takes over without waiting out the grace
        study.set_user_attr(ATTR, {"state": state, "by": me, "beat": 0.0})
        raise
    done.set()
    beating.join()
    study.set_user_attr(ATTR, {"state": state, "by": me, "beat": time.time(), "record": record})
    return record
