"""The schemas of a model folder's own files: ``manifest.json`` and ``model.json``.

Strict (no coercion), closed (an unknown key is refused) and finite (no NaN or infinity in a
number a prediction or a label reads). A rewritten file that breaks them is refused with one line
per problem, before anything else in the folder is read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StringConstraints, model_validator

from riskmodel.features.safe_harbor import read_bound

__all__ = ["Lineage", "Manifest", "ModelMeta"]

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Bound = FiniteFloat | Literal["90+"]  # a training-range bound; an age above 89 is stored as "90+"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Manifest(_Closed):
    """``manifest.json``: the format, the library versions, and the SHA-256 of every other file."""

    format: Literal["riskmodel-model"]
    format_version: Literal[1]
    versions: dict[Name, Annotated[str, StringConstraints(max_length=100)]]
    files: dict[Annotated[str, StringConstraints(min_length=1, max_length=300)], Sha256] = Field(max_length=10_000)


class HazardRatios(_Closed):
    """The Cox model's table as shown (descriptive: NaN where a penalised fit has no SE)."""

    table: dict[Name, list[str | float | None]]
    note: str
    method: str = ""


class InputSummary(_Closed):
    """Aggregates of one training input (riskmodel.features.summaries): mean and SD, or level shares."""

    n: int = Field(ge=0)
    mean: FiniteFloat | None = None
    sd: FiniteFloat | None = Field(default=None, ge=0)
    shares: (
        dict[Annotated[str, StringConstraints(max_length=200)], Annotated[FiniteFloat, Field(ge=0, le=1)]] | None
    ) = None


class Lineage(_Closed):
    """Where an updated model came from (``riskmodel update``): its parent, the method, the data."""

    parent_model: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    parent_run_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{8,64}$")] | None = None
    method: Literal["baseline", "slope", "refit"]
    data_digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,64}$")]
    n_patients: int = Field(ge=1)
    n_events: int = Field(ge=1)
    slope: FiniteFloat | None = None


class Development(_Closed):
    """How large the development cohort was, and whether that makes the model exploratory (below
    Riley et al.'s minimum sample size, :mod:`riskmodel.stats.samplesize`). Counts only."""

    n_patients: int = Field(ge=1)
    n_events: int = Field(ge=0)
    minimum_n: int = Field(ge=0)
    exploratory: bool


class ModelMeta(_Closed):
    """``model.json``: what a model is for, its training ranges and risk-group cut-offs."""

    endpoint: Name
    family: Name
    experiment: str
    landmark_months: FiniteFloat = Field(ge=0)
    horizons: list[Annotated[FiniteFloat, Field(gt=0)]] = Field(min_length=1)
    numeric_ranges: dict[Name, tuple[Bound, Bound]]
    categories: dict[Name, list[str | int | bool]]
    risk_cutoffs: list[FiniteFloat]
    feature_means: list[float | None] = []  # NaN for a feature never observed in training
    declaration: dict[str, Any] | None = None
    reliable_until: FiniteFloat | None = None
    min_at_risk: int | None = Field(default=None, ge=0)
    hazard_ratios: HazardRatios | None = None
    input_summaries: dict[Name, InputSummary] = {}
    lineage: Lineage | None = None
    development: Development | None = None
    features: dict[str, Any]

    @model_validator(mode="after")
    def _ordered(self) -> ModelMeta:
        if any(b < a for a, b in zip(self.risk_cutoffs, self.risk_cutoffs[1:], strict=False)):
            raise ValueError("risk_cutoffs must be in increasing order")
        low_high = [k for k, (low, high) in self.numeric_ranges.items() if read_bound(low) > read_bound(high)]
        if low_high:
            raise ValueError(f"numeric_ranges {', '.join(low_high)}: the lower bound is above the upper")
        return self
