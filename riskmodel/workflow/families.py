"""The models of one ``train`` developed side by side: each (endpoint, family) on a local worker process.

A small cohort's ``train`` develops a handful of models (2 endpoints × 3 families by default). One
after the other, each model's folds and resamples ran on both cores, but its final fit, in-sample
calibration, SHAP, permutation importance and figures ran in this process alone, and its recording
(MLflow, the model folder, the report) after them: about half of the default train's wall time
left a core idle. Here each model's whole development (:func:`~riskmodel.workflow.develop.develop_family`,
its folds and resamples one after the other) runs on one of ``min(cores, models)`` worker processes,
and so does the CPU-heavy part of recording it (:func:`~riskmodel.workflow.record.build_record`: its
figures, model report and model folder), while this process only logs the runs already made ready,
in the order ``train`` has always used (this process's CPU competes with the workers for the cores).

The work is the same: every fold's split and every resample's seed come from the config, not from
where they run, and the folds' and resamples' results are gathered in order either way, so every
metric, table, figure and report is the same bit for bit as the serial run's
(``tests/test_train_families.py``). Warnings a worker raises are replayed here, in order, so the
user (and the test suite's ``error::RiskModelWarning``) sees them as before; an error raised in a
worker is raised here with its own type when ``train`` reaches that model.

One process (the serial run, as before): on a Dask cluster (the folds go there), or for a single
model; from :data:`~riskmodel.models.forest.LARGE_COHORT` patients, when two models would not fit in
memory side by side (:mod:`riskmodel.workflow.footprint`: each worker holds its own forest).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from riskmodel.config import ExperimentConfig
from riskmodel.core.parallel import current_cluster
from riskmodel.core.workers import exit_with_parent
from riskmodel.models.forest import LARGE_COHORT
from riskmodel.stats.samplesize import SampleSize
from riskmodel.workflow.develop import Developed, develop_family
from riskmodel.workflow.footprint import side_by_side
from riskmodel.workflow.plan import Scheme
from riskmodel.workflow.prepare import PreparedEndpoint
from riskmodel.workflow.record import RunContext, RunRecord, build_record

__all__ = ["Developments", "Unit", "family_jobs"]

# (message, category, filename, lineno, module) of a warning raised on a worker
Caught = tuple[str, type[Warning], str, int, str | None]


@dataclass(frozen=True)
class Unit:
    """One model to develop: an endpoint, a family, its settings and its validation scheme."""

    endpoint: str
    family: str
    params: dict[str, Any]
    scheme: Scheme


def family_jobs(prepared: dict[str, PreparedEndpoint], n_units: int) -> int:
    """Worker processes for the models of one ``train``: 1 (developed here, one after the other, each
    model's folds on the cores) on a Dask cluster or for one model; otherwise one per core, at most one
    per model, and from ``LARGE_COHORT`` patients only as many as fit in memory side by side
    (:func:`~riskmodel.workflow.footprint.side_by_side`: 1 when two would not)."""
    largest = max((len(p.data.y) for p in prepared.values()), default=0)
    if current_cluster() is not None or n_units < 2:
        return 1
    jobs = max(1, min(os.cpu_count() or 1, n_units))
    return side_by_side(prepared, jobs) if largest >= LARGE_COHORT else jobs


def _develop_on_worker(
    ctx: RunContext, prepared: PreparedEndpoint, size: SampleSize, unit: Unit, parent: int
) -> tuple[Developed, RunRecord, list[Caught]]:
    """One model's development on a worker process (its folds and resamples one after the other)
    and its run made ready to log (figures, report, model folder), with every warning raised, to be
    replayed by the parent (``parent``: its process ID)."""
    exit_with_parent(parent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dev = develop_family(ctx.config, prepared, unit.family, unit.params, size, _no_tick, unit.scheme, n_jobs=1)
        record = build_record(ctx, prepared, size, dev)
    # the module of each warning's place, so that a filter naming a module (``ignore::...:shap``) still applies
    modules = {getattr(m, "__file__", None): name for name, m in list(sys.modules.items())}
    return dev, record, [(str(w.message), w.category, w.filename, w.lineno, modules.get(w.filename)) for w in caught]


def _no_tick() -> None:
    """The worker's progress callback: the parent counts a model's fits when it arrives."""


class Developments:
    """The developed models of one ``train``, in ``units`` order, each with its run ready to log
    (:func:`~riskmodel.workflow.record.build_record`): developed on worker processes (all submitted
    on entering the block) or, with one job, here when asked for.

    Use as a context manager: leaving the block stops the workers, and drops models not yet asked for.
    """

    def __init__(
        self,
        ctx: RunContext,
        prepared: dict[str, PreparedEndpoint],
        sizes: dict[str, SampleSize],
        units: Sequence[Unit],
        n_jobs: int,
        pool: Any = None,
    ) -> None:
        self.ctx, self.prepared, self.sizes, self.units, self.n_jobs = ctx, prepared, sizes, units, n_jobs
        self.config: ExperimentConfig = ctx.config
        self._pool: Any = None
        self._warm = pool  # n_jobs workers started earlier (riskmodel.core.workers.WarmWorkers.take), or None
        self._futures: list[Future[tuple[Developed, RunRecord, list[Caught]]]] = []
        self._registry: dict[Any, Any] = {}  # replayed warnings are shown once per message and place

    def __enter__(self) -> Developments:
        if self.n_jobs > 1:
            from joblib.externals.loky import ProcessPoolExecutor as loky_pool  # main is not re-imported there

            self._pool = self._warm if self._warm is not None else loky_pool(max_workers=self.n_jobs)
            for unit in self.units:
                prep = self.prepared[unit.endpoint]
                self._futures.append(
                    self._pool.submit(_develop_on_worker, self.ctx, prep, self.sizes[unit.endpoint], unit, os.getpid())
                )
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:
            if kind is not None:
                # after an error or an interrupt, models still being developed are not waited for: the
                # workers are ended, which loky sees as a broken pool and fails every future (cancelling
                # them, or shutdown's kill_workers with models still queued, races loky's manager thread:
                # it dies with a traceback and leaves the workers, and this process, waiting)
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=kind is None)
            self._pool = None

    def get(self, index: int, tick: Callable[[], None]) -> tuple[Developed, RunRecord]:
        """Model ``index`` of ``units`` and its run ready to log (raising what its development
        raised); ``tick`` once per fit."""
        unit = self.units[index]
        prep, size = self.prepared[unit.endpoint], self.sizes[unit.endpoint]
        if self._pool is None:
            dev = develop_family(self.config, prep, unit.family, unit.params, size, tick, unit.scheme)
            return dev, build_record(self.ctx, prep, size, dev)
        dev, record, caught = self._futures[index].result()
        for message, category, filename, lineno, module in caught:
            # (as warnings.warn_explicit names an unknown module; passing None with a registry shows nothing)
            place = module if module is not None else filename.removesuffix(".py")
            warnings.warn_explicit(message, category, filename, lineno, place, registry=self._registry)
        for _ in range(unit.scheme.fits):
            tick()
        return dev, record
