"""The landmark rule at scoring: a patient not at risk after the model's landmark is refused.

A landmark model's time zero is the landmark (say the 3-month CT); it was trained only on patients
still at risk then (:func:`riskmodel.cohort.survival_data` drops follow-up ending at or before it).
A prediction for a patient who had already failed is meaningless, however confident it looks (an
LC model gave a patient with progressive disease at 3 months an S(12) of 4e-10). Scoring refuses
such a patient, per row, with the reason, when the file shows it:

* **a covariate level that means the event has happened** (the declaration's
  ``event_at_landmark``: the bundled study declares response_3mo = PD as local failure at the
  3-month CT), when that covariate is measured no later than the landmark;
* **outcome columns** showing the endpoint's follow-up ended at or before the landmark (an event
  or a censoring), or, for the bundled study, death (``os_event`` = 1) by then.

The rule is read from the model's declaration, or for a model of the bundled study's own features
from its declaration (:func:`riskmodel.cohort.builtin.builtin_declaration`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.builtin import builtin_declaration
from riskmodel.cohort.declaration import CohortDeclaration

__all__ = ["NOT_AT_RISK", "landmark_refusals"]

NOT_AT_RISK = "not at risk after the landmark"


def _declaration(model: Any) -> CohortDeclaration:
    return model.declaration if model.declaration is not None else builtin_declaration()


def _text(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v).strip() for v in values]


def _level_refusals(model: Any, df: pd.DataFrame, decl: CohortDeclaration) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for c in decl.covariates:
        if c.measured_at_months > model.landmark_months or c.column not in df.columns:
            continue
        for rule in c.event_at_landmark:
            if rule.endpoint != model.endpoint:
                continue
            hit = _level_mask(df[c.column], {v.casefold() for v in rule.levels})
            meaning = rule.meaning or (
                f"{c.name} {'/'.join(rule.levels)} at {c.measured_at_months:g} months means the "
                f"{model.endpoint.upper()} event has happened"
            )
            for row in df.index[hit]:
                out.setdefault(row, f"{meaning}; {NOT_AT_RISK}")
    return out


def _level_mask(values: pd.Series, wanted: set[str]) -> np.ndarray:
    """Where a cell, as text without its outer spaces, is one of ``wanted`` (case-folded): each
    distinct value is looked at once, not each row."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    hits = np.array([str(v).strip().casefold() in wanted for v in uniques], dtype=bool)
    return np.append(hits, False)[codes]  # the sentinel -1 (a missing cell) reads the appended False


def _numbers(values: pd.Series) -> np.ndarray:
    return np.asarray(pd.to_numeric(values, errors="coerce"), dtype=float)


def _outcome_refusals(model: Any, df: pd.DataFrame, decl: CohortDeclaration) -> dict[Any, str]:
    """Follow-up of the model's endpoint ending at or before the landmark; death by then (bundled study)."""
    out: dict[Any, str] = {}
    landmark = model.landmark_months
    ep = next((e for e in decl.endpoints if e.name == model.endpoint), None)
    if ep is not None and ep.time in df.columns:
        months = _numbers(df[ep.time]) * ep.months_per_unit
        ended = np.flatnonzero(np.isfinite(months) & (months <= landmark))  # only these rows are read
        events = _text(df[ep.event].iloc[ended]) if ep.event in df.columns else [None] * len(ended)
        codes = {str(v).strip() for v in ep.event_codes}
        for row, t, e in zip(df.index[ended], months[ended], events, strict=True):
            what = f"{model.endpoint.upper()} event" if e in codes else f"{model.endpoint.upper()} follow-up ended"
            out[row] = f"{what} at {t:.3g} months, at or before the {landmark:g}-month landmark; {NOT_AT_RISK}"
    if model.declaration is None and {"os_months", "os_event"} <= set(df.columns):
        died = (_numbers(df["os_months"]) <= landmark) & (_numbers(df["os_event"]) == 1)
        for row, t in zip(df.index[died], _numbers(df["os_months"])[died], strict=True):
            out.setdefault(row, f"died at {t:.3g} months, by the {landmark:g}-month landmark; {NOT_AT_RISK}")
    return out


def landmark_refusals(model: Any, df: pd.DataFrame) -> dict[Any, str]:
    """Per row of ``df`` (raw cells) that ``model`` must refuse, the reason; empty without a landmark.

    A row is refused when a covariate measured by the landmark shows the endpoint's event has
    happened (``event_at_landmark``), or outcome columns show its follow-up ended by the landmark.
    """
    if not model.landmark_months:
        return {}
    decl = _declaration(model)
    refused = _level_refusals(model, df, decl)
    for row, reason in _outcome_refusals(model, df, decl).items():
        refused.setdefault(row, reason)
    return refused
