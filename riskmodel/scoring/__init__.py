"""A trained model as users meet it (:class:`RiskModel`), its pickle-free folder, and the files
of patients in and scores out. Loading by MLflow URI is :func:`riskmodel.tracking.load_model`."""

from __future__ import annotations

from riskmodel.scoring.files import ModelFileError, read_model_dir, write_model_dir
from riskmodel.scoring.model import RISK_GROUPS_3, RiskModel
from riskmodel.scoring.patients import read_patients, write_scores

__all__ = [
    "RISK_GROUPS_3",
    "ModelFileError",
    "RiskModel",
    "read_model_dir",
    "read_patients",
    "write_model_dir",
    "write_scores",
]
