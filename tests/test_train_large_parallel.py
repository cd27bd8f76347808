"""A large cohort's models developed side by side on worker processes when they fit in memory
(riskmodel.workflow.footprint, issue 21): the rule picks two workers when the memory allows and one
(the serial train) when not, and a large cohort's every metric is the serial development's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import riskmodel.workflow.footprint as footprint
from riskmodel.cohort.synthetic import generate
from riskmodel.config import ExperimentConfig, load_experiment
from riskmodel.models.forest import LARGE_COHORT
from riskmodel.workflow.families import Developments, Unit, family_jobs
from riskmodel.workflow.footprint import (
    PROCESS_BYTES,
    USABLE_SHARE,
    available_memory,
    forest_bytes,
    side_by_side,
)
from riskmodel.workflow.plan import scheme_for
from riskmodel.workflow.prepare import load_cohort, prepare_endpoints, sample_size
from riskmodel.workflow.record import RunContext
from tests.conftest import REPO

GIB = 2**30


def endpoint(n: int, competing: bool) -> Any:
    """A stand-in for a PreparedEndpoint: what the rule reads of it (its patients, competing or not)."""
    return SimpleNamespace(data=SimpleNamespace(y=np.zeros(n), X=pd.DataFrame({"d90_gy": [30.0]})), competing=competing)


def test_available_memory_is_memavailable_of_proc_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12345678 kB\n")
    assert available_memory(meminfo) == 12345678 * 1024
    # no such file: the free pages of sysconf, or None; never an error
    other = available_memory(tmp_path / "absent")
    assert other is None or other > 0


def test_a_forest_grows_with_the_patients_each_tree_samples_and_once_per_cause() -> None:
    # 200 trees of 30·√n patients, 850 bytes each: 40,000 patients → 6,000 a tree → 1.02e9 bytes
    assert forest_bytes(40_000) == 200 * 6000 * 850
    assert forest_bytes(40_000, causes=2) == 2 * forest_bytes(40_000)
    assert forest_bytes(400) == 200 * 400 * 850  # a tree never samples more patients than there are
    # the 40,000-patient train's forests as saved (skops, node arrays): 959 MB (OS), 745 MB a cause (LC,
    # 29,014 patients); the estimate must not be below what was measured
    assert forest_bytes(39_978) >= 959e6
    assert forest_bytes(29_014) >= 756e6


def test_two_workers_when_both_models_and_this_process_fit_and_one_when_not() -> None:
    prepared = {"lc": endpoint(72_500, competing=True), "os": endpoint(99_900, competing=False)}
    lc, os_ = forest_bytes(72_500, 2), forest_bytes(99_900)
    need = (PROCESS_BYTES + 2 * lc) + (PROCESS_BYTES + 2 * os_) + (lc + os_) + lc  # two workers, this process
    assert side_by_side(prepared, 2, available=int(need / USABLE_SHARE) + 1) == 2
    assert side_by_side(prepared, 2, available=int(need / USABLE_SHARE) - 1) == 1
    assert side_by_side(prepared, 2, available=64 * GIB) == 2
    # a million patients: the competing forest alone is ~8 GiB, two do not fit in 24 GiB
    million = {"lc": endpoint(725_000, competing=True), "os": endpoint(999_000, competing=False)}
    assert side_by_side(million, 2, available=24 * GIB) == 1
    assert side_by_side(million, 4, available=200 * GIB) == 4
    big_lc, big_os = forest_bytes(725_000, 2), forest_bytes(999_000)
    two = (PROCESS_BYTES + 2 * big_lc) + (PROCESS_BYTES + 2 * big_os) + (big_lc + big_os) + big_lc
    assert two > 40 * GIB  # a third and fourth worker add a process without a forest each
    assert side_by_side(million, 4, available=int((two + PROCESS_BYTES / 2) / USABLE_SHARE)) == 2
    assert side_by_side(million, 4, available=int((two + PROCESS_BYTES * 1.5) / USABLE_SHARE)) == 3
    # one endpoint: the second worker develops a model without a forest (Cox, boosting)
    alone = {"os": endpoint(99_900, competing=False)}
    need = (PROCESS_BYTES + 2 * os_) + PROCESS_BYTES + 2 * os_
    assert side_by_side(alone, 2, available=int(need / USABLE_SHARE) + 1) == 2
    assert side_by_side(alone, 2, available=int(need / USABLE_SHARE) - 1) == 1
    assert side_by_side(prepared, 1, available=64 * GIB) == 1
    # a missing value: the models may be multiply imputed (m forests each), which the rule cannot count
    prepared["os"].data.X = pd.DataFrame({"d90_gy": [30.0, float("nan")]})
    assert side_by_side(prepared, 2, available=64 * GIB) == 1


def test_family_jobs_reads_the_memory_for_a_large_cohort_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    large = {"lc": endpoint(LARGE_COHORT * 50, competing=True), "os": endpoint(LARGE_COHORT * 60, competing=False)}
    monkeypatch.setattr(footprint, "available_memory", lambda: 64 * GIB)
    assert family_jobs(large, 6) == 2
    assert family_jobs(large, 1) == 1  # one model: nothing to run beside it
    monkeypatch.setattr(footprint, "available_memory", lambda: 2 * GIB)
    assert family_jobs(large, 6) == 1
    monkeypatch.setattr(footprint, "available_memory", lambda: None)  # unreadable: not enough
    assert family_jobs(large, 6) == 1
    small = {"os": endpoint(LARGE_COHORT - 1, competing=False)}
    assert family_jobs(small, 6) == 2  # a small cohort's models are small: one worker per core
    monkeypatch.setattr("riskmodel.workflow.families.current_cluster", lambda: object())
    monkeypatch.setattr(footprint, "available_memory", lambda: 64 * GIB)
    assert family_jobs(large, 6) == 1  # on a cluster the folds go there


def large_config() -> ExperimentConfig:
    raw = load_experiment(REPO / "experiments" / "default.yaml").model_dump()
    raw["evaluation"] = {"holdout": 0.2, "bootstrap": 0}  # the large cohort's plan: one held-out split
    raw["models"] = {
        "cox": {"penalty": 0.1},
        "rsf": {"n_estimators": 10, "min_samples_leaf": 3},
        "gbm": {"backend": "xgboost", "n_estimators": 20, "learning_rate": 0.05, "max_depth": 2},
    }
    return ExperimentConfig.model_validate(raw, strict=False)


@pytest.mark.slow
def test_a_large_cohorts_models_on_two_workers_give_every_metric_of_the_serial_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = large_config()
    # 2,000 patients: a large cohort (the forest's speed settings and threads, a held-out split) after the landmark
    cohort = load_cohort(config, generate(2 * LARGE_COHORT, seed=3))
    prepared = prepare_endpoints(config, cohort)
    ctx = RunContext.create(config, cohort)
    assert all(len(p.data.y) >= LARGE_COHORT for p in prepared.values())
    sizes = {ep: sample_size(config, p) for ep, p in prepared.items()}
    families = config.models.enabled()
    pairs = [("lc", "rsf"), ("lc", "gbm"), ("os", "cox")]  # the competing forest (threads), xgboost, Cox
    units = [
        Unit(ep, fam, families[fam].model_dump(), scheme_for(config, ep, fam, int(prepared[ep].data.y["event"].sum())))
        for ep, fam in pairs
    ]
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    metrics = {}
    for memory in (0, 64 * GIB):  # none: the serial development; plenty: two workers
        monkeypatch.setattr(footprint, "available_memory", lambda memory=memory: memory)
        jobs = family_jobs(prepared, len(units))
        assert jobs == (2 if memory else 1)
        with Developments(ctx, prepared, sizes, units, jobs) as developments:
            metrics[jobs] = [developments.get(i, lambda: None)[0].metrics for i in range(len(units))]
    for (ep, fam), serial, parallel in zip(pairs, metrics[1], metrics[2], strict=True):
        assert "harrell_c_mean" in serial, (ep, fam)
        assert any(k.startswith("shap_mean_abs") for k in serial), (ep, fam)
        # tolerance 0: the same floats, every one (NaN where the serial development has NaN)
        np.testing.assert_equal(parallel, serial, err_msg=f"{ep} {fam}")
