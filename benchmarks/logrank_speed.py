"""The log-rank paths of the survival report, each side by side with its named baseline in one process.

* ``logrank``: :func:`riskmodel.stats.logrank_chi2` (counts from sorted times) against lifelines'
  ``logrank_test`` of the same two groups; the χ² difference is reported.
* ``cuts``: :func:`riskmodel.validation.threshold.logrank_at_cuts`, the log-rank χ² of all 100
  candidate cut-points of a dose at once, against one ``logrank_chi2`` per cut (how the threshold
  analysis searched before); the largest χ² difference and whether the best cut agrees.
* ``report``: ``riskmodel report --data`` of a synthetic cohort on the study's columns, wall time
  and peak memory of the process (no baseline: the figure users wait for).

Synthetic data (exponential times, a uniform dose). Times are the best of ``--repeats`` runs (wall
clock). Run: ``python benchmarks/logrank_speed.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))  # when imported by path (the test suite), for hot_paths

from hot_paths import best  # noqa: E402 - after the path above


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dose = rng.uniform(60, 160, n).round(1)
    time_ = np.minimum(rng.exponential(20 * np.exp(0.01 * (dose - 110))), rng.uniform(5, 60, n)).round(2)
    return time_, rng.random(n) < 0.7, dose


def logrank(n: int, repeats: int) -> dict[str, Any]:
    from lifelines.statistics import logrank_test

    from riskmodel.stats import logrank_chi2

    t, e, dose = _data(n)
    high = dose >= 110
    ours, ours_s = best(lambda: logrank_chi2(t, e, high.astype(int), 2), repeats)
    theirs, theirs_s = best(
        lambda: logrank_test(t[high], t[~high], e[high], e[~high]).test_statistic, max(1, repeats // 2)
    )
    return {
        "n": n,
        "ours_seconds": ours_s,
        "lifelines_seconds": theirs_s,
        "ratio": ours_s / theirs_s,
        "chi2_abs_diff": abs(float(ours) - float(theirs)),
    }


def cuts(n: int, repeats: int) -> dict[str, Any]:
    from riskmodel.stats import logrank_chi2
    from riskmodel.validation.threshold import _candidates, logrank_at_cuts

    t, e, dose = _data(n, 1)
    candidates = _candidates(dose, 0.1, 0.9)
    every, ours_s = best(lambda: logrank_at_cuts(t, e, dose, candidates), repeats)
    loop, loop_s = best(
        lambda: np.array([logrank_chi2(t, e, (dose >= c).astype(int), 2) for c in candidates]), max(1, repeats // 2)
    )
    return {
        "n": n,
        "cuts": int(candidates.size),
        "ours_seconds": ours_s,
        "one_test_per_cut_seconds": loop_s,
        "ratio": ours_s / loop_s,
        "chi2_max_rel_diff": float(np.nanmax(np.abs(every - loop) / np.maximum(1.0, np.abs(loop)))),
        "same_best_cut": bool(np.nanargmax(every) == np.nanargmax(loop)),
    }


def report(n: int) -> dict[str, Any]:
    """``riskmodel report`` of n synthetic patients as a child process: wall time, peak RSS."""
    from riskmodel.cohort.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cohort.csv"
        generate(n, seed=3).to_csv(data, index=False)
        cmd = [sys.executable, "-m", "riskmodel", "report", "--out", str(Path(tmp) / "r"), "--data", str(data)]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"n": n, "seconds": wall, "peak_mib": peak, "exit": run.returncode, "stderr": run.stderr[-300:]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [400] if args.quick else [4_000, 100_000]
    out = {
        "logrank": [logrank(n, args.repeats) for n in sizes],
        "cuts": [cuts(n, args.repeats) for n in sizes],
        "report": report(300 if args.quick else 4_000),
    }
    if args.json:
        print(json.dumps(out, indent=2, default=float))
    else:
        for row in out["logrank"]:
            print(
                f"logrank {row['n']:>7,}: ours {row['ours_seconds']:.4f} s, lifelines {row['lifelines_seconds']:.4f} s "
                f"({row['ratio']:.2f}x), |dchi2| {row['chi2_abs_diff']:.1e}"
            )
        for row in out["cuts"]:
            print(
                f"cuts    {row['n']:>7,}: all {row['cuts']} at once {row['ours_seconds']:.4f} s, one test per cut "
                f"{row['one_test_per_cut_seconds']:.4f} s ({row['ratio']:.3f}x), max rel dchi2 "
                f"{row['chi2_max_rel_diff']:.1e}, same best cut: {row['same_best_cut']}"
            )
        r = out["report"]
        print(f"report  {r['n']:>7,}: {r['seconds']:.1f} s wall, peak {r['peak_mib']:.0f} MiB (exit {r['exit']})")
    return out


if __name__ == "__main__":
    main()
