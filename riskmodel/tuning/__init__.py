"""``riskmodel tune``: Optuna studies of one family's hyperparameters, tracked in MLflow, resumable
and shareable between workers; and nested validation of the tuning itself."""

from __future__ import annotations

from riskmodel.tuning.nested import TunedSurvival, nested_cv
from riskmodel.tuning.spaces import DEFAULT_SPACES, search_space
from riskmodel.tuning.storage import default_storage, shareable_storage
from riskmodel.tuning.study import TuneResult, tune

__all__ = [
    "DEFAULT_SPACES",
    "TuneResult",
    "TunedSurvival",
    "default_storage",
    "nested_cv",
    "search_space",
    "shareable_storage",
    "tune",
]
