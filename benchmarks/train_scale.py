"""``riskmodel train`` end to end on synthetic registries: wall time, peak memory, held-out C.

The default experiment (every family, both endpoints) on ``n`` synthetic patients
(:func:`riskmodel.cohort.synthetic.generate`) with the evaluation plan sized to the data
(:mod:`riskmodel.workflow.plan`: above 10,000 events, one stratified 80/20 held-out split).
Reported per model: the held-out (or cross-validated) Harrell C (Wolbers' C for the competing LC
endpoint) beside the oracle C: Harrell's C of the true log hazard η
(:func:`riskmodel.cohort.synthetic.true_log_hazard`) over every patient at risk after the landmark
(for LC, competing deaths censored: an approximate ceiling for Wolbers' C). Peak memory is the
max RSS of the train process; CPU time is its user + system time, workers included (on a shared
machine the wall time depends on the load, the CPU time much less: CPU / cores is a lower bound of
the wall time on an idle machine).

``--dask``: the same train through a Dask cluster of a scheduler and two workers started here as
separate processes, as a user would (``dask scheduler --host 127.0.0.1 --port P``, ``dask worker
tcp://127.0.0.1:P --nworkers 1 --nthreads 1`` twice), after the local run; the metrics of the two
runs are compared (``dask_identical``: every metric of every model equal, exactly).

Run: ``python benchmarks/train_scale.py 10000 100000 [--dask] [--json]``; ``run_all.py`` runs it as
``train_scale_<n>`` and ``train_scale_100000_dask``. The slope of log time on log n over the sizes
run is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def train(data: Path, tmp: Path, name: str, cluster: str | None = None) -> dict[str, Any]:
    """One ``riskmodel train --data`` in its own process: wall and CPU seconds, peak memory, runs."""
    summary = tmp / f"{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "riskmodel",
        "train",
        str(REPO / "experiments" / "default.yaml"),
        "--data",
        str(data),
        "--tracking-uri",
        f"sqlite:///{tmp}/{name}.db",
        "--summary-json",
        str(summary),
        *(["--cluster", cluster] if cluster else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RISKMODEL_HOME": str(tmp / "home")}
    start = time.perf_counter()
    with (tmp / f"{name}.err").open("wb") as err:  # the plan and progress lines, read back on failure
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit((tmp / f"{name}.err").read_text()[-2000:])
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
        "runs": json.loads(summary.read_text())["runs"],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dask_cluster(folder: Path) -> Iterator[str]:
    """A scheduler and two one-thread workers as separate processes on 127.0.0.1; yields the address."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    commands = [["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]]
    worker = ["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
    commands += [[*worker, "--local-directory", str(folder / f"w{i}")] for i in range(2)]
    procs = []
    try:
        for i, args in enumerate(commands):
            with (folder / f"dask{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "dask", *args],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
            if i == 0:
                time.sleep(2)
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def held_out_c(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each model's held-out (or cross-validated) Harrell C (Wolbers' C on a competing endpoint)."""
    return {f"{r['endpoint']}_{r['family']}": r["metrics"].get("harrell_c_mean") for r in runs}


def run(n: int, dask: bool = False) -> dict[str, Any]:
    """One train of ``n`` synthetic patients in its own process (and, with ``dask``, one through a
    local Dask cluster, compared metric by metric)."""
    from riskmodel.cohort.synthetic import generate

    frame = generate(n, seed=1)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        data = tmp / "cohort.csv"
        frame.to_csv(data, index=False)
        local = train(data, tmp, "local")
        out: dict[str, Any] = {
            "n": n,
            "ours": {k: local[k] for k in ("seconds", "cpu_seconds", "peak_mib")},
            "held_out_c": held_out_c(local["runs"]),
            "oracle_c": oracle_c(frame),
        }
        if dask:
            with dask_cluster(tmp) as address:
                remote = train(data, tmp, "dask", cluster=address)
            out["dask"] = {k: remote[k] for k in ("seconds", "cpu_seconds", "peak_mib")}
            out["dask_identical"] = [r["metrics"] for r in remote["runs"]] == [r["metrics"] for r in local["runs"]]
            out["dask_held_out_c"] = held_out_c(remote["runs"])
    return out


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
    parser.add_argument("--dask", action="store_true", help="also train through a local 2-worker Dask cluster")
    args = parser.parse_args()
    results = []
    for n in args.sizes:
        r = run(n, dask=args.dask)
        results.append(r)
        if args.json:
            print(json.dumps(r))
        else:
            o = r["ours"]
            peak = o["peak_mib"]
            print(f"{n:>9} patients: {o['seconds']:.1f} s wall, {o['cpu_seconds']:.1f} s CPU, peak {peak:.0f} MiB")
            if "dask" in r:
                d = r["dask"]
                print(f"    dask (2 workers): {d['seconds']:.1f} s wall; metrics identical: {r['dask_identical']}")
            for key, c in r["held_out_c"].items():
                print(
                    f"    {key:<8} C {c if c is None else round(c, 4)}  oracle {r['oracle_c'][key.split('_')[0]]:.4f}"
                )
    if not args.json:
        print(f"slope of log time on log n: {slope(results):.2f}")


if __name__ == "__main__":
    main()
