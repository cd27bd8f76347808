"""Hot paths outside training, each side by side with its named baseline in one process.

* ``cindex``: Harrell's and Uno's C of 1,000,000 patients (``riskmodel.metrics``: the compiled
  count) against the previous implementation (numpy's merge count, and for Uno scikit-survival's
  censoring estimator), lifelines' ``concordance_index``, and scikit-survival's O(n²)
  ``concordance_index_censored`` / ``concordance_index_ipcw`` at 20,000 patients (where their
  memory allows). Differences from each reference are reported.
* ``load``: ``riskmodel.cohort.load`` of 1,000,000 synthetic patients (read, derive, validate)
  against ``pandas.read_csv`` and ``pandas.read_parquet`` of the same files (default arguments),
  wall and CPU time; beside them ``pandas.read_csv(engine="pyarrow")``, the floor of a CSV read.
* ``help``: ``python -m riskmodel --help`` and the other light commands (``LIGHT_COMMANDS``) in
  fresh interpreters against ``python -c pass``, wall and CPU time.

The summary ends with the issue's targets side by side: CSV ≤ 3× ``pandas.read_csv``, Parquet ≤ 2×
``pandas.read_parquet``, Harrell's and Uno's C at 1,000,000 patients ≤ 0.2 s (beside the floor of
one ``np.argsort`` of as many floats, and the first call's cost in a fresh process: compiling, or
loading numba's disk cache).

Times are the best of ``--repeats`` runs (wall clock; the machine may be shared). Run:
``python benchmarks/hot_paths.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def best(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """The value of ``fn()`` and its best wall time over ``repeats`` runs."""
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, min(times)


def best_cpu(fn: Callable[[], Any], repeats: int) -> float:
    """The best CPU time of this process over ``repeats`` runs of ``fn``: on a machine shared with
    other work, wall time also counts the waits for a core, CPU time does not."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def old_concordance(event: Any, time_: Any, risk: Any, weights: Any = None) -> float:
    """The previous implementation: numpy's merge count for every size."""
    import riskmodel.metrics as metrics

    with patch.object(metrics, "COMPILED_FROM", 10**15):
        return metrics.concordance(event, time_, risk, weights).cindex


def old_uno(y_train: Any, y_test: Any, risk: Any, tau: float) -> float:
    """The previous Uno's C: scikit-survival's censoring estimator and the merge count."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    keep = y_test["time"] < tau
    weights = np.zeros(len(y_test))
    weights[keep] = CensoringDistributionEstimator().fit(y_train).predict_ipcw(y_test[keep])
    return old_concordance(y_test["event"], y_test["time"], risk, np.square(weights))


def cindex(n: int, repeats: int) -> dict[str, Any]:
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw

    from riskmodel.metrics import harrell_c, uno_c
    from riskmodel.stats import survival_array

    rng = np.random.default_rng(n)
    time_ = np.round(rng.exponential(10, n), 2) + 0.01  # rounded: many tied times
    event = rng.random(n) < 0.7
    risk = rng.normal(size=n) - 0.05 * time_
    y = survival_array(event, time_)
    tau = float(np.quantile(time_, 0.8))
    harrell_c(event[:50_000], time_[:50_000], risk[:50_000])  # compile (or load the cached kernel) first
    ours, t_ours = best(lambda: harrell_c(event, time_, risk), repeats)
    old, t_old = best(lambda: old_concordance(event, time_, risk), repeats)
    ll, t_ll = best(lambda: float(concordance_index(time_, -risk, event)), 1)
    uno, t_uno = best(lambda: uno_c(y, y, risk, tau), repeats)
    uno_old, t_uno_old = best(lambda: old_uno(y, y, risk, tau), repeats)
    y_train = y[: n // 2]  # a training set that is not the test set: its times sorted apart
    uno_other = uno_c(y_train, y, risk, tau)
    uno_other_old = old_uno(y_train, y, risk, tau)
    _, t_argsort = best(lambda: np.argsort(risk), repeats)
    cpu = {
        "harrell": best_cpu(lambda: harrell_c(event, time_, risk), repeats),
        "uno": best_cpu(lambda: uno_c(y, y, risk, tau), repeats),
        "uno_other_training": best_cpu(lambda: uno_c(y_train, y, risk, tau), repeats),
        "argsort": best_cpu(lambda: np.argsort(risk), repeats),
    }
    m = min(n, 20_000)  # scikit-survival keeps an n-long mask per event: O(n²) memory
    sk, t_sk = best(lambda: concordance_index_censored(event[:m], time_[:m], risk[:m])[0], 1)
    ours_m, t_ours_m = best(lambda: harrell_c(event[:m], time_[:m], risk[:m]), repeats)
    sk_uno, t_sk_uno = best(lambda: concordance_index_ipcw(y[:m], y[:m], risk[:m], tau)[0], 1)
    uno_m, t_uno_m = best(lambda: uno_c(y[:m], y[:m], risk[:m], tau), repeats)
    return {
        "n": n,
        "harrell": {"seconds": t_ours, "old_seconds": t_old, "lifelines_seconds": t_ll, "c": ours},
        "argsort_seconds": t_argsort,
        "cpu_seconds": cpu,
        "first_call_seconds": first_call(),
        # compiling afresh costs seconds: the full run only, not the smoke run the tests make
        "first_call_compiling_seconds": first_call(compile_afresh=True) if n >= 1_000_000 else None,
        "uno_other_abs_diff_old": abs(uno_other - uno_other_old),
        "harrell_abs_diff_old": abs(ours - old),
        "harrell_abs_diff_lifelines": abs(ours - ll),
        "uno": {"seconds": t_uno, "old_seconds": t_uno_old, "c": uno},
        "uno_abs_diff_old": abs(uno - uno_old),
        "sksurv_n": m,
        "sksurv": {"harrell_seconds": t_sk, "ours_seconds": t_ours_m, "uno_seconds": t_sk_uno, "ours_uno": t_uno_m},
        "harrell_abs_diff_sksurv": abs(ours_m - sk),
        "uno_abs_diff_sksurv": abs(uno_m - sk_uno),
    }


def first_call(compile_afresh: bool = False) -> float:
    """CPU seconds of the first compiled Harrell's and Uno's C in a fresh interpreter (imports
    excluded): loading the kernels from numba's disk cache or, with ``compile_afresh``, compiling
    them (an empty cache folder, as on a first install)."""
    code = (
        "import time, numpy as np\n"
        "from riskmodel.metrics import harrell_c, uno_c\n"
        "from riskmodel.stats import survival_array\n"
        "import riskmodel.stats.dominance\n"
        "rng = np.random.default_rng(0)\n"
        "e, t, r = rng.random(30_000) < 0.5, rng.random(30_000), rng.random(30_000)\n"
        "t0 = time.process_time()\n"
        "harrell_c(e, t, r)\n"
        "uno_c(survival_array(e, t), survival_array(e, t), r, 0.9)\n"
        "print(time.process_time() - t0)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(REPO), **({"NUMBA_CACHE_DIR": cache} if compile_afresh else {})}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
        )
    return float(done.stdout.strip().splitlines()[-1])


def load(n: int, repeats: int) -> dict[str, Any]:
    import pandas as pd

    from riskmodel.cohort import load as load_cohort
    from riskmodel.cohort.load import write_csv
    from riskmodel.cohort.synthetic import generate

    frame = generate(n, seed=1)
    out: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory() as tmp:
        csv, parquet = Path(tmp) / "cohort.csv", Path(tmp) / "cohort.parquet"
        write_csv(frame, csv)
        frame.to_parquet(parquet)
        for name, path, read in (("csv", csv, pd.read_csv), ("parquet", parquet, pd.read_parquet)):
            cohort, t_ours = best(lambda path=path: load_cohort(path), repeats)
            _, t_base = best(lambda path=path, read=read: read(path), repeats)
            cpu_ours = best_cpu(lambda path=path: load_cohort(path), repeats)
            cpu_base = best_cpu(lambda path=path, read=read: read(path), repeats)
            out[name] = {
                "seconds": t_ours,
                "baseline_seconds": t_base,
                "ratio": t_ours / t_base,
                "cpu_seconds": cpu_ours,
                "baseline_cpu_seconds": cpu_base,
                "cpu_ratio": cpu_ours / cpu_base,
                "patients": len(cohort.data),
                "baseline": f"pandas.{read.__name__}",
            }
        # the floor of a CSV read: pandas' own reader on pyarrow's engine, beside its default C engine
        _, out["csv"]["pandas_pyarrow_engine_seconds"] = best(lambda: pd.read_csv(csv, engine="pyarrow"), repeats)
        out["csv"]["pandas_pyarrow_engine_cpu_seconds"] = best_cpu(lambda: pd.read_csv(csv, engine="pyarrow"), repeats)
    return out


LIGHT_COMMANDS = ("--help", "--version", "train --help", "score --help", "models --help", "config --help")


def help_time(repeats: int) -> dict[str, Any]:
    """``riskmodel --help`` and the other light commands in fresh interpreters beside ``python -c
    pass``: wall seconds, and CPU seconds (the child's user + system time, steadier on a shared machine)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RISKMODEL_HOME": tempfile.mkdtemp(prefix="rm-help-")}

    def run(*args: str) -> tuple[float, float]:
        before, t0 = os.times(), time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, check=True)
        wall, after = time.perf_counter() - t0, os.times()
        return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)

    def fastest(*args: str) -> tuple[float, float]:
        runs = [run(*args) for _ in range(repeats)]
        return min(w for w, _ in runs), min(c for _, c in runs)

    run("-m", "riskmodel", "--help")  # warm the file cache
    base, base_cpu = fastest("-c", "pass")
    commands = {}
    for command in LIGHT_COMMANDS if repeats >= 3 else LIGHT_COMMANDS[:1]:  # a smoke run: --help alone
        wall, cpu = fastest("-m", "riskmodel", *command.split())
        commands[command] = {"seconds": wall, "cpu_seconds": cpu}
    ours = commands["--help"]["seconds"]
    return {
        "seconds": ours,
        "baseline_seconds": base,
        "baseline_cpu_seconds": base_cpu,
        "baseline": "python -c pass",
        "extra_seconds": ours - base,
        "commands": commands,
    }


def extra_lines(result: dict[str, Any]) -> list[str]:
    """Uno's C with a separate training set, the compiler's first call, and the light commands."""
    c, h = result["cindex"], result["help"]
    cpu = c["cpu_seconds"]
    lines = [
        f"  Uno's C, training set apart ({c['n'] // 2:,}): CPU {cpu['uno_other_training']:.3f} s "
        f"(|diff| vs previous {c['uno_other_abs_diff_old']:.1e}); ratios to one np.argsort (CPU): "
        f"Harrell {cpu['harrell'] / cpu['argsort']:.2f}, Uno {cpu['uno'] / cpu['argsort']:.2f}",
        f"  first compiled C, compiling afresh (empty numba cache): CPU {c['first_call_compiling_seconds'] or 0:.2f} s",
        f"light commands (python -c pass: {h['baseline_seconds']:.3f} s wall, {h['baseline_cpu_seconds']:.3f} s CPU):",
    ]
    for command, r in h["commands"].items():
        lines.append(
            f"  riskmodel {command:<14} {r['seconds']:.3f} s wall, {r['cpu_seconds']:.3f} s CPU  target <= 0.3 s"
        )
    return lines


def summary(result: dict[str, Any]) -> str:
    """The results as a few lines of text."""
    c, ld, h = result["cindex"], result["load"], result["help"]
    hc, uc = c["harrell"], c["uno"]
    lines = [
        f"Harrell C, {c['n']:,} patients: {hc['seconds']:.3f} s (previous {hc['old_seconds']:.3f} s, "
        f"lifelines {hc['lifelines_seconds']:.2f} s); Uno's C {uc['seconds']:.3f} s "
        f"(previous {uc['old_seconds']:.3f} s)",
        f"  |diff| vs previous {c['harrell_abs_diff_old']:.1e}, lifelines {c['harrell_abs_diff_lifelines']:.1e}; "
        f"vs sksurv at {c['sksurv_n']:,}: Harrell {c['harrell_abs_diff_sksurv']:.1e}, "
        f"Uno {c['uno_abs_diff_sksurv']:.1e}",
    ]
    for kind in ("csv", "parquet"):
        r = ld[kind]
        lines.append(
            f"load {ld['n']:,} patients ({kind}): {r['seconds']:.2f} s vs {r['baseline']} "
            f"{r['baseline_seconds']:.2f} s = {r['ratio']:.2f}x wall; CPU {r['cpu_seconds']:.2f} s vs "
            f"{r['baseline_cpu_seconds']:.2f} s = {r['cpu_ratio']:.2f}x"
        )
    lines.append(f"riskmodel --help: {h['seconds']:.3f} s vs python -c pass {h['baseline_seconds']:.3f} s")
    lines += targets(result)
    lines += extra_lines(result)
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[str]:
    """Issue 21's hot-path targets, side by side with this run's numbers."""
    c, ld = result["cindex"], result["load"]
    rows = [
        ("CSV load ÷ pandas.read_csv", ld["csv"]["ratio"], 3.0, "x"),
        ("CSV load ÷ pandas.read_csv, CPU", ld["csv"]["cpu_ratio"], 3.0, "x"),
        ("Parquet load ÷ pandas.read_parquet", ld["parquet"]["ratio"], 2.0, "x"),
        ("Parquet load ÷ pandas.read_parquet, CPU", ld["parquet"]["cpu_ratio"], 2.0, "x"),
        (f"Harrell's C at {c['n']:,} (s)", c["harrell"]["seconds"], 0.2, " s"),
        (f"Uno's C at {c['n']:,} (s)", c["uno"]["seconds"], 0.2, " s"),
    ]
    out = [f"targets (load {load_average()}):"]
    for name, value, limit, unit in rows:
        out.append(
            f"  {name:<38} {value:7.3f}{unit}  target <= {limit:g}{unit}  {'met' if value <= limit else 'NOT met'}"
        )
    cpu = c["cpu_seconds"]
    out.append(
        f"  CPU seconds (no waiting for a core): Harrell {cpu['harrell']:.3f}, Uno {cpu['uno']:.3f}, "
        f"one np.argsort {cpu['argsort']:.3f}"
    )
    out.append(
        f"  floor: one np.argsort of {c['n']:,} floats {c['argsort_seconds']:.3f} s; "
        f"first compiled C in a fresh process {c['first_call_seconds']:.2f} s"
    )
    return out


def load_average() -> str:
    """The 1-minute load average and the cores: the timings are wall clock on a shared machine."""
    try:
        return f"1-min load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    except OSError:
        return f"{os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["cindex", "load"], help="one part alone (printed as JSON)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if args.only:
        part = cindex if args.only == "cindex" else load
        alone = {args.only: part(20_000 if args.quick else 1_000_000, repeats)}
        print(json.dumps(alone, default=float))
        return alone
    result = {
        "cindex": cindex(20_000 if args.quick else 1_000_000, repeats),
        "load": load(2_000 if args.quick else 1_000_000, repeats),
        "help": help_time(2 if args.quick else 5),
    }
    if args.json:
        print(json.dumps(result, default=float))
    else:
        print(summary(result))
    return result


if __name__ == "__main__":
    main()
