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

Each result also carries the load average before and after the run (``load``: 1-minute figures of
``os.getloadavg``), the peak of the summed RSS of the train process and its descendants
(``peak_tree_mib``, sampled every 0.5 s: the max RSS above is one process's) and the evaluation
plan as ``train`` printed it (``plan``; ``held_out_plan``: every model on one held-out split).

Run: ``python benchmarks/train_scale.py 10000 100000 [--dask] [--json]``; ``run_all.py`` runs it as
``train_scale_<n>`` and ``train_scale_100000_dask``. The slopes of log CPU time and of log wall time
on log n over the sizes run are printed at the end, over every size and over the sizes within the
held-out plan. ``--fit FILE ...`` fits them over results saved earlier (``--json`` lines or a
``run_all.py`` results.json) instead of running anything: sizes run one at a time, as a shared
machine asks, are fitted together.
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
import threading
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
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with (tmp / f"{name}.err").open("wb") as err:  # the plan and progress lines, read back on failure
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=err)
        with TreeRss(proc.pid) as tree:
            _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    log = (tmp / f"{name}.err").read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(log[-2000:])
    plan = plan_lines(log)
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
        "peak_tree_mib": tree.peak / 2**20,
        "load": [load_before, os.getloadavg()[0]],
        "plan": plan,
        "held_out_plan": held_out_plan(plan),
        "runs": json.loads(summary.read_text())["runs"],
    }


class TreeRss:
    """The peak of the summed resident memory of a process and its descendants, sampled every
    ``every`` seconds by a thread (``with TreeRss(pid) as t: ...; t.peak`` in bytes).

    The max RSS of ``wait4`` is that of the largest single process; worker processes running beside
    it add theirs, which only a sampler sees (pages shared after a fork count once per process, so
    the sum can read high)."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.wait(self.every):
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:  # the root has exited (or is a zombie awaiting wait4)
                return
            self.peak = max(self.peak, total)


def plan_lines(log: str) -> list[str]:
    """The evaluation plan as ``train`` printed it (its first line and the indented lines after it)."""
    lines = log.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("evaluation plan")), None)
    if first is None:
        return []
    out = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return out


def held_out_plan(plan: list[str]) -> bool:
    """True when every model of the plan is validated on one held-out split (the registry plan).

    >>> held_out_plan(["evaluation plan (auto): ...", "LC cox: 11614 events; one held-out split (80/20)", "estimated"])
    True
    >>> held_out_plan(["evaluation plan (auto): ...", "LC cox: 8587 events; 5-fold cross-validation once"])
    False
    """
    models = [line for line in plan[1:] if " events; " in line]
    return bool(models) and all("one held-out split" in line for line in models)


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
            "ours": {k: local[k] for k in ("seconds", "cpu_seconds", "peak_mib", "peak_tree_mib", "load")},
            "held_out_plan": local["held_out_plan"],
            "plan": local["plan"],
            "held_out_c": held_out_c(local["runs"]),
            "oracle_c": oracle_c(frame),
        }
        if dask:
            with dask_cluster(tmp) as address:
                remote = train(data, tmp, "dask", cluster=address)
            out["dask"] = {k: remote[k] for k in ("seconds", "cpu_seconds", "peak_mib", "load")}
            out["dask_identical"] = [r["metrics"] for r in remote["runs"]] == [r["metrics"] for r in local["runs"]]
            out["dask_held_out_c"] = held_out_c(remote["runs"])
    return out


def slope(results: list[dict[str, Any]], key: str = "cpu_seconds") -> float:
    """The least-squares slope of log ``key`` (``cpu_seconds`` or ``seconds``: wall) on log n; NaN
    below two distinct sizes.

    >>> slope([{"n": 10, "ours": {"cpu_seconds": 3.0}}, {"n": 1000, "ours": {"cpu_seconds": 30.0}}])
    0.5
    """
    if len({r["n"] for r in results}) < 2:
        return math.nan
    x = np.log([r["n"] for r in results])
    y = np.log([r["ours"][key] for r in results])
    return round(float(np.polyfit(x, y, 1)[0]), 12)


def read_results(paths: list[Path]) -> list[dict[str, Any]]:
    """Results saved earlier: ``--json`` lines of this script, or run_all.py's results.json (its
    ``train_scale_<n>`` cases), sorted by n."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict) and "cases" in whole:
            out += [c for name, c in whole["cases"].items() if name.startswith("train_scale_") and "ours" in c]
        elif isinstance(whole, dict):
            out.append(whole)
        else:
            out += [json.loads(line) for line in text.splitlines() if line.strip()]
    return sorted(out, key=lambda r: r["n"])


def print_slopes(results: list[dict[str, Any]]) -> None:
    """The slopes of log CPU and wall time on log n, over every size and within the held-out plan."""
    within = [r for r in results if r.get("held_out_plan")]
    for label, rs in (("every size", results), ("within the held-out plan", within)):
        sizes = ", ".join(f"{r['n']:,}" for r in rs)
        print(
            f"slope of log time on log n, {label} ({sizes or 'none'}): "
            f"CPU {slope(rs):.2f}, wall {slope(rs, 'seconds'):.2f}"
        )


def show(r: dict[str, Any]) -> None:
    """One size's result in lines."""
    o = r["ours"]
    load = "–".join(f"{v:.1f}" for v in o.get("load", [])) or "not recorded"
    tree = f" (process tree {o['peak_tree_mib']:.0f} MiB)" if "peak_tree_mib" in o else ""
    print(
        f"{r['n']:>9} patients: {o['seconds']:.1f} s wall, {o['cpu_seconds']:.1f} s CPU, peak {o['peak_mib']:.0f} MiB"
        f"{tree}, load {load}, "
        f"held-out plan: {r.get('held_out_plan')}"
    )
    if "dask" in r:
        d = r["dask"]
        print(f"    dask (2 workers): {d['seconds']:.1f} s wall; metrics identical: {r['dask_identical']}")
    for key, c in r["held_out_c"].items():
        print(f"    {key:<8} C {c if c is None else round(c, 4)}  oracle {r['oracle_c'][key.split('_')[0]]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--json", action="store_true", help="print one JSON line per size (for run_all.py)")
    parser.add_argument("--dask", action="store_true", help="also train through a local 2-worker Dask cluster")
    parser.add_argument("--fit", nargs="+", type=Path, metavar="FILE", help="fit the slopes over saved results only")
    args = parser.parse_args()
    if args.fit:
        results = read_results(args.fit)
        for r in results:
            show(r)
        print_slopes(results)
        return
    results = []
    for n in args.sizes:
        r = run(n, dask=args.dask)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            show(r)
    if not args.json:
        print_slopes(results)


if __name__ == "__main__":
    main()
