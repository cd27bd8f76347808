"""Batch scoring at scale (issue 21 §3): the scoring overhead over the bare estimator, and a Parquet
file of n patients scored into Parquet end to end, with the peak memory of the process.

Two measurements, each side by side with its baseline in one run:

* ``frame``: 100,000 patients (raw cells, as ``read_patients`` gives them) scored at
  ``score_frame`` level, what ``riskmodel score`` does minus file I/O. Timed on each side:

  - **riskmodel** (``ours_seconds``): ``score_frame(model, df, [6, 12, 24])`` on the raw patients
    frame: the landmark rule, validation against the contract (every cell, every row's problems),
    the feature matrix, ``predict_risk`` and ``predict_survival`` at the 3 horizons, flags
    (outside the development data), statuses, risk groups, and each patient's salted SHA-256
    pseudonym; the table of the score columns built.
  - **bare** (``bare_seconds``): the fitted estimator's ``predict_risk`` and ``predict_survival``
    at the same 3 horizons on the already-built feature matrix (a contiguous float64 array).

  The ratio is ours / bare (issue 21's target: ≤ 1.5×); ``ratio_to_one_pass`` is against the
  estimator's own one-pass ``predict_risk_and_survival`` (the same numbers, what ``score_frame``
  calls), the stricter baseline. Cox, random survival forest and gradient boosting, each fitted
  on 2,000 synthetic patients (the "full" feature set). Beside it, each step of riskmodel's time
  timed alone (validation, features, pseudonyms), and, labelled as such, the ratio with the
  pseudonyms' or the validation's time taken out (``ratio_without_pseudonyms``,
  ``ratio_without_validation``: the SHA-256 per patient is the privacy rule's cost, and checking
  every input is not optional; the target is not redefined by them), and ``floor_ratio``: what
  validation, pseudonyms and the bare prediction alone take, over the bare prediction. CPU times
  (``time.process_time``, every thread) beside the wall times: on a loaded machine the steadier.
* ``parquet``: ``python -m riskmodel score --model <Cox> --patients big.parquet --out
  scores.parquet`` as a subprocess on n synthetic patients (200,000 and 1,000,000), streamed at the
  default 100,000 rows a chunk; wall time and the process's peak RSS (``ru_maxrss`` of a wrapper's
  only child). Beside it: the same command with one chunk for the whole file (``--chunk-rows``
  larger than the file: the whole table in memory, as a non-streamed scoring holds it), and the
  baseline ``pandas.read_parquet`` + the model's feature transform + the bare estimator's
  predictions + ``DataFrame.to_parquet`` (no validation, statuses or flags) in a subprocess.

Run: ``python benchmarks/score_stream.py [--quick] [--json]``. Wall times on a shared machine are
inflated by its load; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HORIZONS = [6.0, 12.0, 24.0]
FAMILIES = ("cox", "rsf", "gbm")
WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "t = time.perf_counter() - t0\n"
    "print(json.dumps({'rc': p.returncode, 'seconds': t, "
    "'peak_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 'stderr': p.stderr[-2000:]}))\n"
)
BASELINE = (
    "import sys, warnings\n"
    "import pandas as pd\n"
    "from riskmodel.scoring import RiskModel\n"
    "warnings.simplefilter('ignore')\n"
    "model = RiskModel.load(sys.argv[1])\n"
    "df = pd.read_parquet(sys.argv[2])\n"
    "Z = model.features.transform(df)\n"
    "out = model.estimator.predict_survival(Z, [6.0, 12.0, 24.0])\n"
    "out.columns = [f'S_{t:g}' for t in out.columns]\n"
    "out.insert(0, 'risk_score', model.estimator.predict_risk(Z))\n"
    "out.to_parquet(sys.argv[3])\n"
)


def fit_model(family: str, folder: Path, n_train: int = 2000) -> Path:
    """A model of ``family`` on n_train synthetic patients (OS, 3-month landmark, "full" features), saved."""
    from riskmodel.cohort import survival_data
    from riskmodel.cohort.synthetic import generate
    from riskmodel.features import ClinicalFeatures
    from riskmodel.models import CoxPH, GradientBoostingSurvival, SurvivalForest
    from riskmodel.scoring import RiskModel

    estimators: dict[str, Any] = {
        "cox": lambda: CoxPH(),
        "rsf": lambda: SurvivalForest(n_estimators=100, random_state=0),
        "gbm": lambda: GradientBoostingSurvival(),
    }
    data = survival_data(generate(n_train, seed=5), "os", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("full", landmark_months=3).fit(data.X)
    estimator = estimators[family]().fit(features.transform(data.X), data.y)
    model = RiskModel.from_training(
        endpoint="os",
        family=family,
        experiment="benchmark",
        landmark_months=3,
        horizons=HORIZONS,
        features=features,
        estimator=estimator,
        X=data.X,
    )
    return model.save(folder / family)


def patients_frame(n: int, seed: int = 7) -> Any:
    """n synthetic patients without outcomes, as raw cells with row numbers (``read_patients``'s form)."""
    import pandas as pd

    from riskmodel.cohort.synthetic import generate

    df = generate(n, seed=seed).drop(columns=["os_months", "os_event", "lc_months", "lc_event"])
    df.index = pd.RangeIndex(1, n + 1, name="row")
    return df


CPU: dict[str, float] = {}  # the CPU time (all threads) of the last _best's best run, by label


def _best(fn: Any, repeats: int, label: str = "") -> tuple[Any, float]:
    """``fn()``'s value and its best wall time over ``repeats``; its best CPU time goes to CPU[label]."""
    best, cpu, value = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    CPU[label] = cpu
    return value, best


def case_frame(n: int, folder: Path, repeats: int = 3) -> dict[str, Any]:
    """score_frame against the bare estimator on the built matrix, for each family (best of ``repeats``)."""
    from riskmodel.scoring import RiskModel
    from riskmodel.scoring.frame import identities, score_frame

    df = patients_frame(n)
    out: dict[str, Any] = {"n": n, "horizons": HORIZONS}
    for family in FAMILIES:
        model = RiskModel.load(fit_model(family, folder))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scored, ours = _best(lambda m=model: score_frame(m, df, HORIZONS), repeats, "ours")
            data, validate = _best(lambda m=model: m.validate_patients(df, with_id=True), repeats, "validation")
            Z, features = _best(lambda m=model, d=data: m.features.transform(d), repeats, "features")
            _, names = _best(lambda m=model: identities(df, m.id_column), repeats, "pseudonyms")
            Z = np.ascontiguousarray(Z, dtype=float)
        est = model.estimator
        _, bare = _best(lambda e=est, z=Z: (e.predict_risk(z), e.predict_survival(z, HORIZONS)), repeats, "bare")
        if hasattr(est, "predict_risk_and_survival"):  # absent before riskmodel had it (a run on older code)
            _, pair = _best(lambda e=est, z=Z: e.predict_risk_and_survival(z, HORIZONS), repeats, "bare_pair")
        else:
            pair = bare
        cpu = dict(CPU)
        out[family] = {
            "ours_seconds": ours,
            "bare_seconds": bare,
            "bare_one_pass_seconds": pair,
            "ratio": ours / bare,
            "ratio_to_one_pass": ours / pair,
            "validation_seconds": validate,
            "features_seconds": features,
            "pseudonyms_seconds": names,
            "ratio_without_pseudonyms": (ours - names) / bare,
            "ratio_without_validation": (ours - validate) / bare,
            "floor_ratio": (validate + names + bare) / bare,
            "cpu_seconds": cpu,
            "cpu_ratio": cpu["ours"] / cpu["bare"],
            "cpu_ratio_without_validation": (cpu["ours"] - cpu["validation"]) / cpu["bare"],
            "scored": int((scored["status"] != "error").sum()),
        }
    return out


def _run(args: list[str]) -> dict[str, Any]:
    """Wall time and peak RSS (MiB) of ``args`` run as the only child of a fresh wrapper process."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] not in (0, 1):
        raise RuntimeError(f"{args[:4]} failed: {result['stderr']}")
    return result


def case_parquet(n: int, folder: Path, model_dir: Path) -> dict[str, Any]:
    """n patients from Parquet to Parquet: streamed, in one chunk, and the pandas + bare baseline."""
    big = folder / f"patients_{n}.parquet"
    if not big.exists():
        patients_frame(n).to_parquet(big, index=False)
    score = [sys.executable, "-m", "riskmodel", "score", "--model", str(model_dir), "--patients", str(big)]
    streamed = _run([*score, "--out", str(folder / "streamed.parquet")])
    whole = _run([*score, "--out", str(folder / "whole.parquet"), "--chunk-rows", str(n + 1)])
    baseline = _run([sys.executable, "-c", BASELINE, str(model_dir), str(big), str(folder / "bare.parquet")])
    for r in (streamed, whole, baseline):
        r.pop("stderr", None)
    return {"n": n, "ours": streamed, "one_chunk": whole, "baseline": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (2,000 and 20,000 patients)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--cases", nargs="*", default=["frame", "parquet"])
    args = parser.parse_args()
    results: dict[str, Any] = {"load": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="rm-score-stream-") as tmp:
        folder = Path(tmp)
        if "frame" in args.cases:
            results["frame"] = case_frame(2_000 if args.quick else 100_000, folder)
        if "parquet" in args.cases:
            model_dir = fit_model("cox", folder / "parquet_model")
            sizes = (2_000, 20_000) if args.quick else (200_000, 1_000_000)
            results["parquet"] = [case_parquet(n, folder, model_dir) for n in sizes]
    results["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results))
        return
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
