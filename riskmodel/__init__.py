"""riskmodel: outcome prediction and risk modelling for I-125 seed brachytherapy."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from riskmodel.cohort import Cohort, load, load_bundled, survival_data
from riskmodel.errors import RiskModelError, UserInputError

if TYPE_CHECKING:
    from riskmodel.features import ClinicalFeatures
    from riskmodel.scoring import RiskModel, load_model
    from riskmodel.training import train

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ClinicalFeatures",
    "Cohort",
    "RiskModel",
    "RiskModelError",
    "UserInputError",
    "__version__",
    "load",
    "load_bundled",
    "load_model",
    "survival_data",
    "train",
]

# Heavy parts (scikit-learn ~0.6 s, MLflow ~1 s) load on first use; the data commands need neither.
_LAZY = {
    "ClinicalFeatures": "riskmodel.features",
    "RiskModel": "riskmodel.scoring",
    "load_model": "riskmodel.scoring",
    "train": "riskmodel.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'riskmodel' has no attribute {name!r}")
