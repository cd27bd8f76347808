"""riskmodel: outcome prediction and risk modelling for I-125 seed brachytherapy."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from riskmodel.cohort import Cohort, load, load_bundled, survival_data
from riskmodel.errors import RiskModelError, UserInputError

if TYPE_CHECKING:
    from riskmodel.features import ClinicalFeatures

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ClinicalFeatures",
    "Cohort",
    "RiskModelError",
    "UserInputError",
    "__version__",
    "load",
    "load_bundled",
    "survival_data",
]


def __getattr__(name: str) -> Any:
    # scikit-learn costs ~0.6 s to import; the data commands do not need it.
    if name == "ClinicalFeatures":
        from riskmodel.features import ClinicalFeatures

        return ClinicalFeatures
    raise AttributeError(f"module 'riskmodel' has no attribute {name!r}")
