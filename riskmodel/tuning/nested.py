"""Nested validation of tuning: an estimator whose ``fit`` runs a whole in-memory study.

Wrapped in the feature pipeline, :class:`TunedSurvival` goes through
:func:`riskmodel.validation.cross_validate` (``riskmodel tune --nested-cv K``) or the bootstrap
optimism validation, so the tuning itself is validated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.config import ExperimentConfig
from riskmodel.errors import UserInputError
from riskmodel.metrics import EvaluationWindow
from riskmodel.models.base import SurvivalEstimator
from riskmodel.models.registry import ParamSpace, build_family
from riskmodel.stats import check_competing_target, is_competing
from riskmodel.tuning.objective import NoFoldValue, direction, optuna_module, run_folds, splits
from riskmodel.tuning.selection import select_trial
from riskmodel.tuning.spaces import default_space
from riskmodel.validation import cross_validate
from riskmodel.workflow.prepare import PreparedEndpoint, make_pipeline

__all__ = ["TunedSurvival", "nested_cv"]


class TunedSurvival(SurvivalEstimator):
    """An estimator whose ``fit`` tunes ``family`` by an in-memory Optuna study, then refits the best.

    Inside a pipeline it lets cross-validation or the bootstrap validate the tuning itself. With
    ``competing=True`` it tunes the family's cumulative-incidence counterpart on a competing-risks
    target (cause 0/1/2) and predicts the CIF (:meth:`predict_cif`), scored as ``riskmodel tune``
    scores a competing endpoint.
    """

    def __init__(
        self,
        family: str = "cox",
        space: Mapping[str, ParamSpace] | None = None,
        fixed: Mapping[str, Any] | None = None,
        n_trials: int = 10,
        n_splits: int = 3,
        metric: str = "uno_c",
        horizon: float = 12.0,
        random_state: int = 0,
        n_repeats: int = 2,
        window: EvaluationWindow | None = None,
        competing: bool = False,
    ) -> None:
        self.family = family
        self.space = space
        self.fixed = fixed
        self.n_trials = n_trials
        self.n_splits = n_splits
        self.metric = metric
        self.horizon = horizon
        self.random_state = random_state
        self.n_repeats = n_repeats
        self.window = window
        self.competing = competing

    def _fit_target(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        if not self.competing:
            return super()._fit_target(y)
        if not is_competing(y):
            raise UserInputError("TunedSurvival(competing=True) needs a competing-risks target (cause 0/1/2, time)")
        cause, time = check_competing_target(y)
        self.max_time_ = float(time.max())
        self.n_events_ = int((cause == 1).sum())
        return cause, time

    def fit(self, X: Any, y: Any) -> TunedSurvival:
        """Tune on (X, y) with inner cross-validation, then fit the best parameters on all of it."""
        optuna = optuna_module()
        Xa, _, _ = self._begin_fit(X, y)
        fixed = dict(self.fixed or {})
        space = dict(self.space or default_space(self.family, fixed))
        folds = splits(y, self.n_splits, self.n_repeats, self.random_state)
        # the window the tuning is scored in: the caller's (nested CV passes the outer one), else its own data's
        window = self.window or EvaluationWindow.from_data(y, [self.horizon])

        def make(params: dict[str, Any]) -> Any:
            return build_family(self.family, {**fixed, **params}, self.random_state, competing=self.competing)

        study = optuna.create_study(
            direction=direction(self.metric), sampler=optuna.samplers.TPESampler(seed=self.random_state)
        )
        if fixed:
            study.enqueue_trial({k: fixed[k] for k in space if k in fixed}, user_attrs={"experiment_defaults": True})
        study.optimize(
            lambda t: run_folds(t, make, Xa, y, folds, self.metric, window, self.horizon, space)[0],
            n_trials=self.n_trials,
            catch=(NoFoldValue,),
        )
        chosen, self.selection_note_ = select_trial(study)
        self.best_params_ = dict(chosen.params)
        self.best_estimator_ = make(self.best_params_).fit(Xa, y)
        return self

    def predict_risk(self, X: Any) -> np.ndarray:
        """The tuned model's risk score."""
        return np.asarray(self.best_estimator_.predict_risk(np.asarray(X, dtype=float)), dtype=float)

    def _survival_matrix(self, X: Any, times: np.ndarray) -> np.ndarray:
        """S(t); with competing risks the all-cause event-free probability."""
        return np.asarray(self.best_estimator_.predict_survival(np.asarray(X, dtype=float), times).to_numpy())

    def predict_cif(self, X: Any, times: Iterable[float] | float, cause: int = 1) -> pd.DataFrame:
        """The tuned CIF model's cumulative incidence of ``cause`` (``competing=True`` only)."""
        if not self.competing:
            raise UserInputError("predict_cif: this TunedSurvival tunes a survival model (competing=False)")
        cif: pd.DataFrame = self.best_estimator_.predict_cif(np.asarray(X, dtype=float), times, cause=cause)
        if isinstance(X, pd.DataFrame):
            cif.index = X.index
        return cif


def nested_cv(
    config: ExperimentConfig,
    family: str,
    prepared: PreparedEndpoint,
    space: Mapping[str, ParamSpace],
    fixed: Mapping[str, Any],
    outer: int,
    inner_trials: int,
    metric: str,
    horizon: float,
) -> pd.DataFrame:
    """Outer stratified K-fold around the whole tuning: one row of held-out metrics per outer fold,
    every fold and every inner trial in the endpoint's one evaluation window."""
    window = prepared.window
    tuned = TunedSurvival(
        family,
        space,
        fixed,
        inner_trials,
        config.tune.n_splits,
        metric,
        horizon,
        config.seed,
        window=window,
        competing=prepared.competing,
    )
    sd = prepared.data
    cv = cross_validate(make_pipeline(config, tuned), sd.X, sd.y, window, n_splits=outer, n_repeats=1, seed=config.seed)
    return cv.folds
