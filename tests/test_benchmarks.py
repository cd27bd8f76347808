"""The benchmark suite runs end to end at smoke sizes (timings themselves are never asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


def _benchmark(name: str):  # type: ignore[no-untyped-def]
    """Import ``benchmarks/<name>.py`` (not a package) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass in it looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_all():  # type: ignore[no-untyped-def]
    return _benchmark("run_all")


def test_quick_run_writes_results_with_ratios_and_oracle(run_all, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_all.main(["--quick", "--cases", "cindex_10000", "forest_1000", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    cindex = results["cases"]["cindex_10000"]
    assert cindex["baseline"]["abs_diff"] <= 1e-12
    assert cindex["lifelines"]["abs_diff"] <= 1e-12
    forest = results["cases"]["forest_1000"]
    assert 0.5 < forest["ours"]["c"] <= forest["oracle_c"] + 0.05
    assert forest["baseline"]["seconds"] > 0
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| forest_1000 | sksurv RandomSurvivalForest |" in table


def test_markdown_shows_skipped_baselines_and_errors(run_all) -> None:  # type: ignore[no-untyped-def]
    text = run_all.markdown(
        {
            "machine": "m",
            "date": "d",
            "quick": False,
            "cases": {
                "a": {"ours": {"seconds": 1.0}, "baseline": {"skipped": "too slow"}},
                "b": {"error": "boom"},
            },
        }
    )
    assert "| a | too slow | 1.000 | – | – |" in text
    assert "| b | error: boom |" in text


def test_shap_speed_smoke_run_reports_the_comparison(run_all, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_all.main(["--quick", "--cases", "shap_forest_1000", "--out", str(tmp_path)])
    case = json.loads((tmp_path / "results.json").read_text())["cases"]["shap_forest_1000"]
    detail = case["detail"]
    assert detail["local_accuracy_treeshap"] < 1e-6
    assert detail["local_accuracy_permutation"] < 1e-6
    # shap's permutation explainer estimates the same interventional values riskmodel enumerates exactly
    assert detail["max_abs_diff_permutation_vs_exact_interventional"] < 0.1 * detail["risk_scale_sd"]
    # path-dependent TreeSHAP answers another question (its own value function), but not a wild one
    assert detail["max_abs_diff_treeshap_vs_permutation"] < detail["risk_scale_sd"]
    assert case["baseline"]["name"].startswith("shap PermutationExplainer")
    assert "shap_forest_1000" in (tmp_path / "RESULTS.md").read_text()


@pytest.fixture(scope="module")
def public():  # type: ignore[no-untyped-def]
    return _benchmark("public_datasets")


def test_public_benchmark_edits_only_the_bootstrap_line_of_what_init_writes(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from riskmodel.config import load_experiment
    from riskmodel.workflow.init import infer_experiment

    data, frame = public.export("veterans", tmp_path)
    out = tmp_path / "veterans.yaml"
    infer_experiment(data, time="time", event="status", time_unit="days", out=out)
    before = out.read_text()
    text, edits = public.edit_experiment(before, None)
    assert edits == ["  bootstrap: 200 -> bootstrap: 0"]
    changed = [(a, b) for a, b in zip(before.splitlines(), text.splitlines(), strict=True) if a != b]
    assert changed == [("  bootstrap: 200", "  bootstrap: 0")]
    out.write_text(text)
    config = load_experiment(out)
    assert config.evaluation.bootstrap == 0
    assert len(config.covariates) == frame.shape[1] - 3  # every column but id, time and status
    with pytest.raises(ValueError, match=r"no evaluation\.bootstrap"):
        public.edit_experiment("evaluation:\n  n_splits: 3\n", None)


def test_public_benchmark_rebuilds_the_folds_and_one_hot_encodes_every_covariate(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from riskmodel.workflow.init import infer_experiment

    data, frame = public.export("veterans", tmp_path)
    out = tmp_path / "veterans.yaml"
    infer_experiment(data, time="time", event="status", time_unit="days", out=out)
    config, prepared, folds = public.riskmodel_folds(out)
    assert len(folds) == config.evaluation.n_splits * config.evaluation.n_repeats
    assert all(len(set(train) & set(test)) == 0 for train, test in folds)
    X = public.design(frame, prepared.data.X["patient_id"])
    assert len(X) == len(prepared.data.y)
    # celltype's 4 levels give 3 columns, the two yes/no covariates 1 each, and 3 numeric ones
    assert X.shape[1] == 8
    with_missing = pd.DataFrame({"id": [1, 2, 3], "grade": ["a", None, "b"], "time": 1.0, "status": 1})
    assert list(public.design(with_missing, pd.Series(["1", "2", "3"])).columns) == ["grade_b", "grade_nan"]


def test_public_benchmark_table_marks_a_family_beyond_the_tolerance(public) -> None:  # type: ignore[no-untyped-def]
    row = {
        "n": 100,
        "events": 50,
        "covariates": 3,
        "encoded_columns": 4,
        "cv": "5-fold x 1",
        "riskmodel_c": {"cox": 0.70, "rsf": 0.68, "gbm": 0.69},
        "baseline_c": {"sksurv_cox": 0.705, "sksurv_rsf": 0.70, "sksurv_gbsa": 0.66, "xgboost": 0.695},
        "gap": {"cox": -0.005, "rsf": -0.02, "gbm": -0.005},
        "within_tolerance": {"cox": True, "rsf": False, "gbm": True},
        "seconds": {
            "riskmodel": {"init": 1.0, "train": 9.0, "cox": 1.0, "rsf": 2.0, "gbm": 3.0},
            "baseline": dict.fromkeys(("sksurv_cox", "sksurv_rsf", "sksurv_gbsa", "xgboost"), 1.0),
        },
    }
    text = public.markdown({"datasets": {"toy": row, "broken": {"error": "init failed"}}})
    assert "| toy | 100 | 50 | 3 (4) | 5-fold x 1 | 0.700 | 0.680 | 0.690 |" in text
    assert "-0.020 ✗" in text
    assert "**0.695**" in text  # the best boosting baseline
    assert "| broken | error: init failed |" in text


def test_phi_guard_benchmark_smoke_run_agrees_with_its_baseline() -> None:
    module = _benchmark("phi_guard")
    result = module.run(300, 4, 1)
    # the clean artifact passes both; a note, a name or an MRN planted in it is refused by both, alike
    # (a note is a value of an unused column before it is free text: the first rule names it)
    assert result["same_decisions"], result["decisions"]
    assert [d["riskmodel"] for d in result["decisions"].values()] == [
        "passed",
        *["a patient identifier or a value of an unused input column"] * 3,
    ]
    assert {"ratio_artifact", "ratio_short", "ratio_endpoint"} <= set(result)
    assert result["baseline"]["name"].startswith("scan-per-value")


def test_fine_gray_benchmark_smoke_run_agrees_with_lifelines_on_the_expanded_data() -> None:
    module = _benchmark("fine_gray")
    result = module.main(["--quick", "--json"])
    assert result["n"] == 2_000
    assert result["expanded_rows"] > result["n"]  # competing patients gain weighted rows
    assert result["max_abs_coef_diff"] < 1e-5
    assert result["baseline"]["name"].startswith("lifelines CoxPHFitter")
    skipped = module.run(3_000, baseline_max=2_000)
    assert "skipped" in skipped["baseline"]


def test_hot_paths_smoke_run_agrees_with_its_references() -> None:
    """C-index (compiled count against the previous one, scikit-survival, lifelines), cohort loading
    against pandas, --help against a bare interpreter: every side ran and the answers agree."""
    module = _benchmark("hot_paths")
    result = module.main(["--quick", "--json"])
    c = result["cindex"]
    assert c["harrell_abs_diff_old"] <= 1e-12
    assert c["harrell_abs_diff_sksurv"] <= 1e-12
    assert c["uno_abs_diff_old"] <= 1e-12
    assert c["uno_other_abs_diff_old"] <= 1e-12  # a training set apart from the test set
    assert c["uno_abs_diff_sksurv"] <= 1e-12
    # lifelines counts only equal risks as tied (riskmodel and scikit-survival: within 1e-8)
    assert c["harrell_abs_diff_lifelines"] <= 1e-8
    for kind in ("csv", "parquet"):
        assert result["load"][kind]["patients"] == result["load"]["n"]
        assert result["load"][kind]["baseline_seconds"] > 0
    assert result["help"]["baseline"] == "python -c pass"
    assert "riskmodel --help" in module.summary(result)


def test_forest_store_benchmark_smoke_run_measures_both_sides() -> None:
    module = _benchmark("forest_store")
    store, sksurv = module.child("store", 1_200, 3), module.child("sksurv", 1_200, 3)
    assert set(store) == set(sksurv) >= {"peak_rss_mib", "fit_cpu_s", "model_mib", "save_cpu_s", "load_cpu_s"}
    assert store["model_mib"] < sksurv["model_mib"] / 2  # the leaves' steps, not every node's curves
    assert store["load_cpu_s"] is not None
    assert sksurv["load_cpu_s"] is not None


def test_logrank_benchmark_smoke_run_agrees_with_its_baselines() -> None:
    out = _benchmark("logrank_speed").main(["--quick", "--repeats", "1"])
    (logrank,) = out["logrank"]
    assert logrank["chi2_abs_diff"] < 1e-8  # lifelines' logrank_test
    (cuts,) = out["cuts"]
    assert cuts["chi2_max_rel_diff"] < 1e-12
    assert cuts["same_best_cut"]
    assert out["report"]["exit"] == 0, out["report"]["stderr"]
