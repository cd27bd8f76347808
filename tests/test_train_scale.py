"""benchmarks/train_scale.py's helpers: the plan read back from train's log, the growth slope, the
process-tree memory sampler, and run_all.py's train-scale lines (the runs themselves take minutes:
run_all.py's cases, not tests)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from riskmodel.workflow.plan import EvaluationPlan, Scheme

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scale():  # type: ignore[no-untyped-def]
    return _load("train_scale")


def _plan_text(lc_events: int, os_events: int) -> str:
    """The plan exactly as ``train`` prints it (workflow/plan.py), for the default rule."""
    schemes = {}
    for endpoint, events in (("lc", lc_events), ("os", os_events)):
        splits = 0 if events >= 10_000 else 5
        for family in ("cox", "rsf", "gbm"):
            schemes[endpoint, family] = Scheme(endpoint, family, events, splits, 1, 0.2 if not splits else 0.0, 0, "x")
    return EvaluationPlan("auto", schemes).describe()


def test_the_plan_is_read_back_from_trains_log_and_classified_by_its_own_wording(scale) -> None:  # type: ignore[no-untyped-def]
    log = "loading\n" + _plan_text(11_614, 28_448) + "\ntrain: 1/12 fits (8%), LC cox, elapsed 0:00:36\n"
    plan = scale.plan_lines(log)
    assert plan[0].startswith("evaluation plan (auto): 2 endpoint(s) × 3 families = 6 models")
    assert len(plan) == 7  # the heading and six models; the progress line is not part of it
    assert scale.held_out_plan(plan)
    # 30,000 patients: 8,587 LC events, cross-validated, so the train spans two plans
    assert not scale.held_out_plan(scale.plan_lines(_plan_text(8_587, 21_325)))
    assert not scale.held_out_plan(scale.plan_lines("no plan printed"))


def test_slope_recovers_a_known_power_law_and_needs_two_sizes(scale) -> None:  # type: ignore[no-untyped-def]
    runs = [{"n": n, "ours": {"cpu_seconds": 7.0 * n**0.62, "seconds": 3.0 * n**0.9}} for n in (4e4, 1e5, 1e6)]
    assert scale.slope(runs) == pytest.approx(0.62, abs=1e-9)
    assert scale.slope(runs, "seconds") == pytest.approx(0.9, abs=1e-9)
    assert math.isnan(scale.slope(runs[:1]))


def test_saved_results_are_read_from_json_lines_and_from_run_alls_results(scale, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = {"n": 300_000, "ours": {"cpu_seconds": 900.0}, "held_out_plan": True}
    b = {"n": 40_000, "ours": {"cpu_seconds": 300.0}, "held_out_plan": True}
    lines = tmp_path / "runs.jsonl"
    lines.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    whole = tmp_path / "results.json"
    whole.write_text(json.dumps({"cases": {"train_scale_1000000": {**a, "n": 1_000_000}, "forest_1000": {"x": 1}}}))
    assert [r["n"] for r in scale.read_results([lines, whole])] == [40_000, 300_000, 1_000_000]


_CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    block = b"x" * (150 * 2**20)  # written, so resident
    grandchild = subprocess.Popen([sys.executable, "-c", "b = b'x' * (150 * 2**20); import time; time.sleep(3)"])
    grandchild.wait()
    """
)


def test_the_tree_sampler_sums_a_process_and_its_descendants(scale) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-c", _CHILD])
    with scale.TreeRss(proc.pid, every=0.2) as tree:
        proc.wait()
    # each process alone holds ~150 MiB (plus the interpreter); only the sum of both exceeds 290
    assert tree.peak / 2**20 > 290


def test_run_all_shows_train_scale_c_by_endpoint_and_the_slope_within_the_held_out_plan() -> None:
    run_all = _load("run_all")

    def case(n: int, cpu: float, held_out: bool) -> dict[str, object]:
        return {
            "n": n,
            "ours": {"seconds": 2 * cpu, "cpu_seconds": cpu, "peak_mib": 2000.0, "load": [5.0, 6.0]},
            "held_out_plan": held_out,
            "held_out_c": {"lc_cox": 0.633, "lc_rsf": 0.622, "os_cox": 0.728},
            "oracle_c": {"lc": 0.730, "os": 0.742},
        }

    # 10,000 is cross-validated (a different plan): left out of the slope, which is then exactly 0.5
    cases = {
        "train_scale_10000": case(10_000, 256.0, False),
        "train_scale_40000": case(40_000, 100.0, True),
        "train_scale_4000000": case(4_000_000, 1000.0, True),
    }
    text = run_all.markdown({"machine": "m", "date": "d", "quick": False, "cases": cases})
    assert "| LC 0.633/0.622; OS 0.728 | – | LC 0.730; OS 0.742 |" in text
    assert "Slope of log CPU time on log n within the held-out plan: 0.50" in text
    assert "- 10,000 patients (cross-validation): 256 s CPU, 512 s wall under a load of 5.0–6.0" in text
