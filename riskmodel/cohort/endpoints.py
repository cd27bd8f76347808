"""Outcome targets: LC and OS as scikit-survival arrays, landmarks, and the competing-risk view of LC."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskmodel.cohort.competing import COMPETING, AfterCensoring, competing_view
from riskmodel.cohort.contract import ENDPOINT_LABELS, ENDPOINTS, OUTCOME_COLUMNS, Endpoint
from riskmodel.cohort.load import Cohort, contract_competing
from riskmodel.errors import GuaranteeTimeBiasError, UserInputError
from riskmodel.stats import competing_array, survival_array

__all__ = [
    "DEATH_WITHOUT_PROGRESSION",
    "ENDPOINTS",
    "ENDPOINT_LABELS",
    "LOCAL_PROGRESSION",
    "RESPONSE_LANDMARK_MONTHS",
    "Endpoint",
    "SurvivalData",
    "check_guarantee_time",
    "check_measurement_times",
    "competing_target",
    "local_failure_competing",
    "survival_data",
    "survival_target",
]

RESPONSE_LANDMARK_MONTHS = 3.0
POST_BASELINE_COLUMNS = frozenset({"response_3mo"})
LOCAL_PROGRESSION = 1
DEATH_WITHOUT_PROGRESSION = 2

logger = logging.getLogger(__name__)

GUARANTEE_TIME_EXPLANATION = (
    "Guarantee-time (immortal-time) bias: response_3mo is read on the CT scan 3 months after the "
    "implant, so a patient can only have a response if they were alive and event-free for those 3 "
    "months. Timing outcomes from the implant counts that guaranteed time in the responders' favour "
    "and makes response look more protective than it is. Use a landmark of at least 3 months "
    "(landmark_months: 3): time zero becomes the 3-month scan, patients with an event or censoring "
    "before it are dropped, and outcomes are timed from there. For a pre-implant planning model, "
    "leave response out."
)


def check_guarantee_time(columns: Collection[str], landmark_months: float | None) -> None:
    """Refuse post-implant columns (3-month response) without a landmark of at least 3 months.

    >>> check_guarantee_time(["d90_gy"], None)
    >>> check_guarantee_time(["d90_gy", "response_3mo"], 3.0)
    >>> check_guarantee_time(["response_3mo"], 0.0)
    Traceback (most recent call last):
    ...
    riskmodel.errors.GuaranteeTimeBiasError: response_3mo needs a landmark of at least 3 months (got 0). ...
    """
    used = sorted(POST_BASELINE_COLUMNS & set(columns))
    if used and (landmark_months is None or landmark_months < RESPONSE_LANDMARK_MONTHS):
        got = "none" if landmark_months is None else f"{landmark_months:g}"
        raise GuaranteeTimeBiasError(
            f"{', '.join(used)} needs a landmark of at least {RESPONSE_LANDMARK_MONTHS:g} months (got {got}). "
            + GUARANTEE_TIME_EXPLANATION
        )


def _frame(data: Cohort | pd.DataFrame) -> pd.DataFrame:
    return data.data if isinstance(data, Cohort) else data


def _columns(endpoint: str, known: Collection[str] = ENDPOINTS) -> tuple[str, str]:
    if endpoint not in known:
        raise UserInputError(f"unknown endpoint {endpoint!r}; choose one of {', '.join(known)}")
    return f"{endpoint}_months", f"{endpoint}_event"


def _known_endpoints(data: Cohort | pd.DataFrame) -> Collection[str]:
    if isinstance(data, Cohort) and data.declaration is not None:
        return data.declaration.endpoint_names
    return ENDPOINTS


def check_measurement_times(data: Cohort | pd.DataFrame, columns: Collection[str], landmark_months: float) -> None:
    """Refuse a covariate measured after time zero without a landmark at least that late: the
    built-in contract's 3-month response, or a declared covariate's ``measured_at_months``."""
    if not (isinstance(data, Cohort) and data.declaration is not None):
        check_guarantee_time(columns, landmark_months)
        return
    late = [c for c in data.declaration.covariates if c.name in set(columns) and c.measured_at_months > landmark_months]
    if late:
        shown = ", ".join(f"{c.name} (measured at {c.measured_at_months:g} months)" for c in late)
        raise GuaranteeTimeBiasError(
            f"{shown} needs a landmark at least that late; landmark_months is {landmark_months:g}. A value measured "
            "after time zero is known only for patients still event-free then (guarantee-time bias): set "
            "landmark_months to that time, or leave the covariate out"
        )


def survival_target(data: Cohort | pd.DataFrame, endpoint: Endpoint | str) -> np.ndarray:
    """The endpoint as a structured array with fields ``event`` (bool) and ``time`` (months)."""
    df = _frame(data)
    time_col, event_col = _columns(endpoint, _known_endpoints(data))
    missing = [c for c in (time_col, event_col) if c not in df.columns]
    if missing:
        raise UserInputError(f"endpoint {endpoint} needs the columns {', '.join(missing)}")
    return survival_array(df[event_col].to_numpy(dtype=bool), df[time_col].to_numpy(dtype=float))


@dataclass(frozen=True)
class SurvivalData:
    """Model-ready data for one endpoint: covariates, target, and what the landmark removed.

    ``competing``: ``y`` is a competing-risks target (:func:`riskmodel.stats.competing_array`:
    fields event, time, cause); the landmark then removed ``excluded_events`` patients with the
    event, ``excluded_competing`` with a competing event and ``excluded_censored`` censored, at or
    before it. Otherwise ``y`` is a survival target and ``excluded_competing`` is 0.
    """

    X: pd.DataFrame
    y: np.ndarray
    endpoint: str
    landmark_months: float
    excluded_events: int
    excluded_censored: int
    competing: bool = False
    excluded_competing: int = 0

    def describe(self) -> str:
        """One line for logs and reports (counts only)."""
        head = f"{self.endpoint.upper()}: {len(self.y)} patients, {int(self.y['event'].sum())} events"
        if self.competing:
            head += f", {int((self.y['cause'] == COMPETING).sum())} competing events"
        if self.landmark_months:
            dropped = self.excluded_events + self.excluded_censored + self.excluded_competing
            competing = f"{self.excluded_competing} with a competing event, " if self.competing else ""
            head += (
                f"; landmark {self.landmark_months:g} months dropped {dropped} patients "
                f"({self.excluded_events} with an event, {competing}{self.excluded_censored} censored before it)"
            )
        return head


def competing_target(data: Cohort | pd.DataFrame, endpoint: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(cause, time) of ``endpoint``'s competing-risks view, or None when it has no competing events.

    A cohort's ``<endpoint>_event_type`` and ``<endpoint>_cr_months`` when it has them; for a table
    of the bundled contract without them, the contract's competing endpoint (LC with death)."""
    df = _frame(data)
    state, time = f"{endpoint}_event_type", f"{endpoint}_cr_months"
    if state in df.columns and time in df.columns:
        return df[state].to_numpy(dtype=int), df[time].to_numpy(dtype=float)
    if isinstance(data, Cohort) and data.declaration is not None:
        return None
    typed, rules = contract_competing(df)
    if not any(r.endpoint == endpoint for r in rules):
        return None
    return typed[state].to_numpy(dtype=int), typed[time].to_numpy(dtype=float)


def survival_data(
    data: Cohort | pd.DataFrame,
    endpoint: Endpoint | str,
    *,
    landmark_months: float = 0.0,
    feature_columns: Collection[str] = (),
    competing: bool = False,
) -> SurvivalData:
    """Covariates and target for ``endpoint``, optionally from a landmark.

    With a landmark L > 0, patients whose event or censoring time is at or before L are dropped
    (they were not event-free *after* L) and the remaining times are shifted by L. The
    guarantee-time guard is applied to ``feature_columns``, the cohort columns a model will read.
    Outcome columns are removed from ``X``.

    ``competing=True`` and an endpoint with competing events (declared codes or a competing
    endpoint; the bundled LC with death): ``y`` is :func:`riskmodel.stats.competing_array` of the
    cause (0 censored, 1 event, 2 competing) and the competing-risks time minus L, over the patients
    whose competing-risks time is after L; a patient who died after the last local assessment is
    then at risk until death (competing_after_censoring: competing). An endpoint without competing
    events gives its plain survival target either way; ``competing=False`` the cause-specific view.
    """
    if not np.isfinite(landmark_months) or landmark_months < 0:
        raise UserInputError(f"landmark_months must be a finite number ≥ 0, got {landmark_months!r}")
    check_measurement_times(data, feature_columns, landmark_months)
    df = _frame(data)
    y = survival_target(data, endpoint)
    view = competing_target(data, endpoint) if competing else None
    if view is not None:
        y = competing_array(*view)
    keep = y["time"] > landmark_months if landmark_months > 0 else np.ones(len(y), dtype=bool)
    dropped = y[~keep]
    y = y[keep].copy()
    y["time"] -= landmark_months
    outcomes = set(data.outcomes if isinstance(data, Cohort) else OUTCOME_COLUMNS)
    outcomes |= {c for c in df.columns if c.endswith(("_event_type", "_cr_months"))}
    X = df.loc[keep, [c for c in df.columns if c not in outcomes]]
    if len(y) == 0:
        raise UserInputError(
            f"no patient is still at risk for {endpoint.upper()} after the landmark of {landmark_months:g} months"
        )
    cause = dropped["cause"] if view is not None else np.where(dropped["event"], 1, 0)
    result = SurvivalData(
        X,
        y,
        endpoint,
        float(landmark_months),
        int((cause == 1).sum()),
        int((cause == 0).sum()),
        competing=view is not None,
        excluded_competing=int((cause == COMPETING).sum()),
    )
    logger.info(result.describe())  # counts only: shareable
    return result


def local_failure_competing(
    data: Cohort | pd.DataFrame, *, landmark_months: float = 0.0, after_censoring: AfterCensoring = "competing"
) -> pd.DataFrame:
    """LC with death as a competing event: columns ``time`` and ``event_type``.

    ``event_type`` is 0 (censored), 1 (local progression) or 2 (death without local progression).
    ``after_censoring`` is the rule for a death after the last local assessment
    (:mod:`riskmodel.cohort.competing`): ``competing`` (the bundled study's declared rule) counts it
    as a death without local failure at the date of death, ``censored`` censors it at the last
    assessment. Use with Aalen-Johansen or Fine-Gray; a KM of LC treats those deaths as censored and
    so overstates local failure.
    """
    df = _frame(data)
    kind, time, _ = competing_view(
        df["lc_event"].to_numpy(int),
        df["lc_months"].to_numpy(float),
        df["os_event"].to_numpy(int),
        df["os_months"].to_numpy(float),
        after_censoring,
    )
    out = pd.DataFrame({"time": time, "event_type": kind.astype(int)}, index=df.index)
    if landmark_months > 0:
        out = out[out["time"] > landmark_months].copy()
        out["time"] -= landmark_months
    return out
