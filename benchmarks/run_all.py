"""The benchmark suite: every figure a ratio against a named baseline, run side by side.

Each case runs in its own child process, which fits riskmodel and then the baseline on the same
data. The same process measures both, so they see the same machine. Peak memory is
the largest resident-set growth seen while each side runs, sampled every 5 ms from
``/proc/self/statm``. Data come from the synthetic generator (``riskmodel.cohort.synthetic``), so
each model's held-out Harrell C is reported beside the oracle's: the C of the true log hazard η
on the same test patients. "oracle gap" = oracle C − model C.

Cases (``--quick`` shrinks every size for a smoke run):

* ``forest_<n>``: ``SurvivalForest(n_estimators=100)`` with its defaults (time grid, subsample
  and bins above 1,000 patients, both cores), against scikit-survival's
  ``RandomSurvivalForest(n_estimators=100)`` with its defaults (same leaf size). The baseline is
  skipped where it would need more than 10 minutes (it grows about as n²).
* ``boosting_<n>``: the xgboost backend, 100 rounds of depth 4, against scikit-survival's
  ``GradientBoostingSurvivalAnalysis`` (100 trees of depth 4) at 10,000 patients only.
* ``cindex_<n>``: ``riskmodel.metrics.harrell_c`` against scikit-survival's
  ``concordance_index_censored`` (O(n²) memory: run up to 20,000 patients) and lifelines'
  ``concordance_index``; the largest difference from each is reported.
* ``cox_100000``: ``CoxPH(penalty=0)`` against lifelines' ``CoxPHFitter``, with the largest
  coefficient difference.
* ``scoring_100000``: ``score_frame`` on 100,000 patients' raw cells (validation, features, risk
  and S(t) at 3 horizons, flags, statuses, pseudonyms: the score command minus file I/O) against
  the bare estimator's predictions at the same horizons on the already-built feature matrix; Cox
  in the table, forest and boosting in results.json (``benchmarks/score_stream.py``).
* ``score_parquet_1000000``: ``riskmodel score`` of 1,000,000 patients Parquet to Parquet,
  streamed, as a subprocess (wall time, peak RSS), against ``read_parquet`` + features + bare Cox
  + ``to_parquet``; the whole file in one chunk beside it (``benchmarks/score_stream.py``).
* ``train_default``: ``riskmodel train`` of the default experiment against the same fits in plain
  scikit-survival (``benchmarks/train_default.py``).
* ``train_scale_<n>``: ``riskmodel train`` end to end (all families, both endpoints, the sized
  evaluation plan) on n synthetic patients: wall time, CPU time, peak memory, held-out C beside the
  oracle C (``benchmarks/train_scale.py``; no baseline). ``train_scale_100000_dask``: the 100,000
  run again through a scheduler and two workers started as separate processes, its metrics
  compared with the local run's (``dask_identical``).

Writes ``benchmarks/results.json`` and ``benchmarks/RESULTS.md``. Run:
``python benchmarks/run_all.py [--quick] [--cases forest_10000 cindex_1000000 ...]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
BASELINE_LIMIT_S = 600.0


# ----------------------------------------------------------------------------- measuring
def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * PAGE


@contextmanager
def _peak() -> Iterator[dict[str, float]]:
    """Wall seconds and peak RSS growth (MiB) of the block, sampled on a thread."""
    out: dict[str, float] = {}
    start_rss = _rss()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - t0
        done.set()
        thread.join()
        peak[0] = max(peak[0], _rss())
        out["peak_mib"] = (peak[0] - start_rss) / 2**20


def _timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    with _peak() as m:
        value = fn()
    return value, m


# ----------------------------------------------------------------------------- data
def _design(n_train: int, n_test: int, seed: int = 1) -> dict[str, Any]:
    """Synthetic OS data after the 3-month landmark: the "full" feature set (13), about 70 % events."""
    from riskmodel.cohort import survival_data
    from riskmodel.cohort.synthetic import generate, true_log_hazard
    from riskmodel.features import ClinicalFeatures

    frame = generate(n_train + n_test, seed=seed)
    data = survival_data(frame, "os", landmark_months=3, feature_columns=["response_3mo"])
    eta = true_log_hazard(frame.loc[data.X.index], "os")
    features = ClinicalFeatures("full", landmark_months=3).fit(data.X)
    X = np.ascontiguousarray(features.transform(data.X), dtype=float)
    n = min(n_train, len(X) - min(n_test, len(X) // 2))
    return {
        "X_train": X[:n],
        "y_train": data.y[:n],
        "X_test": X[n:],
        "y_test": data.y[n:],
        "eta_test": np.asarray(eta)[n:],
        "frame": frame.loc[data.X.index],
        "features": features,
    }


def _c(d: dict[str, Any], risk: np.ndarray) -> float:
    from riskmodel.metrics import harrell_c

    return harrell_c(d["y_test"]["event"], d["y_test"]["time"], risk)


def _describe(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "n_train": len(d["y_train"]),
        "n_test": len(d["y_test"]),
        "n_features": int(d["X_train"].shape[1]),
        "event_rate": round(float(d["y_train"]["event"].mean()), 3),
        "oracle_c": _c(d, d["eta_test"]),
    }


# ----------------------------------------------------------------------------- cases
def case_forest(n: int, quick: bool) -> dict[str, Any]:
    from sksurv.ensemble import RandomSurvivalForest

    from riskmodel.models import SurvivalForest

    d = _design(n, min(n, 20_000))
    out = _describe(d)
    trees = 20 if quick else 100
    # warm-up: the first fit in a process pays for imports and allocator growth; neither side should
    RandomSurvivalForest(n_estimators=2).fit(d["X_train"][:100], d["y_train"][:100])
    ours, m = _timed(lambda: SurvivalForest(n_estimators=trees, random_state=0).fit(d["X_train"], d["y_train"]))
    out["ours"] = {**m, "c": _c(d, ours.predict_risk(d["X_test"])), "settings": _forest_settings(ours)}
    one, m1 = _timed(
        lambda: SurvivalForest(n_estimators=trees, n_jobs=1, random_state=0).fit(d["X_train"], d["y_train"])
    )
    out["ours_1_core"] = {**m1, "c": _c(d, one.predict_risk(d["X_test"]))}
    # scikit-survival's split search grows about as n² here (8.9 s at 2,000; 48 s at 10,000 measured)
    if n <= 20_000:
        base, mb = _timed(
            lambda: RandomSurvivalForest(n_estimators=trees, min_samples_leaf=3, random_state=0).fit(
                d["X_train"], d["y_train"]
            )
        )
        out["baseline"] = {**mb, "c": _c(d, base.predict(d["X_test"])), "name": "sksurv RandomSurvivalForest"}
        out["curves"] = _curve_accuracy(d, ours, base)
    else:
        out["baseline"] = {"skipped": f"scikit-survival would need more than {BASELINE_LIMIT_S / 60:g} minutes"}
    return out


def _curve_accuracy(d: dict[str, Any], ours: Any, base: Any) -> dict[str, Any]:
    """What the time grid costs the curves: IBS of both forests, and their S(t) differences."""
    from riskmodel.metrics import integrated_brier

    y_train, y_test = d["y_train"], d["y_test"]
    upper = min(24.0, float(np.quantile(y_test["time"], 0.9)))
    grid = np.linspace(1.0, upper, 24)
    ours_s = ours.predict_survival(d["X_test"], grid).to_numpy()
    raw = base.predict_survival_function(d["X_test"], return_array=True)
    idx = np.searchsorted(base.unique_times_, grid, side="right") - 1
    base_s = np.where(idx[None, :] >= 0, raw[:, np.clip(idx, 0, None)], 1.0)
    diff = np.abs(ours_s - base_s)
    return {
        "grid_months": [float(grid[0]), float(grid[-1])],
        "ibs_ours": integrated_brier(y_train, y_test, ours_s, grid),
        "ibs_baseline": integrated_brier(y_train, y_test, base_s, grid),
        "mean_abs_diff_S": float(diff.mean()),
        "max_abs_diff_mean_S": float(np.abs(ours_s.mean(axis=0) - base_s.mean(axis=0)).max()),
    }


def _forest_settings(model: Any) -> dict[str, Any]:
    return {
        "time_grid": None if model.time_grid_ is None else int(model.time_grid_.size),
        "max_samples": model.max_samples_,
        "binned": model.bin_edges_ is not None,
    }


def case_boosting(n: int, quick: bool) -> dict[str, Any]:
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis

    from riskmodel.models import GradientBoostingSurvival

    d = _design(n, min(n, 100_000))
    out = _describe(d)
    rounds = 20 if quick else 100
    params = {"n_estimators": rounds, "max_depth": 4, "learning_rate": 0.1, "subsample": 1.0}
    ours, m = _timed(lambda: GradientBoostingSurvival(**params).fit(d["X_train"], d["y_train"]))
    out["ours"] = {**m, "c": _c(d, ours.predict_risk(d["X_test"]))}
    if n <= 10_000:
        base, mb = _timed(
            lambda: GradientBoostingSurvivalAnalysis(
                n_estimators=rounds, max_depth=4, learning_rate=0.1, random_state=0
            ).fit(d["X_train"], d["y_train"])
        )
        out["baseline"] = {
            **mb,
            "c": _c(d, base.predict(d["X_test"])),
            "name": "sksurv GradientBoostingSurvivalAnalysis",
        }
    else:
        out["baseline"] = {"skipped": "scikit-survival's boosting is measured at 10,000 patients only"}
    return out


def case_cindex(n: int, quick: bool) -> dict[str, Any]:
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    from riskmodel.metrics import harrell_c

    rng = np.random.default_rng(n)
    time_ = np.round(rng.exponential(10, n), 2)
    event = rng.random(n) < 0.7
    risk = rng.normal(size=n) - 0.05 * time_
    out: dict[str, Any] = {"n": n}
    ours, m = _timed(lambda: harrell_c(event, time_, risk))
    out["ours"] = {**m, "c": ours}
    ll, ml = _timed(lambda: concordance_index(time_, -risk, event))
    out["lifelines"] = {**ml, "c": float(ll), "name": "lifelines concordance_index", "abs_diff": abs(ours - ll)}
    if n <= 20_000:
        base, mb = _timed(lambda: concordance_index_censored(event, time_, risk)[0])
        out["baseline"] = {
            **mb,
            "c": float(base),
            "name": "sksurv concordance_index_censored",
            "abs_diff": abs(ours - base),
        }
    else:  # scikit-survival keeps one n-long mask per event: O(n²) memory (70 GB at 100,000)
        out["sksurv"] = {"skipped": "O(n²) memory"}
        out["baseline"] = {**out["lifelines"], "name": "lifelines concordance_index (sksurv: O(n²) memory)"}
    return out


def case_load(kind: str, n: int, quick: bool) -> dict[str, Any]:
    """``riskmodel.cohort.load`` (read, derive, validate) of n synthetic patients against pandas'
    reader of the same file, wall and CPU time (``hot_paths.py``: CSV ≤ 3×, Parquet ≤ 2×)."""
    from hot_paths import load

    r = load(n, 1 if quick else 3)[kind]
    return {
        "n": n,
        "ours": {"seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"]},
        "baseline": {"seconds": r["baseline_seconds"], "cpu_seconds": r["baseline_cpu_seconds"], "name": r["baseline"]},
        "detail": r,
    }


def case_uno(n: int, quick: bool) -> dict[str, Any]:
    """Uno's C of n patients (τ = the 80th centile) against the previous implementation
    (scikit-survival's censoring estimator and a merge count), with Harrell's C and the CPU times
    beside it (``hot_paths.py``: each ≤ 0.2 s at 1,000,000)."""
    from hot_paths import cindex

    r = cindex(n, 1 if quick else 3)
    return {
        "n": n,
        "ours": {"seconds": r["uno"]["seconds"], "cpu_seconds": r["cpu_seconds"]["uno"], "c": r["uno"]["c"]},
        "baseline": {
            "seconds": r["uno"]["old_seconds"],
            "name": "previous Uno's C (sksurv censoring KM + merge count)",
        },
        "detail": r,
    }


def case_cox(n: int, quick: bool) -> dict[str, Any]:
    import pandas as pd
    from lifelines import CoxPHFitter

    from riskmodel.models import CoxPH

    d = _design(n, 1000)
    out = _describe(d)
    X, y = d["X_train"], d["y_train"]
    keep = X.std(axis=0) > 0
    X = X[:, keep]
    ours, m = _timed(lambda: CoxPH(penalty=0.0).fit(X, y))
    out["ours"] = {**m, "c": _c(d, ours.predict_risk(d["X_test"][:, keep]))}
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(T=y["time"], E=y["event"])
    base, mb = _timed(lambda: CoxPHFitter().fit(frame, "T", "E"))
    diff = float(np.max(np.abs(np.asarray(base.params_) - ours.coef_)))
    out["baseline"] = {**mb, "name": "lifelines CoxPHFitter (Efron)", "max_abs_coef_diff": diff}
    return out


def case_scoring(n: int, quick: bool) -> dict[str, Any]:
    """``score_frame`` (validation, features, predictions, flags, statuses) against the bare estimator
    on the built matrix, Cox as the headline and forest and boosting beside it (``score_stream.py``)."""
    from score_stream import case_frame

    with tempfile.TemporaryDirectory() as tmp:
        frame = case_frame(n, Path(tmp))
    cox = frame["cox"]
    return {
        "n": n,
        "ours": {"seconds": cox["ours_seconds"]},
        "baseline": {"seconds": cox["bare_seconds"], "name": "bare Cox predict on the built matrix"},
        "families": frame,
    }


def case_score_parquet(n: int) -> dict[str, Any]:
    """``riskmodel score`` Parquet to Parquet, streamed, against pandas + the bare estimator (``score_stream.py``)."""
    from score_stream import case_parquet, fit_model

    with tempfile.TemporaryDirectory() as tmp:
        result = case_parquet(n, Path(tmp), fit_model("cox", Path(tmp) / "model"))
    result["baseline"]["name"] = "read_parquet + features + bare Cox + to_parquet"
    return result


def case_train(quick: bool) -> dict[str, Any]:
    script = HERE / "train_default.py"
    proc = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def case_train_scale(n: int, dask: bool = False) -> dict[str, Any]:
    """``riskmodel train`` end to end on n synthetic patients (benchmarks/train_scale.py); ``dask``:
    also through a scheduler and two workers started as separate processes, metrics compared."""
    cmd = [sys.executable, str(HERE / "train_scale.py"), str(n), "--json", *(["--dask"] if dask else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def case_shap(quick: bool) -> dict[str, Any]:
    """Forest TreeSHAP against shap's PermutationExplainer (benchmarks/shap_speed.py)."""
    script = HERE / "shap_speed.py"
    cmd = [sys.executable, str(script), "--json", *(["--quick"] if quick else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    r: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "n": r["patients_explained"],
        "ours": {"seconds": r["treeshap_seconds"]},
        "baseline": {
            "seconds": r["permutation_seconds_extrapolated"],
            "name": f"shap PermutationExplainer ({r['permutation_subset']} patients timed, extrapolated)",
        },
        "detail": r,
    }


CASES: dict[str, Callable[[bool], dict[str, Any]]] = {
    **{f"forest_{n}": (lambda q, n=n: case_forest(n if not q else n // 10, q)) for n in (1_000, 10_000, 100_000)},
    **{
        f"boosting_{n}": (lambda q, n=n: case_boosting(n if not q else n // 100, q))
        for n in (10_000, 100_000, 1_000_000)
    },
    **{f"cindex_{n}": (lambda q, n=n: case_cindex(n if not q else n // 100, q)) for n in (10_000, 100_000, 1_000_000)},
    "cox_100000": lambda q: case_cox(100_000 if not q else 2_000, q),
    "uno_1000000": lambda q: case_uno(1_000_000 if not q else 20_000, q),
    **{
        f"load_{kind}_1000000": (lambda q, kind=kind: case_load(kind, 1_000_000 if not q else 2_000, q))
        for kind in ("csv", "parquet")
    },
    "scoring_100000": lambda q: case_scoring(100_000 if not q else 2_000, q),
    "score_parquet_1000000": lambda q: case_score_parquet(1_000_000 if not q else 10_000),
    "train_default": case_train,
    **{
        f"train_scale_{n}": (lambda q, n=n: case_train_scale(n if not q else n // 100))
        for n in (10_000, 100_000, 1_000_000)
    },
    "train_scale_100000_dask": lambda q: case_train_scale(100_000 if not q else 1_000, dask=True),
    "shap_forest_1000": case_shap,
}


# ----------------------------------------------------------------------------- report
def _ratio(case: dict[str, Any], key: str = "seconds") -> float:
    base, ours = case.get("baseline", {}), case.get("ours", {})
    if key not in base or key not in ours or not ours[key]:
        return math.nan
    return float(base[key] / ours[key])


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {results['machine']}. Generated by `benchmarks/run_all.py`"
        + (" (--quick: smoke sizes)" if results["quick"] else "")
        + f" on {results['date']}.",
        "",
        "Speed-up = baseline seconds / riskmodel seconds (> 1: riskmodel is faster). Peak = resident",
        "memory growth while each side ran. C = held-out Harrell C; oracle = C of the true log hazard.",
        "",
        "| case | baseline | riskmodel s | baseline s | speed-up | riskmodel peak MiB | baseline peak MiB"
        " | riskmodel C | baseline C | oracle C |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, case in results["cases"].items():
        if "error" in case:
            lines.append(f"| {name} | error: {case['error']} | | | | | | | | |")
            continue
        base, ours = case.get("baseline", {}), case.get("ours", {})
        cells = [
            name,
            base.get("name", base.get("skipped", "")),
            _fmt(ours.get("seconds")),
            _fmt(base.get("seconds")),
            _fmt(_ratio(case), "x"),
            _fmt(ours.get("peak_mib"), "", 0),
            _fmt(base.get("peak_mib"), "", 0),
            _fmt(ours.get("c"), "", 4) if "held_out_c" not in case else _c_by_endpoint(case["held_out_c"]),
            _fmt(base.get("c"), "", 4),
            _fmt(case.get("oracle_c"), "", 4) if "held_out_c" not in case else _c_by_endpoint(case["oracle_c"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Extra figures per case (single-core forest fits, differences from references) are in",
        "`benchmarks/results.json`.",
        "",
        *train_scale_lines(results["cases"]),
    ]
    return "\n".join(lines)


def _c_by_endpoint(c: dict[str, Any]) -> str:
    """``{"lc_cox": .63, "lc_rsf": .62, "os_cox": .73}`` as "LC 0.630/0.620; OS 0.730" (families in
    the order run); an oracle's ``{"lc": .73, "os": .74}`` as "LC 0.730; OS 0.740"."""
    by: dict[str, list[str]] = {}
    for key, value in c.items():
        by.setdefault(key.split("_")[0].upper(), []).append(_fmt(value, "", 3))
    return "; ".join(f"{endpoint} {'/'.join(values)}" for endpoint, values in by.items())


def train_scale_lines(cases: dict[str, Any]) -> list[str]:
    """The train-scale cases' CPU time, load and plan, and the slope of log CPU time on log n within
    the held-out plan (benchmarks/train_scale.py)."""
    runs = [c for name, c in cases.items() if name.startswith("train_scale_") and "ours" in c and "n" in c]
    if not runs:
        return []
    spec = importlib.util.spec_from_file_location("train_scale", HERE / "train_scale.py")
    assert spec is not None
    assert spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    lines = ["`riskmodel train` at scale (CPU = user + sys, workers included; load = 1-minute load average):", ""]
    for c in sorted(runs, key=lambda c: (c["n"], "dask" in c)):
        o = c["ours"]
        load = "–".join(f"{v:.1f}" for v in o.get("load", [])) or "not recorded"
        plan = {True: "held-out split", False: "cross-validation"}.get(c.get("held_out_plan"), "plan not recorded")
        dask = (
            f"; through Dask {_fmt(c['dask']['seconds'])} s wall, metrics identical: {c['dask_identical']}"
            if "dask" in c
            else ""
        )
        lines.append(
            f"- {c['n']:,} patients ({plan}): {_fmt(o['cpu_seconds'])} s CPU, {_fmt(o['seconds'])} s wall under a load "
            f"of {load}, peak {_fmt(o['peak_mib'], '', 0)} MiB{dask}"
        )
    within = [c for c in runs if c.get("held_out_plan") and "dask" not in c]
    lines += ["", f"Slope of log CPU time on log n within the held-out plan: {_fmt(scale.slope(within), '', 2)}", ""]
    return lines


def _fmt(value: Any, suffix: str = "", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}{suffix}" if abs(value) >= 100 and digits == 3 else f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (seconds, not minutes)")
    parser.add_argument("--cases", nargs="*", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.json and RESULTS.md")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # child-process entry
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(CASES[args.case](args.quick), default=float))
        return {}
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
        "cases": {},
    }
    previous = args.out / "results.json"
    if args.cases and previous.is_file():  # a partial run updates its cases and keeps the others
        old = json.loads(previous.read_text(encoding="utf-8"))
        if old.get("quick") == args.quick:
            results["cases"] = {k: v for k, v in old.get("cases", {}).items() if k in CASES}
    for name in args.cases or list(CASES):
        print(f"… {name}", file=sys.stderr, flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name, *(["--quick"] if args.quick else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            results["cases"][name] = {"error": tail[0]}
        else:
            results["cases"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {json.dumps(results['cases'][name], default=float)[:300]}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    (args.out / "RESULTS.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
