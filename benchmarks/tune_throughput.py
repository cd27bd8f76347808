"""Tuning throughput: finished trials per minute of ``riskmodel tune``, 1 worker against 2.

For each family (cox, rsf, gbm) and each cohort (the bundled 36 patients; 5,000 synthetic
patients), one study of ``--trials`` trials runs with one worker process, then a fresh study with
two worker processes sharing one SQLite storage (the distributed path, on one machine). The
baseline is the single worker; the ratio is the speed-up of the second worker. Each run has its
own temporary MLflow store and Optuna storage.

Run: ``python benchmarks/tune_throughput.py [--trials 12] [--quick] [--json]``
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

EXPERIMENT = """name: throughput
endpoints: [os]
tune: {metric: uno_c, n_splits: 3, n_repeats: 1}
"""


def _synthetic(folder: Path, n: int) -> Path:
    from riskmodel.cohort.synthetic import generate

    path = folder / "synthetic.csv"
    generate(n, seed=5).to_csv(path, index=False)
    return path


def _run(family: str, data: Path | None, trials: int, workers: int) -> float:
    """Finished trials per minute with ``workers`` processes on one fresh study."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "e.yaml").write_text(EXPERIMENT)
        cmd = [sys.executable, "-m", "riskmodel", "tune", str(folder / "e.yaml"), "--trials", str(trials)]
        cmd += ["--model", family, *(["--data", str(data)] if data else [])]
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlruns/mlflow.db"}
        start = time.perf_counter()
        procs = [
            subprocess.Popen(cmd, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(workers)
        ]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(err)
        seconds = time.perf_counter() - start
    return trials / seconds * 60


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="cox on the bundled cohort only, 4 trials")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cohorts: dict[str, Path | None] = {"bundled_36": None}
        if not args.quick:
            cohorts["synthetic_5000"] = _synthetic(Path(tmp), 5000)
        families = ["cox"] if args.quick else ["cox", "rsf", "gbm"]
        trials = 4 if args.quick else args.trials
        for cohort, data in cohorts.items():
            for family in families:
                one = _run(family, data, trials, 1)
                two = _run(family, data, trials, 2)
                results[f"{family}_{cohort}"] = {
                    "trials": trials,
                    "trials_per_minute_1_worker": round(one, 1),
                    "trials_per_minute_2_workers": round(two, 1),
                    "speedup": round(two / one, 2),
                }
                if not args.json:
                    line = f"1 worker {one:7.1f}/min   2 workers {two:7.1f}/min   x{two / one:.2f}"
                    print(f"{family:>4} {cohort:<15} {line}")
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
