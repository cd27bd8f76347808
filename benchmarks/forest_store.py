"""The forest's compact store against scikit-survival's forest as riskmodel kept it before (issue 21).

Two cases, each side in its own process (peak RSS is per process; CPU is user + system of the
process, its threads included, so the load of other jobs inflates wall time but not the ratio):

* ``fit``: peak RSS and CPU of ``SurvivalForest().fit`` at ``--n`` patients (defaults above 1,000
  patients: time grid, 30·√n patients a tree, binned features, all cores; trees grown 20 at a
  time and compacted) against scikit-survival's ``RandomSurvivalForest`` grown in one call on the
  same binned features and snapped times, same settings and seed (``SurvivalForest.sksurv_forest``),
  which is what ``fit`` kept before; and the size of each in memory.
* ``files``: CPU to save and to load the forest (``forest.npz``, every array checked) against
  scikit-survival's forest written with skops (``core.memory.dump_skops``, as before) and read with
  the allow-list loader (``models.untrusted.load_skops_exclusive``), best of 5; and the bytes. A
  skops file over 512 MiB is written once and not read back (skops reads it into about three
  times its size: a 3 GB forest of 100,000 patients ran the machine out of memory).

Run: ``python benchmarks/forest_store.py --n 100000``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_SKOPS_LOAD = 512 << 20  # a larger skops file is written and sized, not read back (memory)


def data(n: int) -> tuple:
    import numpy as np

    from riskmodel.stats import survival_array

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 8))
    X[rng.random(n) < 0.1, 2] = np.nan
    t = rng.exponential(20 * np.exp(-(X[:, 0] - 0.5 * X[:, 1])))
    c = rng.uniform(0, 60, n)
    return X, survival_array(t <= c, np.minimum(t, c))


def child(side: str, n: int, trees: int) -> dict:
    """One side's fit, then its files (runs in a child process)."""
    from riskmodel.core.memory import dump_skops
    from riskmodel.models import SurvivalForest
    from riskmodel.models.forest import LARGE_COHORT
    from riskmodel.models.untrusted import load_skops_exclusive

    X, y = data(n)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c0 = time.process_time()
    forest = SurvivalForest(n_estimators=trees)
    if side == "store":
        model = forest.fit(X, y).model_
        size = sum(a.nbytes for a in model.arrays().values())
    else:
        jobs = -1 if n > LARGE_COHORT else 1  # the same threads as fit
        model = forest.sksurv_forest(X, y, n_jobs=jobs)
        size = sum(t.tree_.value.nbytes + t.tree_.node_count * 64 for t in model.estimators_)
    fit_cpu = time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    save, load = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / ("forest.npz" if side == "store" else "estimator.skops")
        for _ in range(5):
            path.unlink(missing_ok=True)
            c0 = time.process_time()
            if side == "store":
                forest.save_state(folder)
            else:
                dump_skops(model, path)
            save.append(time.process_time() - c0)
            if side == "sksurv" and path.stat().st_size > MAX_SKOPS_LOAD:
                break  # skops reads a file into about three times its size: not beside the forest
            c0 = time.process_time()
            if side == "store":
                type(forest).load_state(folder)
            else:
                load_skops_exclusive(path, SurvivalForest.SKOPS_ROOT, SurvivalForest.SKOPS_ALLOWED)
            load.append(time.process_time() - c0)
        size_file = path.stat().st_size
    return {
        "peak_rss_mib": round(peak / 1024),
        "rss_before_fit_mib": round(start_rss / 1024),
        "fit_cpu_s": round(fit_cpu, 2),
        "model_mib": round(size / 2**20, 1),
        "save_cpu_s": round(min(save), 4),
        "load_cpu_s": round(min(load), 4) if load else None,
        "file_mib": round(size_file / 2**20, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--child", choices=["store", "sksurv"])
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n, args.trees)))
        return {}
    out: dict = {"n": args.n, "trees": args.trees, "load_before": Path("/proc/loadavg").read_text().split()[0]}
    for side in ("sksurv", "store"):
        cmd = [sys.executable, __file__, "--child", side, "--n", str(args.n), "--trees", str(args.trees)]
        # scikit-survival's forest of 100,000 patients is a 3 GB skops file, over the 2 GB that
        # riskmodel reads by default (riskmodel.core.archives); lifted here to time its loading
        env = {**os.environ, "RISKMODEL_MAX_MODEL_MB": "65536"}
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{side}: {done.stderr[-2000:]}")
        out[side] = json.loads(done.stdout.strip().splitlines()[-1])
    out["load_after"] = Path("/proc/loadavg").read_text().split()[0]
    for key in ("peak_rss_mib", "fit_cpu_s", "model_mib", "save_cpu_s", "load_cpu_s", "file_mib"):
        mine, theirs = out["store"][key], out["sksurv"][key]
        out[f"ratio_{key}"] = None if mine is None or theirs is None else round(mine / max(theirs, 1e-9), 4)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
