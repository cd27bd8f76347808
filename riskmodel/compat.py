"""Import paths of riskmodel 0.1's flat modules, kept for one release with a DeprecationWarning.

``import riskmodel.training`` still works: a finder on ``sys.meta_path`` answers each old path
with a module that looks names up in their new homes, and warns once where it is imported from.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MOVED", "install"]

# old module -> its names' new homes, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "riskmodel.training": ("riskmodel.workflow.train", "riskmodel.workflow.prepare", "riskmodel.models.registry"),
    "riskmodel.tune": ("riskmodel.tuning", "riskmodel.tuning.study", "riskmodel.tuning.storage"),
    "riskmodel.evaluate": ("riskmodel.validation", "riskmodel.metrics"),
    "riskmodel.calibration": ("riskmodel.validation.calibration", "riskmodel.validation.decision"),
    "riskmodel.samplesize": ("riskmodel.stats.samplesize",),
    "riskmodel.modelfile": ("riskmodel.scoring.files",),
    "riskmodel.model_report": ("riskmodel.reporting.model_report",),
    "riskmodel.patient_report": ("riskmodel.reporting.patient_report",),
    "riskmodel.report": ("riskmodel.reporting.survival_report", "riskmodel.reporting.survival_tables"),
    "riskmodel.plots": ("riskmodel.reporting.plots",),
    "riskmodel.cohort.study": ("riskmodel.cohort.reconstruction.study",),
    "riskmodel.cohort.calibrate": ("riskmodel.cohort.reconstruction.calibrate",),
    "riskmodel.cohort.reconstruct": ("riskmodel.cohort.reconstruction.reconstruct",),
}


class _Moved(types.ModuleType):
    """A stand-in for a moved module: attribute lookups go to the new homes."""

    def __init__(self, name: str, homes: Sequence[str]) -> None:
        super().__init__(name, f"Deprecated: moved to {', '.join(homes)}.")
        self._homes = tuple(homes)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r} (it moved to {self._homes[0]})")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is deprecated and will be removed in riskmodel 0.3; import from {homes[0]}",
            DeprecationWarning,
            stacklevel=4,
        )
        return _Moved(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> None:
    """Answer the old import paths (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
