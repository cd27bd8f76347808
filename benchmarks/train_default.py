"""Wall time and peak memory of ``riskmodel train`` (default experiment), against plain scikit-survival.

Baseline: the same model fits as the evaluation plan's (:mod:`riskmodel.workflow.plan`: every CV
fold, every bootstrap resample of the optimism validation (Cox only: the tree ensembles get none),
and the final fits, for both endpoints; one fit per cause on the competing LC endpoint)
with scikit-survival's own CoxPHSurvivalAnalysis, RandomSurvivalForest and
GradientBoostingSurvivalAnalysis, same hyperparameters, on the same feature matrices, with no
metrics, no tracking and no model files. The ratio is what riskmodel's evaluation, MLflow
tracking and pickle-free saving cost on top of the bare fits. Each side runs in its own process,
so peak memory (max RSS) is measured separately, and so is CPU time (user + system, with the
worker processes each side starts): on a machine shared with other jobs the wall time grows with
their load, which is printed beside it (the 1-minute load average before and after). Of riskmodel's
CPU time, the main process's (it opens the store and logs each model developed on the workers) is
printed apart, and so is the critical path's tail: when the last model arrived from the workers
against when ``train`` ended.

Run: ``python benchmarks/train_default.py``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def baseline() -> None:
    """The bare fits (runs in a child process): the evaluation plan's, family by family."""
    import numpy as np
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    from riskmodel.cohort import load_bundled, survival_data
    from riskmodel.config import load_experiment
    from riskmodel.features import ClinicalFeatures
    from riskmodel.workflow.plan import scheme_for

    config = load_experiment(REPO / "experiments" / "default.yaml")
    cohort = load_bundled()
    families = {
        "cox": lambda: CoxPHSurvivalAnalysis(alpha=0.1, ties="efron"),
        "rsf": lambda: RandomSurvivalForest(n_estimators=200, min_samples_leaf=3, random_state=0),
        "gbm": lambda: GradientBoostingSurvivalAnalysis(
            n_estimators=100, learning_rate=0.05, max_depth=2, subsample=0.8, random_state=0
        ),
    }
    for endpoint in config.endpoints:
        data = survival_data(
            cohort,
            endpoint,
            landmark_months=config.landmark_months,
            feature_columns=["response_3mo"],
            competing=endpoint == "lc",
        )
        X = ClinicalFeatures(config.features.set, landmark_months=config.landmark_months).fit_transform(data.X)
        # a competing endpoint (LC, death competing) is one model per cause, as riskmodel's cause-specific families
        causes = np.asarray(data.y["cause"]) if "cause" in (data.y.dtype.names or ()) else np.asarray(data.y["event"])
        targets = [Surv.from_arrays(causes == k, data.y["time"]) for k in sorted(set(causes) - {0})]
        for family, make in families.items():
            scheme = scheme_for(config, endpoint, family, int(data.y["event"].sum()))
            splits = RepeatedStratifiedKFold(
                n_splits=scheme.n_splits, n_repeats=scheme.n_repeats, random_state=config.seed
            )
            folds = [train for train, _ in splits.split(X, causes)] + [slice(None)]
            rng = np.random.default_rng(config.seed)  # the bootstrap validation's refits, one per resample
            folds += [rng.integers(0, len(X), len(X)) for _ in range(scheme.bootstrap)]
            for train in folds:
                for y in targets:
                    make().fit(X[train], y[train])


def ours(out: Path) -> None:
    """``riskmodel train`` of the default experiment, run here (a child process of :func:`main`), writing
    to ``out`` the CPU time of this process alone (the one that records the runs; its worker processes'
    are not in it) and when the last model arrived from the workers against when ``train`` ended: the
    critical path's tail is the recording left after the last model."""
    import atexit
    import builtins
    import resource
    import runpy

    start = time.perf_counter()
    arrived: list[float] = []
    real_import = builtins.__import__

    def patch(families: Any) -> None:
        get = families.Developments.get

        def timed_get(self, index, tick):  # type: ignore[no-untyped-def]
            got = get(self, index, tick)
            arrived.append(time.perf_counter() - start)
            return got

        families.Developments.get = timed_get

    def hooked_import(*args, **kwargs):  # type: ignore[no-untyped-def]
        # the timing is patched in as the train imports its workflow, not before: importing it here
        # first would delay the workers riskmodel train starts before its own imports
        module = real_import(*args, **kwargs)
        families = sys.modules.get("riskmodel.workflow.families")
        if families is not None and hasattr(families, "Developments"):
            builtins.__import__ = real_import
            patch(families)
        return module

    builtins.__import__ = hooked_import

    def report() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        ended = time.perf_counter() - start
        last = max(arrived, default=float("nan"))
        out.write_text(json.dumps({"main_cpu": usage.ru_utime + usage.ru_stime, "last_arrival": last, "ended": ended}))

    atexit.register(report)
    sys.argv = ["riskmodel", "train", str(REPO / "experiments" / "default.yaml")]
    runpy.run_module("riskmodel", run_name="__main__")


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system, the process and the worker
    processes it waited for) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON line (for run_all.py)")
    args = parser.parse_args()
    if args.part == "baseline":
        baseline()
        return
    if args.part == "ours":
        ours(args.out)
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        main_process = Path(tmp) / "main_process.json"
        this = str(Path(__file__).resolve())
        ours_ = measure([sys.executable, this, "--part", "ours", "--out", str(main_process)], Path(tmp))
        base = measure([sys.executable, this, "--part", "baseline"], Path(tmp))
        recording = json.loads(main_process.read_text())
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores"
    if args.json:
        print(
            json.dumps(
                {
                    "note": "peak = max RSS of each whole process; cpu = user + system, with its workers",
                    "load_average": load,
                    "ratio": {"wall": ours_[0] / base[0], "cpu": ours_[2] / base[2], "peak": ours_[1] / base[1]},
                    "ours": {
                        "seconds": ours_[0],
                        "peak_mib": ours_[1],
                        "cpu_seconds": ours_[2],
                        "main_process_cpu_seconds": recording["main_cpu"],
                        "last_model_arrived_seconds": recording["last_arrival"],
                        "train_ended_seconds": recording["ended"],
                    },
                    "baseline": {
                        "seconds": base[0],
                        "peak_mib": base[1],
                        "cpu_seconds": base[2],
                        "name": "plain scikit-survival, same fits",
                    },
                }
            )
        )
        return
    print(f"{'':34} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9}")
    print(f"{'riskmodel train (default)':34} {ours_[0]:>8.1f} {ours_[2]:>8.1f} {ours_[1]:>9.0f}")
    print(f"{'  of it, the main process':34} {'':>8} {recording['main_cpu']:>8.1f}")
    print(f"{'plain scikit-survival, same fits':34} {base[0]:>8.1f} {base[2]:>8.1f} {base[1]:>9.0f}")
    print(f"{'ratio':34} {ours_[0] / base[0]:>8.2f} {ours_[2] / base[2]:>8.2f} {ours_[1] / base[1]:>9.2f}")
    last, ended = recording["last_arrival"], recording["ended"]
    tail = ended - last
    print(f"critical path: the last model arrived at {last:.1f} s, train ended at {ended:.1f} s ({tail:.1f} s after)")
    print(f"load average: {load}")


if __name__ == "__main__":
    main()
