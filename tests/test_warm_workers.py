"""Worker processes started early (riskmodel.core.workers): taken whole or ended, never left behind."""

from __future__ import annotations

import time

from riskmodel.core.workers import WarmWorkers


def _alive(pool: object) -> list[object]:
    return [p for p in getattr(pool, "_processes", {}).values() if p.is_alive()]


def test_warm_workers_are_handed_over_only_at_the_size_asked_for() -> None:
    warm = WarmWorkers(2, "json")
    pool = warm.take(2)
    assert pool is not None
    assert warm.pool is None
    assert warm.take(2) is None  # taken once
    warm.close()  # after a take: nothing to do, the pool is the taker's
    assert pool.submit(sum, [1, 2]).result(timeout=60) == 3
    pool.shutdown(wait=True)


def test_warm_workers_not_needed_are_ended() -> None:
    warm = WarmWorkers(2, "json")
    pool = warm.pool
    deadline = time.monotonic() + 60
    while len(_alive(pool)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    processes = _alive(pool)
    assert len(processes) == 2
    assert warm.take(3) is None  # the train wants another number of workers: these are ended
    deadline = time.monotonic() + 30
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in processes if p.is_alive()]
    warm.close()  # twice: nothing to do
