"""The JSON API's answers, as pydantic models: FastAPI checks every answer against them and
publishes them in the OpenAPI schema (``/openapi.json``, browsable at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CompetingProbability", "FieldProblem", "HorizonProbability", "ModelAnswer", "Prediction", "ProblemReport"]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HorizonProbability(_Closed):
    """S(t) at one horizon, with its 95% band where the family has one."""

    months: float = Field(description="Months after the model's time zero.")
    survival: float = Field(description="Predicted probability of being event-free at this horizon.")
    shown: str = Field(description="The probability as shown to a clinician ('< 0.01', never '0.00').")
    lower: float | None = None
    upper: float | None = None
    unstable: bool = Field(description="Fewer than the minimum number of training patients were followed this long.")


class CompetingProbability(_Closed):
    """A competing-risk model's three probabilities at one horizon (they add up to 1)."""

    months: float = Field(description="Months after the model's time zero.")
    cif: float = Field(description="Cumulative incidence of the event of interest by this horizon.")
    cif_competing: float = Field(description="Cumulative incidence of the competing event by this horizon.")
    event_free: float = Field(description="Probability of neither event by this horizon.")
    shown: dict[str, str] = Field(description="Each probability as shown to a clinician ('< 0.01', never '0.00').")
    unstable: bool = Field(description="Fewer than the minimum number of training patients were followed this long.")


class Curve(_Closed):
    """The predicted curve S(t) on a grid to the end of training follow-up."""

    months: list[float | None]
    survival: list[float | None]
    lower: list[float | None] | None = None
    upper: list[float | None] | None = None
    band: str = Field(description="Which band, or why there is none.")


class CompetingCurve(_Closed):
    """A competing-risk model's curves on a grid to the end of training follow-up (no band)."""

    months: list[float | None]
    cif: list[float | None] = Field(description="Cumulative incidence of the event of interest.")
    cif_competing: list[float | None] = Field(description="Cumulative incidence of the competing event.")
    event_free: list[float | None] = Field(description="Probability of neither event.")
    band: str = Field(description="Why there is no band.")


class Contribution(_Closed):
    """One feature's SHAP contribution, labelled with the clinical value it encodes."""

    label: str
    value: float


class Shap(_Closed):
    """SHAP values of the risk score."""

    output: str
    base: float
    method: str
    contributions: list[Contribution]


class WhatIf(_Closed):
    """Predictions as one dose input sweeps the training range (extended to the patient's own value):
    S(horizon), or a competing-risk model's CIF of the event (and of the competing event) by it."""

    input: str
    label: str
    unit: str
    horizon: float
    outcome: str = Field("survival", description="survival (S at the horizon) or cif (a competing-risk model).")
    training_range: list[float] = Field(description="The middle of the training data (5th smallest to 5th largest).")
    values: list[float | None]
    survival: list[float | None] | None = None
    cif: list[float | None] | None = None
    cif_competing: list[float | None] | None = None
    lower: list[float | None] | None = None
    upper: list[float | None] | None = None
    extrapolated: list[bool] = Field(description="True where the value lies outside the training range.")
    band: str
    note: str


class ModelAnswer(_Closed):
    """One model's answer for the patient."""

    endpoint: str
    family: str
    experiment: str
    label: str
    time_origin: str
    horizons: list[float]
    status: str = Field(
        description="scored; outside the development data (no risk group); extrapolated: outside the development "
        "data (when the server allows extrapolation); refused (not at risk after the landmark); error."
    )
    reason: str | None = None
    risk_group: str | None = None
    risk_score: float | None = None
    flags: list[str] = Field(default_factory=list)
    horizon_probabilities: list[HorizonProbability] | None = None
    events: dict[str, str] | None = Field(
        None, description="A competing-risk model's events in words (keys cif, cif_competing, event_free)."
    )
    cumulative_incidence: list[CompetingProbability] | None = None
    curve: Curve | None = None
    cif_curve: CompetingCurve | None = None
    shap: Shap | None = None
    what_if: WhatIf | None = None


class Prediction(_Closed):
    """The answer of every served model."""

    models: list[ModelAnswer]
    note: str


class FieldProblem(_Closed):
    """One problem with the request: the field and the rule it breaks."""

    field: str
    rule: str


class ProblemReport(_Closed):
    """A refused request: one line per problem (field and rule), never the values sent."""

    message: str
    problems: list[FieldProblem]

    @classmethod
    def of(cls, problems: list[dict[str, Any]]) -> ProblemReport:
        """From (field, rule) pairs."""
        items = [FieldProblem(**p) for p in problems]
        return cls(message="; ".join(f"{p.field}: {p.rule}" for p in items), problems=items)
