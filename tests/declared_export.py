"""A messy multi-centre clinical export with a known true model, for the declared-cohort tests.

Unlike the bundled study it looks like a hospital's spreadsheet: headers with units, the time in
days, status codes 0 (censored) / 1 (the event) / 2 (a competing event), text category codes, an
identifier column, a next-of-kin column, a date column, an empty column, and two covariates
(ECOG, albumin) missing at random: albumin more often at one centre and in older patients, ECOG
more often in older patients and at another centre. Missingness depends only on observed
columns, so the data are MAR.

The event of interest has a Weibull (shape 1.3) cause-specific hazard, proportional in the true
linear predictor :data:`TRUE_LOG_HR` (per unit: years, g/L, ECOG level); the competing event is
independent of the covariates and of the event, so it censors the event of interest at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "TRUE_LOG_HR", "Export", "messy_export"]

# the true log hazard ratios of the event of interest (the reference levels: F, ADC, non-smoker)
TRUE_LOG_HR = {
    "age": 0.04,
    "male": 0.30,
    "histology_SCC": 0.40,
    "histology_NOS": 0.70,
    "ecog": 0.35,
    "albumin": -0.06,
    "smoker": 0.25,
}
COLUMNS = {
    "id": "Subject",
    "centre": "Hospital",
    "age": "Age at diagnosis (years)",
    "sex": "Sex",
    "histology": "Histology",
    "ecog": "ECOG",
    "albumin": "Albumin (g/L)",
    "smoker": "Smoker",
    "time": "Time to event (days)",
    "status": "Status",
    "kin": "Next of kin",
    "diagnosed": "Date of diagnosis",
    "comments": "Comments",
}


@dataclass(frozen=True)
class Export:
    """The export as written (``raw``), every covariate before values were removed (``full``),
    and the true linear predictor of each patient."""

    raw: pd.DataFrame
    full: pd.DataFrame
    true_lp: np.ndarray


def messy_export(n: int, seed: int) -> Export:
    """``n`` patients of the export described in the module docstring."""
    rng = np.random.default_rng(seed)
    centre = rng.choice(["North", "South", "East"], n, p=[0.45, 0.35, 0.20])
    age = np.clip(rng.normal(64, 9, n).round(), 30, 90)
    male = rng.random(n) < 0.58
    histology = rng.choice(["ADC", "SCC", "NOS"], n, p=[0.50, 0.35, 0.15])
    ecog = rng.choice([0, 1, 2, 3], n, p=[0.35, 0.35, 0.20, 0.10]).astype(float)
    albumin = (rng.normal(38, 5, n) - 1.5 * ecog).round(1)  # sicker patients have less albumin
    smoker = (rng.random(n) < 0.4).astype(int)
    b = TRUE_LOG_HR
    lp = (
        b["age"] * (age - 64)
        + b["male"] * male
        + np.select([histology == "SCC", histology == "NOS"], [b["histology_SCC"], b["histology_NOS"]], 0.0)
        + b["ecog"] * ecog
        + b["albumin"] * (albumin - 38)
        + b["smoker"] * smoker
    )
    event_time = 1100 * (rng.exponential(1.0, n) * np.exp(-lp)) ** (1 / 1.3)  # H(t) = (t/1100)^1.3 e^lp
    competing_time = rng.exponential(3000, n)
    censor_time = rng.uniform(60, 1500, n)
    time = np.minimum.reduce([event_time, competing_time, censor_time])
    status = np.where(time == event_time, 1, np.where(time == competing_time, 2, 0))
    full = pd.DataFrame(
        {
            COLUMNS["id"]: [f"KX{90000 + 7 * i}" for i in range(n)],
            COLUMNS["centre"]: centre,
            COLUMNS["age"]: age.astype(int),
            COLUMNS["sex"]: np.where(male, "M", "F"),
            COLUMNS["histology"]: histology,
            COLUMNS["ecog"]: ecog,
            COLUMNS["albumin"]: albumin,
            COLUMNS["smoker"]: smoker,
            COLUMNS["time"]: np.floor(time).astype(int) + 1,
            COLUMNS["status"]: status,
            COLUMNS["kin"]: [f"Ms Quillfeather {9000 + i}" for i in range(n)],
            COLUMNS["diagnosed"]: (pd.Timestamp("2012-01-01") + pd.to_timedelta(rng.integers(0, 2500, n), "D"))
            .strftime("%Y-%m-%d")
            .tolist(),
            COLUMNS["comments"]: [""] * n,
        }
    )
    raw = full.copy()
    older = (age - 64) / 9
    p_albumin = 1 / (1 + np.exp(-(-2.0 + 1.8 * (centre == "South") + 0.3 * older)))
    p_ecog = 1 / (1 + np.exp(-(-2.2 + 0.7 * older + 0.8 * (centre == "East"))))
    raw.loc[rng.random(n) < p_albumin, COLUMNS["albumin"]] = np.nan
    raw.loc[rng.random(n) < p_ecog, COLUMNS["ecog"]] = np.nan
    return Export(raw, full, lp)
