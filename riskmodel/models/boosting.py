"""Gradient boosting for survival: xgboost ``survival:cox`` (default) or scikit-survival's.

Both backends give S(t) = exp(−H0(t)·exp(f(x))), with f the boosted log hazard and H0 the Breslow
baseline estimated on the training data in O(n log n), so boosting gives survival curves, not only
a risk, and S(0) = 1 exactly.

xgboost predicts in float32. riskmodel adds the trees' leaf values in float64 instead (the same
leaves, found by xgboost), so that the margin and its TreeSHAP explanation (:mod:`riskmodel.explain`)
agree to 1e-12 rather than to float32's ~1e-6.

scikit-survival's ``GradientBoostingSurvivalAnalysis`` has no equivalent of ``min_child_weight``
(xgboost's minimum sum of second derivatives of the Cox loss in a leaf: not a patient count, so
not ``min_samples_leaf``), of the leaf-weight penalties ``reg_lambda`` and ``reg_alpha`` (its
leaves are the unpenalised mean gradient), or of ``n_jobs`` (it fits on one core). With
``backend="sksurv"``, ``fit`` refuses a non-default value of any of them rather than ignore it.

Missing values (NaN): xgboost learns at every split which side they take (its default direction),
so the xgboost backend handles them; scikit-survival's boosting refuses them, and so does this
class with ``backend="sksurv"`` (``handles_missing``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import FiniteFloat, model_validator
from sklearn.utils.validation import check_is_fitted

from riskmodel.errors import ModelFileError, UserInputError
from riskmodel.models.base import (
    StateFile,
    SurvivalEstimator,
    breslow_cumulative_hazard,
    breslow_risk_and_survival,
    check_baseline,
    estimator_params,
    proportional_survival,
    read_json,
    write_json,
)
from riskmodel.models.untrusted import check_sklearn_tree, check_xgboost_model, load_skops_exclusive
from riskmodel.stats import step_values

__all__ = ["XGBOOST_ONLY", "BoostingFile", "GradientBoostingSurvival"]

# the parameters scikit-survival's boosting has no equivalent for (module docstring)
XGBOOST_ONLY = ("min_child_weight", "reg_lambda", "reg_alpha", "n_jobs")
# below this many patients xgboost runs on one thread unless n_jobs says otherwise: a tree of a few
# hundred rows is built in microseconds, and OpenMP's thread start and spin-waits cost far more than
# that (10x the fit's CPU on 36 patients, more on a loaded machine); one thread gives the same trees
THREADED_FROM = 10_000


class BoostingFile(StateFile):
    """``gbm.json`` (xgboost) or ``estimator.json`` (scikit-survival): the Breslow baseline, finite."""

    event_times: list[FiniteFloat]
    baseline_cumhaz: list[FiniteFloat]

    @model_validator(mode="after")
    def _consistent(self) -> BoostingFile:
        check_baseline(self.event_times, self.baseline_cumhaz)
        return self


class GradientBoostingSurvival(SurvivalEstimator):
    """Boosted Cox model. ``backend="xgboost"`` (fast, native TreeSHAP) or ``"sksurv"``.

    Defaults suit small cohorts: shallow trees, slow learning, row subsampling.
    """

    risk_is_log_hazard = True  # predict_risk is the log hazard ratio (a linear predictor)
    all_levels = True  # trees, with either backend: no reference level (riskmodel.models.base)
    FILES = frozenset({"booster.ubj", "gbm.json", "estimator.skops", "estimator.json"})
    # the only types an estimator.skops of the scikit-survival backend may hold besides plain data
    SKOPS_ROOT = "sksurv.ensemble.boosting.GradientBoostingSurvivalAnalysis"
    SKOPS_ALLOWED = frozenset(
        {
            "sklearn._loss.link.IdentityLink",
            "sklearn._loss.link.Interval",
            "sklearn.tree._classes.DecisionTreeRegressor",
            "sklearn.tree._tree.Tree",
            "sksurv.ensemble.boosting.GradientBoostingSurvivalAnalysis",
            "sksurv.ensemble.survival_loss.CoxPH",
            "sksurv.functions.StepFunction",
            "sksurv.linear_model.coxph.BreslowEstimator",
        }
    )
    # (booster, leaf table, offset): tied to the booster it was read from, so it cannot outlive it
    _CACHES = ("_leaf_cache",)

    def __init__(
        self,
        backend: Literal["xgboost", "sksurv"] = "xgboost",
        n_estimators: int = 100,
        learning_rate: float = 0.05,
        max_depth: int = 2,
        subsample: float = 0.8,
        min_child_weight: float = 0.5,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.backend = backend
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.n_jobs = n_jobs
        self.random_state = random_state

    @property
    def handles_missing(self) -> bool:
        """True with xgboost, which learns a direction for missing values at every split; scikit-survival's
        boosting refuses NaN."""
        return bool(self.backend == "xgboost")

    @classmethod
    def ignored_params(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """xgboost's parameters, under ``backend="sksurv"`` (module docstring)."""
        if params.get("backend") != "sksurv":
            return {}
        why = "has no equivalent in scikit-survival's gradient boosting (backend 'sksurv')"
        return dict.fromkeys(XGBOOST_ONLY, why)

    def fit(self, X: Any, y: Any) -> GradientBoostingSurvival:
        """Fit the boosted model and its Breslow baseline; returns ``self``."""
        if self.backend not in ("xgboost", "sksurv"):
            raise UserInputError(f"backend must be 'xgboost' or 'sksurv', got {self.backend!r}")
        Xa, event, time = self._begin_fit(X, y)
        if self.backend == "xgboost":
            import xgboost as xgb

            label = np.where(event, time, -time)  # xgboost's convention: negative = censored
            if (time[~event] == 0).any():
                raise UserInputError("xgboost cannot represent a patient censored at time 0")
            params = {
                "objective": "survival:cox",
                "eval_metric": "cox-nloglik",
                "tree_method": "hist",
                "learning_rate": self.learning_rate,
                "max_depth": self.max_depth,
                "subsample": self.subsample,
                "min_child_weight": self.min_child_weight,
                "reg_lambda": self.reg_lambda,
                "reg_alpha": self.reg_alpha,
                "seed": self.random_state,
                "nthread": self._threads(len(Xa)),
            }
            # QuantileDMatrix: the hist method's binned copy only, not a second full float matrix
            self.booster_ = xgb.train(
                params,
                xgb.QuantileDMatrix(Xa, label=label, nthread=params["nthread"]),
                num_boost_round=self.n_estimators,
            )
        else:
            from sksurv.ensemble import GradientBoostingSurvivalAnalysis

            self.model_ = GradientBoostingSurvivalAnalysis(
                loss="coxph",
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                max_depth=self.max_depth,
                subsample=self.subsample,
                random_state=self.random_state,
            ).fit(Xa, y)
        self.event_times_, self.baseline_cumhaz_ = breslow_cumulative_hazard(time, event, self._margin(Xa))
        return self

    def _threads(self, n: int) -> int:
        """xgboost's ``nthread``: ``n_jobs`` if set (-1 or 0: every core), else every core from
        :data:`THREADED_FROM` patients and one below."""
        if self.n_jobs is not None:
            return max(self.n_jobs, 0)
        return 0 if n >= THREADED_FROM else 1

    def leaf_values(self) -> tuple[np.ndarray, float]:
        """xgboost only: (leaf value per tree and node id, in float64; the margin's base offset).

        Read from the booster once and kept beside it; a new booster (a refit) is read afresh.
        """
        check_is_fitted(self, "booster_")
        cached = getattr(self, "_leaf_cache", None)
        if cached is None or cached[0] is not self.booster_:
            frame = self.trees_frame()
            leaves = frame[frame["Feature"] == "Leaf"]
            table = np.zeros((int(frame["Tree"].max()) + 1, int(frame["Node"].max()) + 1))
            table[leaves["Tree"].to_numpy(int), leaves["Node"].to_numpy(int)] = leaves["Gain"].to_numpy(float)
            config = json.loads(self.booster_.save_config())
            base_score = float(config["learner"]["learner_model_param"]["base_score"].strip("[]"))
            # survival:cox keeps its base on the hazard scale
            cached = self._leaf_cache = (self.booster_, table, math.log(base_score))
        return cached[1], cached[2]

    def trees_frame(self) -> Any:
        """xgboost's trees as a table (one row per node: split, children, cover, leaf value)."""
        return self.booster_.trees_to_dataframe()

    def predict_risk(self, X: Any) -> np.ndarray:
        """The boosted log hazard ratio (margin), its leaves summed in float64."""
        check_is_fitted(self, "event_times_")
        return self._margin(self._check_features(X))

    def _margin(self, Xa: np.ndarray) -> np.ndarray:
        if self.backend == "xgboost":
            import xgboost as xgb

            table, offset = self.leaf_values()
            out = np.empty(len(Xa))
            rows = np.arange(table.shape[0])
            for start in range(0, len(Xa), 100_000):
                part = Xa[start : start + 100_000]
                leaf = (
                    self.booster_.predict(xgb.DMatrix(part, nthread=self._threads(len(Xa))), pred_leaf=True)
                    .astype(np.int64)
                    .reshape(len(part), -1)
                )
                out[start : start + len(part)] = offset + table[rows[None, :], leaf].sum(axis=1)
            return out
        return np.asarray(self.model_.predict(Xa), dtype=float)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        cumhaz = step_values(self.event_times_, self.baseline_cumhaz_, times)
        return proportional_survival(self.predict_risk(X), cumhaz)

    def predict_risk_and_survival(self, X: Any, times: Any) -> tuple[np.ndarray, np.ndarray]:
        """The margin once (one pass over the trees), and S(t) from it (as :meth:`_survival_matrix`)."""
        return breslow_risk_and_survival(self, X, times)

    def save_state(self, folder: Path) -> None:
        """xgboost: its own ``booster.ubj`` and ``gbm.json``; scikit-survival: ``estimator.skops`` and
        ``estimator.json``. Both with the Breslow baseline."""
        baseline = {"event_times": self.event_times_, "baseline_cumhaz": self.baseline_cumhaz_}
        if self.backend == "xgboost":
            self.booster_.save_model(str(folder / "booster.ubj"))
            write_json(folder / "gbm.json", {**self._common_state(), **baseline})
            return
        from riskmodel.core.memory import dump_skops

        dump_skops(self.model_, folder / "estimator.skops")
        write_json(folder / "estimator.json", {**self._common_state(), **baseline})

    @classmethod
    def load_state(cls, folder: Path) -> GradientBoostingSurvival:
        """The fitted model from the files :meth:`save_state` wrote."""
        if (folder / "booster.ubj").exists():
            d = read_json(folder / "gbm.json", BoostingFile)
            gbm = cls(**estimator_params(cls, d["params"], folder / "gbm.json"))
            gbm.booster_ = _load_booster(folder / "booster.ubj", int(d["n_features_in"]))
            gbm.leaf_values()  # read now, as fit does, so that predicting changes nothing
        else:
            d = read_json(folder / "estimator.json", BoostingFile)
            gbm = cls(**estimator_params(cls, d["params"], folder / "estimator.json"))
            gbm.model_ = load_skops_exclusive(folder / "estimator.skops", cls.SKOPS_ROOT, cls.SKOPS_ALLOWED)
            _check_sksurv_boosting(gbm.model_, folder / "estimator.skops")
        gbm.event_times_ = np.asarray(d["event_times"], float)
        gbm.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        gbm._restore_common(d)
        return gbm


def _load_booster(path: Path, n_features: int) -> Any:
    """xgboost's booster, its trees checked (riskmodel.models.untrusted) before anything walks them."""
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
        model = json.loads(booster.save_raw("json"))  # copies the arrays out, walks no tree
    except (xgb.core.XGBoostError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not a readable xgboost model ({str(exc).splitlines()[0][:120]})") from None
    check_xgboost_model(model, n_features, str(path))
    return booster


def _check_sksurv_boosting(model: Any, path: Path) -> None:
    """Every tree of scikit-survival's boosting checked before its first use."""
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import Tree

    n_features = int(model.n_features_in_)
    stages = np.asarray(model.estimators_, dtype=object)
    if stages.ndim != 2 or stages.shape[1] != 1:
        raise ModelFileError(f"{path}: boosting stages of shape {stages.shape}; refusing to load")
    for i, tree in enumerate(stages[:, 0]):
        where = f"{path}: tree {i}"
        if not isinstance(tree, DecisionTreeRegressor) or not isinstance(tree.tree_, Tree):
            raise ModelFileError(f"{where}: not a regression tree; refusing to load")
        check_sklearn_tree(tree.tree_, n_features, where)
        if tree.tree_.value.shape[1:] != (1, 1):
            raise ModelFileError(f"{where}: node values of shape {tree.tree_.value.shape[1:]}; refusing to load")
