"""Where the independent units of work run: in this process, on local cores, or on a Dask cluster.

Cross-validation folds, bootstrap resamples, permutation-importance features, nested-CV outer folds
and tuning trials are independent of each other. Each caller hands them to :func:`parallel_map`,
which runs them

* one after the other (``n_jobs=1``, the default),
* on this machine's cores through joblib (``n_jobs`` > 1 or -1), or
* on a Dask cluster when one is in use (:func:`using_cluster`, set by ``--cluster ADDRESS`` or
  ``RISKMODEL_DASK_ADDRESS``),

and gives the results back **in submission order**, so every metric is the same bit for bit
whichever way they ran (each unit carries its own seed; none depends on which ran first).

Dask is an optional extra (``pip install 'riskmodel[cluster]'``) and is imported only when a cluster
is asked for. Patient data sent to the workers stays in their memory for the length of the task:
riskmodel writes none of it to a worker's disk or log (Dask may spill memory to the worker's local
disk under memory pressure; point ``temporary-directory`` at encrypted storage, or turn spilling off,
where that matters).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from riskmodel.core.redact import redact_url
from riskmodel.errors import UserInputError

__all__ = ["ADDRESS_VARIABLE", "Cluster", "cluster_address", "current_cluster", "parallel_map", "using_cluster"]

ADDRESS_VARIABLE = "RISKMODEL_DASK_ADDRESS"
CONNECT_TIMEOUT = "30s"

T = TypeVar("T")
R = TypeVar("R")


class Cluster:
    """A connected Dask client (the cluster's scheduler at ``address``)."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client as client_type
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise UserInputError(
                "--cluster needs Dask: pip install 'riskmodel[cluster]' (dask[distributed]) here and on every worker"
            ) from exc
        self.address = address
        try:
            connect: Any = client_type  # distributed has no type hints
            self.client: Any = connect(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except OSError as exc:
            raise UserInputError(
                f"--cluster {redact_url(address)}: cannot reach a Dask scheduler there ({type(exc).__name__}); "
                "start one with `dask scheduler` and workers with `dask worker ADDRESS`"
            ) from None

    def map(self, fn: Callable[..., R], items: Sequence[Any], shared: tuple[Any, ...]) -> Iterator[R]:
        """``fn(*shared, item)`` for each item on the workers, yielded in submission order.

        ``shared`` (the cohort, the pipeline) is sent to the workers once, not once per item.
        """
        if not items:
            return iter(())
        scattered = [self.client.scatter(s, broadcast=True, hash=False) for s in shared] if shared else []
        futures = self.client.map(fn, *([s] * len(items) for s in scattered), list(items), pure=False)
        return _results(futures)

    def workers(self) -> int:
        """How many worker processes the scheduler knows of now."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def close(self) -> None:
        """Disconnect (the cluster itself keeps running)."""
        self.client.close()


def _results(futures: list[Any]) -> Iterator[Any]:
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.release()


# process-wide, not a context variable: Optuna runs parallel trials (--n-jobs) in threads of their own
_CURRENT: list[Cluster] = []


def cluster_address(option: str | None) -> str | None:
    """The cluster asked for: ``--cluster`` if given, else ``$RISKMODEL_DASK_ADDRESS`` (None: run locally)."""
    address = option if option is not None else os.environ.get(ADDRESS_VARIABLE)
    address = (address or "").strip()
    return address or None


def current_cluster() -> Cluster | None:
    """The cluster units of work go to now (None: this machine)."""
    return _CURRENT[-1] if _CURRENT else None


@contextlib.contextmanager
def using_cluster(address: str | None) -> Iterator[Cluster | None]:
    """Send every :func:`parallel_map` inside the block to the Dask scheduler at ``address``.

    ``None`` changes nothing (and imports nothing).
    """
    if address is None:
        yield None
        return
    cluster = Cluster(address)
    _CURRENT.append(cluster)
    try:
        yield cluster
    finally:
        _CURRENT.remove(cluster)
        cluster.close()


def parallel_map(
    fn: Callable[..., R], items: Iterable[T], *, shared: tuple[Any, ...] = (), n_jobs: int = 1
) -> Iterator[R]:
    """``fn(*shared, item)`` for every item, yielded lazily in the order of ``items``.

    On the cluster of :func:`using_cluster` when one is in use; else serially (``n_jobs=1``) or on
    ``n_jobs`` local processes (-1: every core) through joblib. ``fn`` must be a module-level function
    (it is pickled by reference) and every unit must carry its own seed, so that the results do not
    depend on where or in which order the units ran.
    """
    listed = list(items)
    cluster = current_cluster()
    if cluster is not None:
        return cluster.map(fn, listed, shared)
    if n_jobs == 1 or len(listed) <= 1:
        return (fn(*shared, item) for item in listed)
    from joblib import Parallel, delayed

    runs: Iterator[R] = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(fn)(*shared, i) for i in listed)
    return runs
