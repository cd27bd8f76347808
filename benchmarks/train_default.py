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
their load, which is printed beside it (the 1-minute load average before and after).

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
    parser.add_argument("--part", choices=["baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON line (for run_all.py)")
    args = parser.parse_args()
    if args.part == "baseline":
        baseline()
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(
            [sys.executable, "-m", "riskmodel", "train", str(REPO / "experiments" / "default.yaml")], Path(tmp)
        )
        base = measure([sys.executable, str(Path(__file__).resolve()), "--part", "baseline"], Path(tmp))
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores"
    if args.json:
        print(
            json.dumps(
                {
                    "note": "peak = max RSS of each whole process; cpu = user + system, with its workers",
                    "load_average": load,
                    "ratio": {"wall": ours[0] / base[0], "cpu": ours[2] / base[2], "peak": ours[1] / base[1]},
                    "ours": {"seconds": ours[0], "peak_mib": ours[1], "cpu_seconds": ours[2]},
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
    print(f"{'riskmodel train (default)':34} {ours[0]:>8.1f} {ours[2]:>8.1f} {ours[1]:>9.0f}")
    print(f"{'plain scikit-survival, same fits':34} {base[0]:>8.1f} {base[2]:>8.1f} {base[1]:>9.0f}")
    print(f"{'ratio':34} {ours[0] / base[0]:>8.2f} {ours[2] / base[2]:>8.2f} {ours[1] / base[1]:>9.2f}")
    print(f"load average: {load}")


if __name__ == "__main__":
    main()
