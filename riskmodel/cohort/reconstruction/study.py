"""The source study's groupings and published figures (``data/published_targets.json``).

Each factor of Tables 1 and 2 maps a cohort to the study's group labels, with the study's cut-offs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BINARY_CUTOFFS",
    "FACTOR_COLUMNS",
    "LANDMARKS",
    "STUDY_GROUPINGS",
    "groupings",
    "published_targets",
    "study_groups",
]

LANDMARKS = (6.0, 12.0, 18.0, 24.0)


def _two(column: str, cut: float, low: str, high: str) -> Callable[[pd.DataFrame], np.ndarray]:
    return lambda d: np.where(d[column].astype(float) < cut, low, high)


STUDY_GROUPINGS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "age": _two("age_years", 60, "<60", ">=60"),
    "kps": lambda d: np.select([d["kps"] <= 70, d["kps"] <= 80], ["<=70", "70-80"], ">80"),
    "seed_activity_mci": _two("seed_activity_mci", 0.5, "<0.5", ">=0.5"),
    "t_stage": lambda d: d["t_stage"].astype(str).str[:2].to_numpy(),
    "n_stage": lambda d: d["n_stage"].astype(str).to_numpy(),
    "m_stage": lambda d: d["m_stage"].astype(str).to_numpy(),
    "pathological_grade": lambda d: np.where(d["pathological_grade"].astype(str) == "low", "low", "moderate_or_high"),
    "prior_ebrt_dose_gy": lambda d: np.select(
        [d["prior_ebrt_dose_gy"] <= 50, d["prior_ebrt_dose_gy"] <= 60], ["<=50", "50-60"], ">60"
    ),
    "lesion_volume_cm3": _two("lesion_volume_cm3", 20, "<20", ">=20"),
    "d90_gy": _two("d90_gy", 110, "<110", ">=110"),
    "post_implant_chemotherapy": lambda d: np.where(d["post_implant_chemo"].astype(bool), "yes", "no"),
    "recurrence_interval_months": _two("recurrence_interval_months", 10, "<10", ">=10"),
    "short_term_response": lambda d: np.where(d["response_3mo"].astype(str).isin(["CR", "PR"]), "CR+PR", "SD+PD"),
}


# factor -> the cohort column it groups
FACTOR_COLUMNS: dict[str, str] = {
    "age": "age_years",
    "kps": "kps",
    "seed_activity_mci": "seed_activity_mci",
    "t_stage": "t_stage",
    "n_stage": "n_stage",
    "m_stage": "m_stage",
    "pathological_grade": "pathological_grade",
    "prior_ebrt_dose_gy": "prior_ebrt_dose_gy",
    "lesion_volume_cm3": "lesion_volume_cm3",
    "d90_gy": "d90_gy",
    "post_implant_chemotherapy": "post_implant_chemo",
    "recurrence_interval_months": "recurrence_interval_months",
    "short_term_response": "response_3mo",
}

# factor -> (column, the study's cut-off); "<cut" versus ">=cut"
BINARY_CUTOFFS: dict[str, tuple[str, float]] = {
    "age": ("age_years", 60),
    "seed_activity_mci": ("seed_activity_mci", 0.5),
    "lesion_volume_cm3": ("lesion_volume_cm3", 20),
    "d90_gy": ("d90_gy", 110),
    "recurrence_interval_months": ("recurrence_interval_months", 10),
}


def groupings(cutoffs: dict[str, float] | None = None) -> dict[str, Callable[[pd.DataFrame], np.ndarray]]:
    """The study's groupings, with other cut-offs for the two-group numeric factors if given.

    >>> groupings({"d90_gy": 120})["d90_gy"](pd.DataFrame({"d90_gy": [100, 125]})).tolist()
    ['<120', '>=120']
    """
    out = dict(STUDY_GROUPINGS)
    for factor, cut in (cutoffs or {}).items():
        if factor not in BINARY_CUTOFFS:
            from riskmodel.errors import UserInputError

            raise UserInputError(f"no configurable cut-off for {factor!r}; choose from {', '.join(BINARY_CUTOFFS)}")
        col = BINARY_CUTOFFS[factor][0]
        out[factor] = _two(col, cut, f"<{cut:g}", f">={cut:g}")
    return out


def study_groups(data: pd.DataFrame) -> pd.DataFrame:
    """One column per study factor holding each patient's group label."""
    return pd.DataFrame({f: fn(data) for f, fn in STUDY_GROUPINGS.items()}, index=data.index)


@cache
def published_targets() -> dict[str, Any]:
    """The study's published figures (installed with riskmodel, or from the checkout's data/)."""
    package = Path(__file__).resolve().parents[2]  # riskmodel/
    for candidate in (package / "_data" / "published_targets.json", package.parent / "data" / "published_targets.json"):
        if candidate.exists():
            return dict(json.loads(candidate.read_text(encoding="utf-8")))
    raise FileNotFoundError("published_targets.json is not installed")
