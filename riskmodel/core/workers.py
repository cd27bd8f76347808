"""Local worker processes started early, and ended with the process that started them.

``riskmodel train`` develops a small cohort's models on one worker process per core
(:mod:`riskmodel.workflow.families`). A worker's first seconds go to its imports (scikit-learn,
pandas, the model families: about 3 s of CPU each), and they used to start only once the train
had done its own imports, read the cohort and made its plan. :class:`WarmWorkers` starts them as
the command begins, each importing what a model's development needs while the train loads, and
hands them to the train (:meth:`WarmWorkers.take`), or ends them if the train will not use them.

A worker ends itself when the process that started it is gone (:func:`exit_with_parent`): a train
killed with SIGKILL cannot stop its workers, and one holding a finished model nobody will read
would otherwise wait for ever. This module imports only the standard library (and loky, when the
workers start), so a command can start the workers before its own imports.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from typing import Any

__all__ = ["WarmWorkers", "exit_with_parent", "preload"]

_WATCHED: list[int] = []  # the parent this worker process watches (set once, by its first task)


def exit_with_parent(parent: int) -> None:
    """End this worker process once ``parent`` (the process ID its starter gave) is no longer its
    parent: a daemon thread looks every second. Once a process; a worker still importing when its
    parent was killed starts its first task already adopted, which is why ``parent`` is given."""
    if _WATCHED:
        return
    _WATCHED.append(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="riskmodel-parent-watch", daemon=True).start()


def preload(module: str, parent: int) -> None:
    """A warm worker's first task: watch ``parent`` and import ``module``."""
    exit_with_parent(parent)
    importlib.import_module(module)


class WarmWorkers:
    """``n`` loky worker processes, started now, each importing ``module``.

    Either :meth:`take` them (the taker owns the pool from then on) or :meth:`close` them; closing
    after a take does nothing, so ``finally: workers.close()`` is always safe.
    """

    def __init__(self, n: int, module: str) -> None:
        from joblib.externals.loky import ProcessPoolExecutor as loky_pool  # main is not re-imported there

        self.n = n
        self.pool: Any = loky_pool(max_workers=n)
        for _ in range(n):
            self.pool.submit(preload, module, os.getpid())

    def take(self, n: int) -> Any:
        """The pool, if it has ``n`` workers (then the caller owns it); otherwise None, the workers ended."""
        if self.pool is None or n != self.n:
            self.close()
            return None
        pool, self.pool = self.pool, None
        return pool

    def close(self) -> None:
        """End the workers (not waiting for an import under way)."""
        if self.pool is None:
            return
        for process in list(getattr(self.pool, "_processes", {}).values()):
            process.terminate()
        self.pool.shutdown(wait=False)
        self.pool = None
