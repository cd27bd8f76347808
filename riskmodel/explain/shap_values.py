"""SHAP explanations of every family, on the risk score or on S(t) at a horizon; of a
competing-risk model, on the CIF of either event at a horizon.

:func:`explain` returns a :class:`shap.Explanation`, so ``shap.plots.*`` work on it unchanged. The
features explained are the model's own (``ClinicalFeatures`` output: ``d90_gy``, ``response_cr_pr``,
…). Which Shapley values, exactly:

* **Cox, risk** (the log hazard ratio): linear SHAP, ``coef_j · (x_j − mean_j)`` with the training
  mean as the reference. For a linear model this equals the interventional Shapley value against
  the whole training cohort. Exact.
* **Random survival forest, risk or S(t)**: path-dependent TreeSHAP (Lundberg et al. 2020) run by
  shap's own tree algorithm on scikit-survival's trees, converted here. A leaf's value is that
  tree's risk (its cumulative hazard summed over the event times, as scikit-survival's
  ``predict``), or its S(t). The forest's output is the mean over its trees of either, so the sum
  of the per-tree explanations is exact for the forest. Tests check local accuracy and compare
  against Shapley values enumerated from the path-dependent value function.
* **Gradient boosting (xgboost), risk** (the margin, a log hazard ratio): path-dependent TreeSHAP
  on xgboost's own trees, the algorithm of xgboost's ``pred_contribs``, run by shap in float64.
  xgboost's native contributions are float32: on the bundled cohort their sum missed the margin
  by 9.7e-7, at the edge of a 1e-6 check, so riskmodel reads the trees and sums in float64 (and
  its margin is summed in float64 too). Tests compare with ``pred_contribs`` to float32 precision.
* **Cox and boosting, S(t)**: S(t | x) = exp(−H₀(t)·e^η) is not additive in the features, so no
  tree or linear shortcut applies. The values are interventional Shapley values against a
  reference (by default the training mean of each feature, one "average patient"; pass
  ``background`` for another), computed exactly by enumerating all 2^p coalitions. Above
  :data:`MAX_EXACT_FEATURES` features this would be too slow; shap's permutation explainer is used
  instead, and the result's ``method`` says "approximate".
* **Competing-risk models** (cause-specific Cox, forests, boosting; :mod:`riskmodel.models.competing`),
  risk (the CIF of the event at the model's risk horizon), ``("cif", t)`` (CIF of the event at t)
  or ``("cif_competing", t)``: the CIF combines two cause-specific hazards through the
  Aalen-Johansen product, so it is additive in neither model's features and no tree or linear
  shortcut applies. The same interventional values, exact by enumeration up to
  :data:`MAX_EXACT_FEATURES` features, shap's permutation explainer ("approximate") above.
  ``("survival", t)`` of a competing model explains its event-free probability.

Every result carries ``method`` (what was computed) and ``output`` (what is explained). Local
accuracy holds on the exact paths: ``base_values + values.sum(1)`` equals the model's output.

A missing value (NaN) is explained where the family handles them (``handles_missing``): in the
tree paths it takes the side its tree sends it to (the side scikit-survival stored, xgboost's
default direction). The other families refuse NaN here, as their predictions do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from riskmodel.errors import UserInputError
from riskmodel.explain.trees import forest_shap, tree_shap, xgboost_tree_dicts
from riskmodel.models import CoxPH, GradientBoostingSurvival, SurvivalEstimator, SurvivalForest
from riskmodel.models.cif import cif_matrix, is_competing_model

if TYPE_CHECKING:
    import shap

__all__ = [
    "MAX_EXACT_FEATURES",
    "OUTPUT_KINDS",
    "explain",
    "interventional_shap",
    "mean_abs",
    "model_output",
    "resolve",
]

MAX_EXACT_FEATURES = 12  # 2^12 coalitions per patient and reference row

Output = str | tuple[str, float]
# what may be explained at a horizon t: S(t), or a competing model's CIF of the event or of the competing event
OUTPUT_KINDS = ("survival", "cif", "cif_competing")


def _parse_output(output: Output) -> tuple[str, float | None]:
    """("risk", None), or (kind, horizon) of S(t) or a CIF."""
    if output == "risk":
        return "risk", None
    if isinstance(output, tuple) and len(output) == 2 and output[0] in OUTPUT_KINDS:
        try:
            horizon = float(output[1])
        except (TypeError, ValueError):
            horizon = math.nan
        if not (math.isfinite(horizon) and horizon > 0):
            raise UserInputError(f"output ({output[0]!r}, t) needs a horizon t > 0 in months, got {output[1]!r}")
        return str(output[0]), horizon
    raise UserInputError(
        f"output must be 'risk' or ('survival', t) (a competing model also ('cif', t) or ('cif_competing', t)), "
        f"got {output!r}"
    )


def _shap() -> Any:
    try:
        import shap
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UserInputError("explanations need the shap package: pip install shap") from exc
    return shap


def _is_risk_model(model: Any) -> bool:
    """A saved model as users meet it (:class:`riskmodel.scoring.RiskModel`): fitted features, an
    estimator, patient validation and the training means. Recognised by what it offers, because
    the scoring floor sits above this one."""
    return all(hasattr(model, a) for a in ("features", "estimator", "validate_patients", "feature_means"))


def resolve(model: Any, X: Any, background: Any) -> tuple[Any, np.ndarray, list[str], np.ndarray]:
    """(estimator, model features of X, feature names, reference rows) for any supported model."""
    from sklearn.pipeline import Pipeline

    if _is_risk_model(model):
        names = [str(n) for n in model.features.get_feature_names_out()]
        Z = np.asarray(model.features.transform(model.validate_patients(X)), dtype=float)
        ref: np.ndarray | None = None
        if background is not None:
            ref = np.asarray(model.features.transform(model.validate_patients(background)), dtype=float)
        elif model.feature_means:
            ref = np.asarray(model.feature_means, dtype=float)[None, :]
        return model.estimator, Z, names, _reference(model.estimator, ref, len(names))
    if isinstance(model, Pipeline):
        names = [str(n) for n in model[:-1].get_feature_names_out()]
        Z = np.asarray(model[:-1].transform(X), dtype=float)
        ref = np.asarray(model[:-1].transform(background), dtype=float) if background is not None else None
        return model[-1], Z, names, _reference(model[-1], ref, len(names))
    if isinstance(model, SurvivalEstimator):
        Z = np.asarray(X, dtype=float)
        names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else [f"x{i}" for i in range(Z.shape[1])]
        ref = np.asarray(background, dtype=float) if background is not None else None
        return model, Z, names, _reference(model, ref, Z.shape[1])
    raise UserInputError(f"cannot explain a {type(model).__name__}: pass a RiskModel, a fitted pipeline or estimator")


def _reference(estimator: Any, ref: np.ndarray | None, p: int) -> np.ndarray:
    """The reference rows: ``ref``, else the training mean the estimator kept (never the batch
    explained, so that a patient's values do not depend on who else is explained with them)."""
    if ref is None:
        mean = getattr(estimator, "feature_means_", None)
        ref = np.asarray(mean, dtype=float)[None, :] if mean is not None else np.full((1, p), np.nan)
    if ref.ndim != 2 or ref.shape[1] != p:
        raise UserInputError(f"background must have the model's {p} features")
    return ref


def model_output(estimator: Any, Z: np.ndarray, horizon: float | None, kind: str = "survival") -> np.ndarray:
    """What is explained: the risk score, or S(horizon), or a competing model's CIF at horizon
    (``kind`` "cif": of the event, "cif_competing": of the competing event)."""
    if horizon is None:
        return np.asarray(estimator.predict_risk(Z), dtype=float)
    if kind in ("cif", "cif_competing"):
        return np.asarray(cif_matrix(estimator, Z, [horizon])[0 if kind == "cif" else 1][:, 0], dtype=float)
    return np.asarray(estimator.predict_survival(Z, [horizon]).to_numpy()[:, 0], dtype=float)


def _output_label(estimator: Any, kind: str, horizon: float | None) -> str:
    if horizon is None:
        if is_competing_model(estimator):
            return "risk score (CIF of the event at the model's risk horizon)"
        return "risk score"
    if kind == "survival":
        return f"{'event-free probability' if is_competing_model(estimator) else 'S'}({horizon:g} months)"
    return f"{'CIF of the event' if kind == 'cif' else 'CIF of the competing event'} ({horizon:g} months)"


def explain(model: Any, X: Any, *, output: Output = "risk", background: Any = None) -> shap.Explanation:
    """SHAP values of ``model`` for the patients in ``X``; see the module docstring for the method.

    ``model``: a :class:`~riskmodel.scoring.RiskModel` (``X`` is a cohort table), a fitted
    features+model pipeline (``X`` its input), or a fitted estimator (``X`` model features).
    ``output``: ``"risk"`` or ``("survival", t)`` with t in months after the model's time zero.
    ``background``: reference patients (same form as ``X``) for the linear and interventional
    paths; by default the training mean of each model feature (one "average patient"), so a
    patient's values do not depend on who else is in ``X``. Tree paths use the training covers.
    """
    shap = _shap()
    kind, horizon = _parse_output(output)
    estimator, Z, names, ref = resolve(model, X, background)
    if kind.startswith("cif") and not is_competing_model(estimator):
        raise UserInputError(f"output ({kind!r}, t) needs a competing-risk model; this one predicts S(t)")
    # NaN is a missing value to a family that handles them; the others refuse it, as predicting does
    estimator.check_values(Z, names)
    if background is not None:
        estimator.check_values(ref, names)
    if horizon is not None and horizon > estimator.max_time_:
        raise UserInputError(
            f"horizon {horizon:g} months lies beyond the training follow-up ({estimator.max_time_:.1f} months)"
        )
    if isinstance(estimator, CoxPH) and horizon is None:
        reference = ref.mean(axis=0)
        values = (Z - reference) * estimator.coef_
        base = np.full(len(Z), float((reference - estimator.mean_) @ estimator.coef_))
        method = "exact: linear SHAP of the log hazard ratio against the reference (training mean)"
    elif isinstance(estimator, SurvivalForest):
        values, base = forest_shap(estimator, Z, horizon)
        method = "exact: path-dependent TreeSHAP of the forest's " + ("risk" if horizon is None else "S(t)")
    elif isinstance(estimator, GradientBoostingSurvival) and estimator.backend == "xgboost" and horizon is None:
        trees, offset = xgboost_tree_dicts(estimator)
        values, base = tree_shap(trees, Z.astype(np.float32).astype(np.float64))
        base = base + offset
        method = "exact: path-dependent TreeSHAP of xgboost's margin (log hazard ratio), in float64"
    else:
        if np.isnan(ref).all():  # the stand-in for no stored mean; a NaN here and there is a missing value
            raise UserInputError("this model stores no training mean; pass background= (reference patients)")
        values, base, method = interventional_shap(lambda A: model_output(estimator, A, horizon, kind), Z, ref)
    explanation = shap.Explanation(
        values=np.asarray(values, dtype=float),
        base_values=np.asarray(base, dtype=float),
        data=Z,
        feature_names=names,
    )
    explanation.method = method
    explanation.output = _output_label(estimator, kind, horizon)
    return explanation


def interventional_shap(
    f: Any, Z: np.ndarray, reference: np.ndarray, max_rows: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray, str]:
    """Interventional Shapley values of ``f`` against ``reference`` rows: exact by enumeration
    (up to :data:`MAX_EXACT_FEATURES` features; shap's permutation explainer above, "approximate").

    ``f`` maps rows (m × p) to m outputs, or to m × k outputs (say a CIF at k times: each column
    is explained on its own). Returns (values: n × p [× k], base values: n [× k], method).
    """
    n, p = Z.shape
    if p > MAX_EXACT_FEATURES:
        return _permutation(f, Z, reference)
    k = len(reference)
    masks = ((np.arange(2**p)[:, None] >> np.arange(p)) & 1).astype(bool)  # coalition c holds j if bit j
    sizes = masks.sum(axis=1)
    weights = np.array([math.factorial(s) * math.factorial(p - s - 1) / math.factorial(p) for s in range(p)])
    v_all: np.ndarray | None = None
    chunk = max(1, max_rows // (2**p * k))
    for start in range(0, n, chunk):
        part = Z[start : start + chunk]
        rows = np.where(masks[None, :, None, :], part[:, None, None, :], reference[None, None, :, :])
        raw = np.asarray(f(rows.reshape(-1, p)), dtype=float)
        out = raw.reshape(len(part), 2**p, k, *raw.shape[1:]).mean(axis=2)
        if v_all is None:
            v_all = np.empty((n, *out.shape[1:]))
        v_all[start : start + chunk] = out
    assert v_all is not None
    values = np.empty((n, p, *v_all.shape[2:]))
    for j in range(p):
        without = np.flatnonzero(~masks[:, j])
        gain = v_all[:, without | (1 << j)] - v_all[:, without]
        values[:, j] = np.tensordot(gain, weights[sizes[without]], axes=([1], [0]))
    method = f"exact: interventional Shapley values against {k} reference row(s), all {2**p} coalitions enumerated"
    return values, v_all[:, 0], method


def _permutation(f: Any, Z: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    shap = _shap()
    masker = shap.maskers.Independent(reference, max_samples=len(reference))
    explainer = shap.PermutationExplainer(f, masker, seed=0)
    result = explainer(Z, max_evals=max(2 * Z.shape[1] + 1, 500), silent=True)
    method = (
        f"approximate: shap's permutation explainer (more than {MAX_EXACT_FEATURES} features makes "
        "exact enumeration too slow); local accuracy holds, the split between features is estimated"
    )
    return np.asarray(result.values, dtype=float), np.asarray(result.base_values, dtype=float), method


def mean_abs(explanation: Any) -> pd.Series:
    """Mean |SHAP| per feature, largest first (the aggregate that may be logged)."""
    return pd.Series(np.abs(explanation.values).mean(axis=0), index=explanation.feature_names).sort_values(
        ascending=False
    )
