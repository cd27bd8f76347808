"""``riskmodel train`` end to end on synthetic registries: wall time, peak memory, held-out C.

The default experiment (every family, both endpoints) on ``n`` synthetic patients
(:func:`riskmodel.cohort.synthetic.generate`) with the evaluation plan sized to the data
(:mod:`riskmodel.workflow.plan`: above 10,000 events, one stratified 80/20 held-out split).
Reported per model: the held-out (or cross-validated) Harrell C (Wolbers' C for the competing LC
endpoint) beside the oracle C: Harrell's C of the true log hazard η
(:func:`riskmodel.cohort.synthetic.true_log_hazard`) over every patient at risk after the landmark
(for LC, competing deaths censored: an approximate ceiling for Wolbers' C). Peak memory is the
max RSS of the train process.

Run: ``python benchmarks/train_scale.py 10000 100000 [--json]``; ``run_all.py`` runs it as
``train_scale_<n>``. The slope of log time on log n over the sizes run is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def oracle_c(frame: Any) -> dict[str, float]:
    """Harrell's C of the true log hazard, per endpoint, after the 3-month landmark."""
    from sksurv.metrics import concordance_index_censored

    from riskmodel.cohort.synthetic import true_log_hazard

    out = {}
    for endpoint in ("lc", "os"):
        time_, event = frame[f"{endpoint}_months"].to_numpy(float), frame[f"{endpoint}_event"].to_numpy() == 1
        at_risk = time_ > 3.0
        eta = true_log_hazard(frame, endpoint)[at_risk]  # type: ignore[arg-type]
        if len(eta) > 20_000:  # scikit-survival's count is O(n^2) in memory: a seeded sample
            rows = np.random.default_rng(0).choice(len(eta), 20_000, replace=False)
        else:
            rows = np.arange(len(eta))
        out[endpoint] = float(concordance_index_censored(event[at_risk][rows], time_[at_risk][rows], eta[rows])[0])
    return out


def run(n: int) -> dict[str, Any]:
    """One train of ``n`` synthetic patients in its own process."""
    from riskmodel.cohort.synthetic import generate

    frame = generate(n, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        data, summary = Path(tmp) / "cohort.csv", Path(tmp) / "summary.json"
        frame.to_csv(data, index=False)
        cmd = [
            sys.executable,
            "-m",
            "riskmodel",
            "train",
            str(REPO / "experiments" / "default.yaml"),
            "--data",
            str(data),
            "--tracking-uri",
            f"sqlite:///{tmp}/mlflow.db",
            "--summary-json",
            str(summary),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO), "RISKMODEL_HOME": str(Path(tmp) / "home")}
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(proc.stderr.read().decode()[-2000:] if proc.stderr else "train failed")
        runs = json.loads(summary.read_text())["runs"]
    oracle = oracle_c(frame)
    return {
        "n": n,
        "ours": {"seconds": wall, "peak_mib": usage.ru_maxrss / 1024},
        "held_out_c": {f"{r['endpoint']}_{r['family']}": r["metrics"].get("harrell_c_mean") for r in runs},
        "oracle_c": oracle,
    }


def slope(results: list[dict[str, Any]]) -> float:
    """The least-squares slope of log wall time on log n."""
    if len(results) < 2:
        return math.nan
    x = np.log([r["n"] for r in results])
    y = np.log([r["ours"]["seconds"] for r in results])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--json", action="store_true", help="print one JSON line per size (for run_all.py)")
    args = parser.parse_args()
    results = []
    for n in args.sizes:
        r = run(n)
        results.append(r)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{n:>9} patients: {r['ours']['seconds']:.1f} s, peak {r['ours']['peak_mib']:.0f} MiB")
            for key, c in r["held_out_c"].items():
                print(
                    f"    {key:<8} C {c if c is None else round(c, 4)}  oracle {r['oracle_c'][key.split('_')[0]]:.4f}"
                )
    if not args.json:
        print(f"slope of log time on log n: {slope(results):.2f}")


if __name__ == "__main__":
    main()
