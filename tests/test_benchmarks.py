"""The benchmark suite runs end to end at smoke sizes (timings themselves are never asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_all():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("run_all", REPO / "benchmarks" / "run_all.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


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
