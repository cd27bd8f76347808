"""riskmodel.tuning.conclusion: workers sharing a study agree on one of them to refit and log the
chosen model; the others wait for its record, and take over if it dies or fails."""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import pytest

from riskmodel.tuning.conclusion import ATTR, conclude_once

FAST = {"settle": 0.2, "poll": 0.05, "beat_every": 0.05}


def _study() -> Any:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=optuna.storages.InMemoryStorage())


def _race(study: Any, workers: int, work: Any, **kw: Any) -> list[tuple[dict[str, Any], str]]:
    """``workers`` threads conclude the same state at the same moment."""
    start = threading.Barrier(workers)
    out: list[tuple[dict[str, Any], str]] = [({}, "")] * workers

    def one(i: int) -> None:
        start.wait()
        out[i] = conclude_once(study, "run/60/7", f"w{i}", lambda: work(i), **{**FAST, **kw})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def test_workers_arriving_together_conclude_once_and_all_report_the_same_record() -> None:
    study, calls = _study(), []

    def work(i: int) -> dict[str, Any]:
        calls.append(i)
        time.sleep(0.3)  # longer than several heartbeats: the waiting workers must not take over
        return {"model_uri": f"runs:/x/model-by-w{i}"}

    out = _race(study, 4, work)
    assert len(calls) == 1
    by = f"w{calls[0]}"
    assert all(record == {"model_uri": f"runs:/x/model-by-{by}"} and who == by for record, who in out)
    assert study.user_attrs[ATTR]["record"] == {"model_uri": f"runs:/x/model-by-{by}"}


def test_a_concluded_state_is_reused_and_a_new_state_concluded_again() -> None:
    study, calls = _study(), []

    def work(tag: str) -> dict[str, Any]:
        calls.append(tag)
        return {"model_uri": tag}

    first = conclude_once(study, "run/60/7", "a", lambda: work("first"), **FAST)
    again = conclude_once(study, "run/60/7", "b", lambda: work("again"), **FAST)
    more = conclude_once(study, "run/80/12", "b", lambda: work("more"), **FAST)
    assert calls == ["first", "more"]
    assert first == again == ({"model_uri": "first"}, "a")
    assert more == ({"model_uri": "more"}, "b")


def test_a_winner_that_fails_gives_its_claim_up_and_a_waiting_worker_concludes() -> None:
    study, calls = _study(), []

    def work(i: int) -> dict[str, Any]:
        calls.append(i)
        if len(calls) == 1:
            raise RuntimeError("the refit failed")
        return {"model_uri": f"w{i}"}

    errors: list[BaseException] = []

    def guarded(i: int) -> dict[str, Any]:
        try:
            return work(i)
        except RuntimeError as exc:
            errors.append(exc)
            raise

    with pytest.raises(RuntimeError):
        conclude_once(study, "run/60/7", "w0", lambda: guarded(0), **FAST)
    assert study.user_attrs[ATTR]["beat"] == 0.0  # given up, not left to go stale
    record, by = conclude_once(study, "run/60/7", "w1", lambda: guarded(1), grace=3600, **FAST)
    assert (record, by) == ({"model_uri": "w1"}, "w1")
    assert calls == [0, 1]
    assert len(errors) == 1


def test_a_dead_winner_is_replaced_once_its_heartbeat_is_older_than_the_grace() -> None:
    study, calls = _study(), []
    study.set_user_attr(ATTR, {"state": "run/60/7", "by": "gone", "beat": time.time()})  # claimed, then died
    t0 = time.monotonic()
    record, by = conclude_once(
        study, "run/60/7", "w1", lambda: calls.append(1) or {"model_uri": "w1"}, grace=0.5, **FAST
    )
    assert (record, by) == ({"model_uri": "w1"}, "w1")
    assert calls == [1]
    assert time.monotonic() - t0 >= 0.5  # it waited for the claim to go stale first


def test_a_fresh_claim_is_waited_for_not_taken_over() -> None:
    study = _study()
    study.set_user_attr(ATTR, {"state": "run/60/7", "by": "other", "beat": time.time()})

    def finish_elsewhere() -> None:
        time.sleep(0.4)
        study.set_user_attr(ATTR, {"state": "run/60/7", "by": "other", "beat": time.time(), "record": {"m": 1}})

    threading.Thread(target=finish_elsewhere).start()
    record, by = conclude_once(study, "run/60/7", "w1", lambda: pytest.fail("took over a live claim"), **FAST)
    assert (record, by) == ({"m": 1}, "other")
