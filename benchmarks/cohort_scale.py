"""Cohort layer at scale: synthetic generation and loading, as ratios against named baselines.

Baselines, run in the same process on the same data:
- generation: drawing the same number of random values with numpy alone (n x 24 standard normals),
  the floor any generator of 24 columns pays;
- loading: ``pandas.read_csv`` of the same CSV file, so the ratio is the price of riskmodel's
  type coercion, derivation and validation on top of reading;
- memory: bytes per patient of the typed cohort against a float64 matrix of the same shape.

Run: ``python benchmarks/cohort_scale.py [--sizes 10000 100000 1000000]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from riskmodel.cohort import load
from riskmodel.cohort.load import write_csv
from riskmodel.cohort.synthetic import generate


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'n':>9} | {'generate s':>10} {'numpy s':>8} {'ratio':>6} | {'load s':>7} {'read_csv s':>10} "
        f"{'ratio':>6} | {'bytes/pt':>8} {'float64':>7} {'ratio':>6}"
    )
    for n in args.sizes:
        gen = best_of(lambda n=n: generate(n, seed=1), args.repeats)
        floor = best_of(lambda n=n: rng.standard_normal((n, 24)), args.repeats)
        frame = generate(n, seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cohort.csv"
            write_csv(frame, path)
            loaded = best_of(lambda path=path: load(path), args.repeats)
            read = best_of(lambda path=path: pd.read_csv(path, dtype=str), args.repeats)
        per_patient = frame.memory_usage(deep=True).sum() / n
        dense = 8 * frame.shape[1]
        print(
            f"{n:>9} | {gen:>10.3f} {floor:>8.3f} {gen / floor:>6.1f} | {loaded:>7.3f} {read:>10.3f} "
            f"{loaded / read:>6.2f} | {per_patient:>8.0f} {dense:>7} {per_patient / dense:>6.2f}"
        )


if __name__ == "__main__":
    main()
