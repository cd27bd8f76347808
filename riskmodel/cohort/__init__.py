"""Cohorts: the contract, loading and validation, clinical derivations, endpoints, synthetic data."""

from __future__ import annotations

from riskmodel.cohort.bundled import bundled_cohort_path
from riskmodel.cohort.contract import COLUMNS, Column, contract_markdown
from riskmodel.cohort.endpoints import (
    ENDPOINTS,
    Endpoint,
    SurvivalData,
    check_guarantee_time,
    local_failure_competing,
    survival_data,
    survival_target,
)
from riskmodel.cohort.load import Cohort, ColumnMapping, from_frame, load, load_mapping

__all__ = [
    "COLUMNS",
    "ENDPOINTS",
    "Cohort",
    "Column",
    "ColumnMapping",
    "Endpoint",
    "SurvivalData",
    "bundled_cohort_path",
    "check_guarantee_time",
    "contract_markdown",
    "from_frame",
    "load",
    "load_bundled",
    "load_mapping",
    "local_failure_competing",
    "survival_data",
    "survival_target",
]


def load_bundled() -> Cohort:
    """The bundled 36-patient reconstructed cohort (synthetic; see data/README.md)."""
    return load(bundled_cohort_path())
