"""riskmodel: clinical outcome prediction and risk modelling with survival data.

The bundled example is a 36-patient cohort of I-125 seed brachytherapy for recurrent cervical
lymph nodes (local control and overall survival). ``ARCHITECTURE.md`` maps the package.
"""

import importlib as _importlib
import logging as _logging

from riskmodel.compat import install as _install_deprecated_paths
from riskmodel.core.version import __version__
from riskmodel.errors import RiskModelError, UserInputError

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
_install_deprecated_paths()

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

# Heavy parts (pandas and scipy ~0.4 s, scikit-learn ~0.6 s, MLflow ~1 s) load on first use: the
# command line's --help and light commands need none of them (tests/test_cli_imports.py).
_LAZY = {
    "Cohort": "riskmodel.cohort",
    "load": "riskmodel.cohort",
    "load_bundled": "riskmodel.cohort",
    "survival_data": "riskmodel.cohort",
    "ClinicalFeatures": "riskmodel.features",
    "RiskModel": "riskmodel.scoring",
    "load_model": "riskmodel.tracking",
    "train": "riskmodel.workflow",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'riskmodel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
