"""The default ``train``'s second speed round must not change a number either: permutation
importance scoring every shuffle of a feature in one stacked prediction gives, to the bit, the
drops of one prediction per shuffle (written out here, as the importance was before)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import load_bundled, survival_data
from riskmodel.explain import importance
from riskmodel.explain.importance import permutation_importance
from riskmodel.features import ClinicalFeatures
from riskmodel.metrics import harrell_c
from riskmodel.models.registry import SPECS, build_family
from riskmodel.stats import survival_array


@pytest.fixture(scope="module")
def lc() -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = survival_data(load_bundled(), "lc", landmark_months=3, feature_columns=["response_3mo"], competing=True)
    features = ClinicalFeatures("study", landmark_months=3).fit(data.X)
    Z = np.asarray(features.transform(data.X), dtype=float)
    return Z, data.y, [str(n) for n in features.get_feature_names_out()]


def one_prediction_per_shuffle(estimator, Z, y, names, repeats, seed) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The importance as it was computed before: each shuffle scored on its own."""
    event, time = np.asarray(y["event"], bool), np.asarray(y["time"], float)
    full = harrell_c(event, time, estimator.predict_risk(Z))
    rows = []
    for j, (name, s) in enumerate(zip(names, np.random.SeedSequence(seed).spawn(len(names)), strict=True)):
        rng, shuffled, drops = np.random.default_rng(s), Z.copy(), np.empty(repeats)
        for r in range(repeats):
            shuffled[:, j] = rng.permutation(Z[:, j])
            drops[r] = full - harrell_c(event, time, estimator.predict_risk(shuffled))
        low, high = np.percentile(drops, [2.5, 97.5])
        rows.append({"feature": name, "c_drop": drops.mean(), "ci_low": low, "ci_high": high, "repeats": repeats})
    return pd.DataFrame(rows).sort_values("c_drop", ascending=False, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("competing", [False, True], ids=["survival", "competing"])
@pytest.mark.parametrize("family", ["cox", "rsf", "gbm"])
@pytest.mark.parametrize("batch_rows", [200_000, 100])  # all shuffles in one prediction; 2 or 3 at a time
def test_permutation_importance_in_stacked_predictions_is_one_prediction_per_shuffle_to_the_bit(
    lc: tuple[np.ndarray, np.ndarray, list[str]],
    family: str,
    competing: bool,
    batch_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Z, y, names = lc
    params = SPECS[family].config().model_dump(exclude={"enabled"})
    if family == "rsf":
        params["n_estimators"] = 30
    target = y if competing else survival_array(y["event"], y["time"])  # competing deaths censored
    estimator = build_family(family, params, 3, competing=competing).fit(Z, target)
    monkeypatch.setattr(importance, "BATCH_ROWS", batch_rows)
    batched = permutation_importance(estimator, Z, target, names, repeats=7, seed=11)
    reference = one_prediction_per_shuffle(estimator, Z, target, names, 7, 11)
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)  # tolerance 0
    assert batched["c_drop"].abs().max() > 0  # some feature matters: the shuffles were scored


def test_figures_drawn_half_on_the_worker_are_the_bytes_drawn_here() -> None:
    from riskmodel.reporting import plots

    groups = pd.DataFrame(
        {"predicted": [0.1, 0.3, 0.5], "observed": [0.12, 0.25, 0.55], "observed_low": [0.0, 0.1, 0.3]}
    ).assign(observed_high=[0.3, 0.4, 0.8])
    grid = np.linspace(0.05, 0.6, 20)
    smooth = pd.DataFrame(
        {"predicted": grid, "observed": grid, "observed_low": grid - 0.1, "observed_high": grid + 0.1}
    )
    table = pd.DataFrame(
        {
            "feature": list("abcd"),
            "c_drop": [0.1, 0.05, 0.02, 0.0],
            "ci_low": [0, 0, 0, -0.01],
            "ci_high": [0.2, 0.1, 0.04, 0.01],
        }
    )

    def draw() -> dict[str, object]:
        return {
            **{f"importance_{i}.png": plots.importance_plot(table, f"importance {i}") for i in range(3)},
            "calibration.png": plots.calibration_plot(groups, smooth, "calibration"),
        }

    here = {name: plots.figure_png(fig) for name, fig in draw().items()}
    with plots.figure_worker():
        assert plots._WORKER  # the worker is up inside the block
        apart = plots.figure_pngs(draw())
    assert not plots._WORKER  # and gone after it
    assert list(apart) == list(here)  # in the order given
    assert apart == here  # the same PNG bytes, every one
    assert plots.figure_pngs(draw()) == here  # without a worker: all drawn here


def test_the_shap_beeswarm_is_the_same_png_whatever_numpys_global_generator_did_before() -> None:
    import shap

    from riskmodel.reporting import plots

    rng = np.random.default_rng(0)
    values, data = rng.normal(size=(36, 5)), rng.normal(size=(36, 5))
    explanation = shap.Explanation(values=values, base_values=np.zeros(36), data=data, feature_names=list("abcde"))
    first = plots.figure_png(plots.shap_beeswarm(explanation, "beeswarm"))
    np.random.seed(123)  # noqa: NPY002 - another caller's use of the global generator
    state = np.random.get_state()  # noqa: NPY002
    second = plots.figure_png(plots.shap_beeswarm(explanation, "beeswarm"))
    assert first == second
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002 - the caller's generator given back
