"""The MLflow pyfunc face of a riskmodel model: a models-from-code entry file, its signature and
requirements. MLflow copies :data:`ENTRY_FILE` into every logged model; it calls
:func:`set_pyfunc_model`, which loads riskmodel's pickle-free folder."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from riskmodel.cohort.contract import COLUMNS
from riskmodel.scoring import RiskModel
from riskmodel.tracking.verify import ENTRY_FILE, REQUIREMENT_NAMES, verify_model_folder

__all__ = ["ENTRY_FILE", "input_columns", "requirements", "set_pyfunc_model"]


def input_columns(model: RiskModel) -> list[tuple[str, bool]]:
    """The model signature's input columns: every contract column but the outcomes, and whether
    the model requires it."""
    used = set(model.input_columns)
    if model.declaration is not None:  # the export's own headers, as the declaration reads them
        return [
            (c.column, c.missing in ("refuse", "complete_case")) for c in model.declaration.covariates if c.name in used
        ]
    return [(c.name, c.name in used) for c in COLUMNS if c.role != "outcome"]


def requirements() -> list[str]:
    """The pinned pip requirements of a logged model (the libraries installed here)."""
    out = []
    for name in REQUIREMENT_NAMES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def _pyfunc_class() -> type:
    import mlflow.pyfunc

    class RiskModelPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
        """Loads riskmodel's pickle-free model directory; predicts risk_score and S(t) per horizon."""

        def load_context(self, context: Any) -> None:
            # MLflow has run this entry file already; what it has not run yet is checked here: the
            # folder's other files (MLmodel, environment files, no extra file) and the model itself
            self.model = verify_model_folder(Path(context.artifacts["riskmodel"]).parents[1]).model

        # A DataFrame hint tells MLflow not to infer a schema from hints; the contract validates input.
        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            return self.model.predict_frame(model_input)

    return RiskModelPyfunc


def set_pyfunc_model() -> None:
    """Called by the models-from-code entry file that MLflow runs when it loads a model."""
    from mlflow.models import set_model

    set_model(_pyfunc_class()())
