"""Forest explanations: exact TreeSHAP (riskmodel.explain) against shap's PermutationExplainer.

Setup (issue 6): a 300-tree random survival forest (riskmodel's defaults above 1,000 patients)
trained on 5,000 synthetic patients; the risk score of 1,000 other patients explained.

* **riskmodel**: path-dependent TreeSHAP on the converted trees, all 1,000 patients, timed.
* **baseline**: ``shap.PermutationExplainer`` on the same model and output, with 100 training
  patients as background and shap's default 500 evaluations per patient. It is timed on the first
  ``--subset`` patients (default 50); the time for 1,000 is that ×(1000/subset), said so in the output.

Accuracy: the two explainers answer different questions (TreeSHAP conditions along the trees'
paths; the permutation explainer samples an interventional value function against the
background), so their values differ by design. Reported: max |TreeSHAP − permutation| on the
subset; the permutation explainer's own error against the exact interventional values (all 2^p
coalitions enumerated with the same background); and both explainers' local accuracy. TreeSHAP's
equality with Shapley values enumerated from the path-dependent value function is checked in
``tests/test_explain.py`` (≤ 1e-9).

Run: ``python benchmarks/shap_speed.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np


def run(n_train: int, n_explain: int, trees: int, subset: int) -> dict[str, Any]:
    import shap

    from riskmodel.cohort import survival_data
    from riskmodel.cohort.synthetic import generate
    from riskmodel.explain import explain
    from riskmodel.explain.shap_values import interventional_shap
    from riskmodel.features import ClinicalFeatures
    from riskmodel.models import SurvivalForest

    train = survival_data(generate(n_train, seed=11), "os", landmark_months=3, feature_columns=["response_3mo"])
    test = survival_data(generate(n_explain, seed=12), "os", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3).fit(train.X, train.y)
    Z_train = np.asarray(features.transform(train.X), dtype=float)
    Z = np.asarray(features.transform(test.X), dtype=float)[:n_explain]
    start = time.perf_counter()
    forest = SurvivalForest(n_estimators=trees, random_state=0).fit(Z_train, train.y)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    ours = explain(forest, Z)
    tree_seconds = time.perf_counter() - start
    tree_error = float(np.abs(ours.base_values + ours.values.sum(1) - forest.predict_risk(Z)).max())

    background = Z_train[np.linspace(0, len(Z_train) - 1, 100).astype(int)]
    masker = shap.maskers.Independent(background, max_samples=100)
    permutation = shap.PermutationExplainer(forest.predict_risk, masker, seed=0)
    start = time.perf_counter()
    theirs = permutation(Z[:subset], max_evals=500, silent=True)
    perm_seconds = time.perf_counter() - start
    perm_error = float(np.abs(theirs.base_values + theirs.values.sum(1) - forest.predict_risk(Z[:subset])).max())
    exact, _, _ = interventional_shap(forest.predict_risk, Z[:subset], background)

    per_patient = perm_seconds / subset
    return {
        "patients_train": n_train,
        "patients_explained": len(Z),
        "trees": trees,
        "features": Z.shape[1],
        "fit_seconds": round(fit_seconds, 2),
        "treeshap_seconds": round(tree_seconds, 3),
        "permutation_seconds_subset": round(perm_seconds, 2),
        "permutation_subset": subset,
        "permutation_seconds_extrapolated": round(per_patient * len(Z), 1),
        "ratio": round(per_patient * len(Z) / tree_seconds, 1),
        "max_abs_diff_treeshap_vs_permutation": float(np.abs(ours.values[:subset] - theirs.values).max()),
        "max_abs_diff_permutation_vs_exact_interventional": float(np.abs(theirs.values - exact).max()),
        "risk_scale_sd": float(forest.predict_risk(Z).std()),
        "local_accuracy_treeshap": tree_error,
        "local_accuracy_permutation": perm_error,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 600 patients, 30 trees, 10 explained")
    parser.add_argument("--subset", type=int, default=50, help="patients for the permutation explainer")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(600, 40, 30, 5) if args.quick else run(5000, 1000, 300, args.subset)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"TreeSHAP: {result['patients_explained']} patients, {result['trees']} trees: "
            f"{result['treeshap_seconds']} s\n"
            f"PermutationExplainer: {result['permutation_seconds_subset']} s for {result['permutation_subset']} "
            f"patients, so {result['permutation_seconds_extrapolated']} s for {result['patients_explained']} "
            f"(extrapolated)\nratio: {result['ratio']}x\n"
            f"max |TreeSHAP - permutation| = {result['max_abs_diff_treeshap_vs_permutation']:.4f} (different value "
            f"functions; risk score SD {result['risk_scale_sd']:.2f})\n"
            f"max |permutation - exact interventional| = "
            f"{result['max_abs_diff_permutation_vs_exact_interventional']:.4f}\n"
            f"local accuracy: TreeSHAP {result['local_accuracy_treeshap']:.1e}, "
            f"permutation {result['local_accuracy_permutation']:.1e}"
        )
    return result


if __name__ == "__main__":
    main()
