"""Web calculator latency: `riskmodel serve` answering one patient, end to end over loopback HTTP.

Setup (issue 20 §4): an LC Cox and an OS random survival forest (riskmodel's default settings) at
the 3-month landmark, trained on the bundled cohort and saved; `riskmodel serve --model LC --model
OS` started as its own process on 127.0.0.1; ``--requests`` POSTs to ``/api/predict`` sent one
after the other (a third an ordinary patient, a third PD at 3 months, a third D90 = 260 Gy),
each timed from send to the whole JSON answer: both models' status, horizon probabilities with
bands, curve, SHAP contributions and the D90 what-if.

* **riskmodel**: the request's wall time (median, 95th percentile, max); target < 1 s on 2 cores.
* **baseline**: ``RiskModel.score`` of the same patient by both models, in this process (the bare
  prediction, without bands, SHAP, what-if or HTTP); the ratio is what a full answer costs.

The server is ended with its process group; traffic goes to the loopback address only, and the
number of requests is bounded.

Run: ``python benchmarks/serve_latency.py [--quick] [--requests N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PATIENT: dict[str, Any] = {
    "t_stage": "T2",
    "n_stage": "N1",
    "m_stage": "M0",
    "recurrence_interval_months": 12.5,
    "lesion_volume_cm3": 17.25,
    "d90_gy": 115.0,
    "response_3mo": "PR",
}
CASES = ({}, {"response_3mo": "PD"}, {"d90_gy": 260.0})


def _train(folder: Path) -> list[Path]:
    from riskmodel.cohort import load_bundled, survival_data
    from riskmodel.features import ClinicalFeatures
    from riskmodel.models import CoxPH, SurvivalForest
    from riskmodel.scoring import RiskModel

    cohort = load_bundled()
    out = []
    for endpoint, estimator in (("lc", CoxPH()), ("os", SurvivalForest(random_state=0))):
        sd = survival_data(cohort, endpoint, landmark_months=3, feature_columns=["response_3mo"])
        features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = estimator.fit(features.transform(sd.X), sd.y)
        model = RiskModel.from_training(
            endpoint=endpoint,
            family="cox" if endpoint == "lc" else "rsf",
            experiment="benchmark",
            landmark_months=3,
            horizons=[6.0, 12.0],
            features=features,
            estimator=fitted,
            X=sd.X,
        )
        out.append(model.save(folder / endpoint))
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    return time.perf_counter() - start, answer


def _baseline(folders: list[Path], repeats: int) -> float:
    from riskmodel.errors import own_warnings_silenced
    from riskmodel.scoring import RiskModel

    models = [RiskModel.load(f) for f in folders]
    times = []
    for k in range(repeats):
        row = {**PATIENT, **CASES[k % len(CASES)]}
        frame = pd.DataFrame([{"patient_id": "b", **{key: str(v) for key, v in row.items()}}])
        start = time.perf_counter()
        with own_warnings_silenced():
            for m in models:
                m.score(frame)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:] if len(times) > 1 else times))


def run(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folders = _train(Path(tmp))
        port = _port()
        argv = [sys.executable, "-m", "riskmodel", "serve", "--port", str(port)]
        for f in folders:
            argv += ["--model", str(f)]
        process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}/"
        try:
            start = time.perf_counter()
            while True:
                try:
                    urllib.request.urlopen(url + "api/inputs", timeout=2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.perf_counter() - start > 180:
                        raise RuntimeError("riskmodel serve did not start") from None
                    time.sleep(0.2)
            ready = time.perf_counter() - start
            latencies, statuses = [], []
            for k in range(requests):
                seconds, answer = _post(url + "api/predict", {**PATIENT, **CASES[k % len(CASES)]})
                latencies.append(seconds)
                statuses.append("/".join(m["status"] for m in answer["models"]))
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        baseline = _baseline(folders, max(4, requests // 3))
    lat = np.asarray(latencies)
    return {
        "requests": requests,
        "startup_seconds": round(ready, 2),
        "median_seconds": round(float(np.median(lat)), 3),
        "p95_seconds": round(float(np.percentile(lat, 95)), 3),
        "max_seconds": round(float(lat.max()), 3),
        "baseline_score_seconds": round(baseline, 3),
        "ratio_median_to_baseline": round(float(np.median(lat)) / baseline, 1),
        "statuses": sorted(set(statuses)),
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="6 requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(6 if args.quick else min(max(args.requests, 1), 300))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"riskmodel serve, LC Cox + OS forest, {result['requests']} requests on {result['cores']} cores: "
            f"median {result['median_seconds']} s, p95 {result['p95_seconds']} s, max {result['max_seconds']} s "
            f"(server ready in {result['startup_seconds']} s, models verified and warmed up)"
        )
        print(
            f"baseline RiskModel.score, both models, one patient: {result['baseline_score_seconds']} s; "
            f"ratio {result['ratio_median_to_baseline']}x (bands, curve, SHAP, what-if and HTTP)"
        )
        print("statuses seen (LC/OS):", "; ".join(result["statuses"]))
    return result


if __name__ == "__main__":
    main()
