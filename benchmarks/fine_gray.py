"""Fine-Gray at scale: riskmodel's vectorised fit against lifelines on Geskus's expanded data.

Data: :func:`riskmodel.cohort.synthetic.fine_gray_sample` (the Fine-Gray model is true), 5 standard
normal covariates, continuous event times (no ties, so Breslow and Efron agree), and censoring at
one of 20 administrative dates (staggered entry), so the censoring distribution G changes at 20
times only and the expansion stays a manageable size.

* **riskmodel**: :func:`riskmodel.stats.fine_gray` on (X, time, cause): the weighted risk sets as
  cumulative sums, Fine & Gray's sandwich variance included.
* **baseline**: lifelines ``CoxPHFitter(weights_col=..., entry_col=...)`` on the counting-process
  data of Geskus (2011): each patient with a competing event keeps a row (0, T_i] with weight 1 and
  gets rows (T_i, b_1], (b_1, b_2], … up to the last event time, split where G(t-) changes, each
  with weight G(t-)/G(T_i-). Built once, outside the timing; its row count is reported. lifelines
  gives the same coefficients; its default variance is the model-based one (``robust=True`` is
  timed only with ``--robust``: a sandwich without Fine & Gray's censoring term).

Reported: both times, their ratio, the max |coef difference|, the expansion's rows.

Run: ``python benchmarks/fine_gray.py [--n 100000] [--baseline-max 20000] [--quick] [--robust] [--json]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.synthetic import fine_gray_sample
from riskmodel.stats import fine_gray

BETA = np.array([0.5, -0.5, 0.25, 0.1, -0.2])
CENSORING_DATES = 20


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine-Gray-true data with administrative censoring at one of 20 dates."""
    X, event_time, cause = fine_gray_sample(n, BETA, seed=seed, censoring_rate=1e-9)
    rng = np.random.default_rng(seed + 1)
    dates = np.quantile(event_time, np.linspace(0.3, 0.98, CENSORING_DATES))
    censor = rng.choice(dates, n)
    observed = np.minimum(event_time, censor)
    return X, observed, np.where(event_time <= censor, cause, 0).astype(np.int8)


def expand(X: np.ndarray, time_: np.ndarray, cause: np.ndarray) -> pd.DataFrame:
    """Geskus's weighted counting-process rows (start, stop, event, weight, covariates).

    After a competing event at T_i the patient stays at risk on (lo, hi] pieces cut at the
    censoring times, with weight G(lo)/G(T_i-): G(t-) is G(lo) everywhere on such a piece.
    """
    uniq, counts = np.unique(time_, return_counts=True)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    n_cens = np.add.reduceat((cause[np.argsort(time_, kind="stable")] == 0).astype(float), first)
    g_after = np.cumprod(1 - n_cens / (len(time_) - first))
    g_before = np.r_[1.0, g_after[:-1]]
    last_event = time_[cause == 1].max()
    cuts = uniq[(n_cens > 0) & (uniq < last_event)]
    comp = np.flatnonzero((cause == 2) & (time_ < last_event))
    t_comp = time_[comp]
    g_own = g_before[np.searchsorted(uniq, t_comp)]
    base = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    rows = [base.assign(start=0.0, stop=time_, event=(cause == 1).astype(int), weight=1.0)]
    for k in range(len(cuts) + 1):
        lo = np.maximum(t_comp, cuts[k - 1]) if k else t_comp
        hi = np.full(len(comp), cuts[k] if k < len(cuts) else last_event)
        keep = hi > lo
        weight = g_after[np.searchsorted(uniq, lo[keep])] / g_own[keep]
        rows.append(base.iloc[comp[keep]].assign(start=lo[keep], stop=hi[keep], event=0, weight=weight))
    return pd.concat(rows, ignore_index=True)


def run(n: int, robust: bool = False, seed: int = 0, baseline_max: int = 20_000) -> dict[str, Any]:
    X, time_, cause = sample(n, seed)
    start = time.perf_counter()
    fit = fine_gray(X, time_, cause)
    ours = time.perf_counter() - start
    rows = expand(X, time_, cause)
    result: dict[str, Any] = {
        "n": n,
        "covariates": X.shape[1],
        "causes": {str(k): int(v) for k, v in zip(*np.unique(cause, return_counts=True), strict=True)},
        "expanded_rows": len(rows),
        "riskmodel": {"seconds": ours, "n_iter": fit.n_iter, "coef": fit.coef.tolist(), "se": fit.se.tolist()},
        "max_abs_coef_error_vs_truth": float(np.abs(fit.coef - BETA).max()),
    }
    name = f"lifelines CoxPHFitter(weights_col, entry_col, robust={robust})"
    if n > baseline_max:
        # lifelines' delayed-entry path took 25 s at 10,000 patients and had not finished after 15 min at 100,000
        result["baseline"] = {"name": name, "skipped": f"n > --baseline-max {baseline_max:,}"}
        return result
    from lifelines import CoxPHFitter

    cph = CoxPHFitter()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns that non-integer weights need robust=True
        cph.fit(rows, duration_col="stop", event_col="event", entry_col="start", weights_col="weight", robust=robust)
    theirs = time.perf_counter() - start
    result["baseline"] = {"name": name, "seconds": theirs}
    result["ratio"] = theirs / ours
    result["max_abs_coef_diff"] = float(np.abs(cph.params_.to_numpy() - fit.coef).max())
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run on 2,000 patients")
    parser.add_argument("--robust", action="store_true", help="lifelines' robust sandwich too")
    parser.add_argument("--baseline-max", type=int, default=20_000, help="skip lifelines above this n")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(2_000 if args.quick else args.n, robust=args.robust, baseline_max=args.baseline_max)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        base = result["baseline"]
        timing = base.get("skipped") or f"{base['seconds']:.2f} s, ratio {result['ratio']:.1f}"
        diff = f", max |coef diff| {result['max_abs_coef_diff']:.1e}" if "ratio" in result else ""
        print(
            f"n={result['n']:,} ({result['expanded_rows']:,} expanded rows): riskmodel "
            f"{result['riskmodel']['seconds']:.2f} s; {base['name']}: {timing}{diff}"
        )
    return result


if __name__ == "__main__":
    main()
