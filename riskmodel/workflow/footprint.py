"""How many of a large cohort's models fit in memory side by side, on worker processes (issue 21).

From :data:`~riskmodel.models.forest.LARGE_COHORT` patients a ``train``'s models were developed one
after the other in the main process: only the forest's and xgboost's fits used both cores, and its
predictions, in-sample calibration, SHAP, permutation importance, figures and recording ran on one
(py-spy at 40,000 patients: 450 of 645 sampled CPU seconds on the main thread alone; only the forest's
tree building, 110 s, and its predictions, 75 s, on the second core). Two models developed at once on
two worker processes (:class:`~riskmodel.workflow.families.Developments`) use both cores throughout,
with the same numbers, but each worker holds its own model, and so does this process once it arrives.

Each fit keeps its own threads (the forest's trees and block predictions, xgboost's ``nthread``), so
two workers may run four threads on two cores: the results do not depend on it (a tree's seed is its
own; xgboost's hist trees were byte-identical at 1, 2 and 4 threads on 40,000 patients), a model left
alone at the end still uses both cores, and the cost measured was 11-14 % more CPU seconds in all
(with each worker's imports, ≈ 4 s, and the forests pickled to this process).

The memory that decides it is the random survival forest's (every other family's model is a few MB):
its trees' node arrays, about :data:`FOREST_BYTES_PER_SAMPLE` bytes for each patient a tree samples
(30·√n patients a tree, 200 trees, a 100-point time grid: measured 730 to 800 bytes at 29,000 and
40,000 patients), once per cause of a competing endpoint; one forest per endpoint is assumed (the
rule does not know the families, so a train without a forest is counted as if it had one). The rule
(:func:`side_by_side`):

* a worker's peak: :data:`PROCESS_BYTES` (Python, the libraries, the cohort's columns) plus twice its
  forest (the forest, and its pickled copy sent to this process); ``k`` workers are counted at the
  ``k`` largest such peaks (the competing endpoint's forest, the other endpoint's, then models
  without a forest);
* this process's extra memory: every forest of the train (a developed model waits here until it is
  recorded, and is kept until the train ends) plus one more, the pickled copy of the one arriving;
* a cohort with a missing value is developed serially: it may be multiply imputed inside each model
  (:class:`~riskmodel.models.imputation.MultipleImputationSurvival`, ``imputation.n_imputations``
  forests a model), which the rule cannot see from the data;
* ``jobs`` workers are used if their peaks and this process's extra memory fit in
  :data:`USABLE_SHARE` of the memory available now (``MemAvailable`` of ``/proc/meminfo``, else the
  free pages of ``os.sysconf``); otherwise fewer, down to one: the serial train, whose peak is one
  forest and its copies. Memory that cannot be read counts as not enough.

Measured on two workers (benchmarks/train_scale.py's process-tree RSS): 8.8 GiB at 40,000 patients
(rule: 10.5 GiB; serial: 2.5 GiB) and 13.0 to 13.6 GiB at 100,000, this process 9.5 GiB of it (rule: 15.9 GiB;
serial: 3.3 GiB). At 1,000,000 patients (the competing LC forest alone ≈ 8 GiB) the rule asks for
≈ 48 GiB, so a machine with 19 GiB available trains 100,000 patients on two workers and 1,000,000
serially.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from riskmodel.workflow.prepare import PreparedEndpoint

__all__ = [
    "FOREST_BYTES_PER_SAMPLE",
    "PROCESS_BYTES",
    "USABLE_SHARE",
    "available_memory",
    "forest_bytes",
    "side_by_side",
]

FOREST_BYTES_PER_SAMPLE = 850  # node arrays of one tree, per patient it samples (measured ≤ 800)
FOREST_TREES = 200  # the default forest's trees (experiments/default.yaml, the registry's default)
SAMPLES_PER_ROOT_N = 30  # patients a tree samples: 30·√n (riskmodel.models.forest)
PROCESS_BYTES = 600 * 2**20  # a worker before its model: the interpreter, the libraries, the cohort
USABLE_SHARE = 0.85  # of the available memory: the rest for the page cache and the other processes


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes of memory available to new work now: Linux's ``MemAvailable`` (free memory plus the page
    cache it can reclaim), else the free pages of ``os.sysconf``; None where neither can be read."""
    try:
        for line in meminfo.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def forest_bytes(n_patients: int, causes: int = 1, trees: int = FOREST_TREES) -> int:
    """The default random survival forest's node arrays on ``n_patients`` (one forest per cause)."""
    per_tree = min(n_patients, int(SAMPLES_PER_ROOT_N * math.sqrt(n_patients)))
    return causes * trees * per_tree * FOREST_BYTES_PER_SAMPLE


def side_by_side(prepared: Mapping[str, PreparedEndpoint], jobs: int, available: int | None = None) -> int:
    """Worker processes (at most ``jobs``) whose models fit in memory at once, by the module's rule;
    1 when even two would not. ``available``: bytes available (None: :func:`available_memory`)."""
    if jobs < 2 or any(bool(p.data.X.isna().to_numpy().any()) for p in prepared.values()):
        return 1  # missing values may be multiply imputed: m forests a model (m = 10 by default)
    forests = [forest_bytes(len(p.data.y), 2 if p.competing else 1) for p in prepared.values()]
    if not forests:
        return 1
    if available is None:
        available = available_memory()
    if available is None:
        return 1
    parent = sum(forests) + max(forests)
    # the workers' peaks, largest first: a forest's unit, then the other families' (a few MB a model)
    workers = [PROCESS_BYTES + 2 * f for f in sorted(forests, reverse=True)] + [PROCESS_BYTES] * jobs
    for k in range(jobs, 1, -1):
        if sum(workers[:k]) + parent <= USABLE_SHARE * available:
            return k
    return 1
