"""A cohort declared by the experiment: identifiers, covariates and endpoints of any clinical export.

The ``cohort:`` section of an experiment YAML says which columns of the user's file are what:

.. code-block:: yaml

    cohort:
      id: Patient ID
      centre: Site
      covariates:
        - {name: age, column: "Age (years)", kind: numeric, unit: years, range: [18, 110]}
        - {name: ecog, column: ECOG, kind: ordinal, levels: ["0", "1", "2", "3"]}
        - {name: arm, column: Arm, kind: categorical, levels: [A, B], reference: A}
        - {name: marker, column: "CEA (ng/mL)", kind: numeric, encoding: log, missing: impute}
        - {name: response, column: "Response 3m", kind: categorical, levels: [CR, PR, SD, PD],
           reference: CR, measured_at_months: 3,
           event_at_landmark: [{endpoint: pfs, levels: [PD], meaning: "progression at the 3-month CT"}]}
      endpoints:
        - {name: os, time: "OS (days)", time_unit: days, event: Status, event_codes: [1]}
        - {name: pfs, time: "PFS (days)", time_unit: days, event: Progression, event_codes: [1]}

Everything downstream reads it: loading and validation (:mod:`riskmodel.cohort.declared`), the
model features (:class:`riskmodel.features.DeclaredFeatures`), the saved model (which carries
its declaration), scoring and the reports. The declaration's own rules are checked here, each
with its key path; the rules that need the data are checked when the file is read.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from riskmodel.cohort.competing import AfterCensoring
from riskmodel.core.strict import StrictModel

__all__ = [
    "SPLINE_KNOTS",
    "TIME_UNITS_MONTHS",
    "CohortDeclaration",
    "CovariateDeclaration",
    "EndpointDeclaration",
    "EventAtLandmark",
    "Kind",
    "MissingPolicy",
]

Kind = Literal["numeric", "binary", "ordinal", "categorical"]
MissingPolicy = Literal["refuse", "complete_case", "indicator", "impute"]
EncodingName = Literal["linear", "log", "spline", "threshold"]
# months per unit: a year is 365.25 days, a month a twelfth of it
TIME_UNITS_MONTHS: dict[str, float] = {"days": 12 / 365.25, "weeks": 7 * 12 / 365.25, "months": 1.0, "years": 12.0}
# Harrell's knot placement (Regression Modeling Strategies, 2nd ed., Table 2.3): quantiles by k
SPLINE_KNOTS: dict[int, tuple[float, ...]] = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
    6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
    7: (0.025, 0.1833, 0.3417, 0.50, 0.6583, 0.8167, 0.975),
}

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
Level = Annotated[str, Field(min_length=1, max_length=100)]
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]


def _finite_pair(value: list[float] | None, what: str) -> None:
    if value is None:
        return
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{what} must be two finite numbers, low ≤ high; got [{low}, {high}]")


class EventAtLandmark(StrictModel):
    """Levels of a covariate measured after time zero that mean an endpoint's event has already
    happened (progressive disease at the 3-month CT is local failure): a patient with one is not at
    risk after the landmark, and scoring refuses them for that endpoint."""

    endpoint: Name = Field(description="The endpoint whose event these levels mean.")
    levels: list[Level] = Field(min_length=1, description="The levels meaning the event has happened.")
    meaning: str = Field(
        "", max_length=200, description="Said when a patient is refused, e.g. 'local failure at the 3-month CT'."
    )


class CovariateDeclaration(StrictModel):
    """One predictor: where it is, what it is, how it enters the model and what to do when missing."""

    name: Name = Field(description="The covariate's name in the model (letters, digits, underscores).")
    column: str = Field(min_length=1, description="Its column header in the data file (as written there).")
    kind: Kind
    unit: str = Field("", description="Free text, shown in reports, e.g. 'Gy', 'ng/mL'.")
    levels: list[Level] | None = Field(
        None, description="Ordinal: the levels in order (lowest first). Categorical: the allowed levels."
    )
    reference: Level | None = Field(None, description="Categorical: the level the others are compared with.")
    range: Pair | None = Field(None, description="Numeric: [low, high]; outside it is an error.")
    plausible: Pair | None = Field(None, description="Numeric: [low, high]; outside it is a warning.")
    phi: Literal["age"] | None = Field(
        None,
        description="age: an age in years, shared as 90+ above 89 (HIPAA Safe Harbor) in model files, pages and "
        "reports. A numeric covariate in years whose name contains the word 'age' is an age without it.",
    )
    measured_at_months: float = Field(
        0.0, ge=0, description="When it is measured, in months after time zero; needs a landmark at least as late."
    )
    event_at_landmark: list[EventAtLandmark] = Field(
        default_factory=list,
        description="Levels meaning an endpoint's event has already happened when this covariate is measured "
        "(e.g. {endpoint: lc, levels: [PD]}): scoring refuses such a patient for that endpoint.",
    )
    encoding: EncodingName = Field(
        "linear", description="Numeric: linear, log, spline (restricted cubic, `knots`) or threshold (`threshold`)."
    )
    knots: int = Field(4, ge=3, le=7, description="Knots of a spline, placed at Harrell's quantiles.")
    threshold: float | None = Field(None, description="Threshold encoding: a flag for value ≥ threshold.")
    missing: MissingPolicy = Field(
        "refuse",
        description="refuse (an error), complete_case (drop the patient), indicator (a missing flag plus a "
        "constant fill), or impute (multiple imputation inside the pipeline).",
    )

    # A rule about one key is a field validator, so that its error is located at that key
    # (cohort.covariates[2].reference); ``info.data`` holds the keys declared above it that were valid.
    @field_validator("reference")
    @classmethod
    def _reference_is_a_level(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind, levels = info.data.get("kind"), info.data.get("levels")
        if value is not None and kind is not None and kind != "categorical":
            raise ValueError("only a categorical covariate has a reference level")
        if value is not None and levels is not None and value not in levels:
            raise ValueError(f"reference level {value!r} is not among the levels {levels}")
        return value

    @field_validator("range", "plausible")
    @classmethod
    def _limits_fit_the_kind(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind != "numeric":
            raise ValueError(f"range and plausible apply to numeric covariates, not {kind} ones")
        _finite_pair(value, str(info.field_name))
        return value

    @field_validator("phi")
    @classmethod
    def _phi_fits_the_kind(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind != "numeric":
            raise ValueError(f"phi: {value} applies to numeric covariates only, not to a {kind} one")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding_fits_the_kind(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if value != "linear" and kind is not None and kind != "numeric":
            raise ValueError(f"encoding {value} applies to numeric covariates only, not to a {kind} one")
        return value

    @model_validator(mode="after")
    def _levels_fit_the_kind(self) -> CovariateDeclaration:
        if self.kind in ("ordinal", "categorical") and not self.levels:
            raise ValueError(f"a {self.kind} covariate needs its levels")
        if self.levels is not None and len(set(self.levels)) != len(self.levels):
            raise ValueError("levels must not repeat")
        if self.kind == "binary" and self.levels is not None and len(self.levels) != 2:
            raise ValueError("a binary covariate has exactly two levels (the second is coded 1)")
        if self.kind == "numeric" and self.levels is not None:
            raise ValueError("a numeric covariate has no levels (use kind: ordinal or categorical)")
        return self

    @model_validator(mode="after")
    def _event_levels_exist(self) -> CovariateDeclaration:
        for rule in self.event_at_landmark:
            unknown = [v for v in rule.levels if v not in (self.levels or [])]
            if unknown:
                raise ValueError(f"event_at_landmark levels {unknown} are not among the levels {self.levels}")
        return self

    @model_validator(mode="after")
    def _numbers_fit_the_kind(self) -> CovariateDeclaration:
        if (self.encoding == "threshold") != (self.threshold is not None):
            raise ValueError("encoding: threshold and a threshold value go together")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        if self.encoding == "log" and self.range is not None and self.range[0] <= 0:
            raise ValueError("a log encoding needs values above 0: its range must start above 0")
        return self

    @property
    def code_levels(self) -> list[str]:
        """The levels in the order of their codes (binary: the two, 0 then 1)."""
        return list(self.levels or [])


class EndpointDeclaration(StrictModel):
    """One time-to-event endpoint: its time column and unit, and how events are coded."""

    name: Name
    time: str = Field(min_length=1, description="The column of the time from time zero to event or censoring.")
    time_unit: Literal["days", "weeks", "months", "years"] = "months"
    event: str = Field(min_length=1, description="The column of the event status.")
    event_codes: list[int | str] = Field([1], min_length=1, description="Values meaning the event of interest.")
    competing_codes: list[int | str] = Field(
        default_factory=list, description="Values meaning a competing event (kept as event type 2)."
    )
    competing_endpoint: Name | None = Field(
        None,
        description="Another declared endpoint whose event, when it comes first, is a competing event of this one "
        "(e.g. local failure with death, the os endpoint, competing); kept as event type 2 at its time.",
    )
    competing_after_censoring: AfterCensoring | None = Field(
        None,
        description="With competing_endpoint: a patient whose competing event comes after this endpoint's "
        "censoring time is a competing event at that time (competing, the default: no event went unseen between "
        "the last assessment and it), or censored at this endpoint's own time (censored: the conservative reading).",
    )
    censored_codes: list[int | str] = Field([0], min_length=1, description="Values meaning censored.")
    zero_time: Literal["refuse", "half_day"] = Field(
        "refuse", description="An event or censoring at time 0: refused, or moved to half a day."
    )
    label: str = Field("", description="Shown in reports, e.g. 'Progression-free survival'.")

    @model_validator(mode="after")
    def _disjoint(self) -> EndpointDeclaration:
        sets = {"event_codes": self.event_codes, "competing_codes": self.competing_codes}
        sets["censored_codes"] = self.censored_codes
        seen: dict[str, str] = {}
        for key, codes in sets.items():
            for code in codes:
                text = str(code).strip()
                if text in seen:
                    raise ValueError(f"code {code!r} is in both {seen[text]} and {key}")
                seen[text] = key
        return self

    @model_validator(mode="after")
    def _rule_needs_an_endpoint(self) -> EndpointDeclaration:
        if self.competing_after_censoring is not None and self.competing_endpoint is None:
            raise ValueError("competing_after_censoring applies to a competing_endpoint; name one, or leave it out")
        return self

    @property
    def has_competing(self) -> bool:
        """Whether the endpoint declares competing events (codes of its own, or another endpoint)."""
        return bool(self.competing_codes) or self.competing_endpoint is not None

    @property
    def after_censoring(self) -> AfterCensoring:
        """The rule for a competing event after this endpoint's censoring (``competing`` unless declared)."""
        return self.competing_after_censoring or "competing"

    @property
    def months_per_unit(self) -> float:
        """Months in one unit of the time column."""
        return TIME_UNITS_MONTHS[self.time_unit]


class CohortDeclaration(StrictModel):
    """The columns of a clinical export: identifiers, covariates and endpoints."""

    id: str = Field(min_length=1, description="The patient-identifier column (never logged; pages show a pseudonym).")
    centre: str | None = Field(None, description="The centre (site) column, for reports and validation by centre.")
    time_origin: str = Field(
        "start of follow-up",
        min_length=1,
        description="What time zero of every endpoint is (e.g. 'diagnosis', 'randomisation', 'start of "
        "radiotherapy'); reports and patient pages say 'months after' it.",
    )
    covariates: list[CovariateDeclaration] = Field(min_length=1)
    endpoints: list[EndpointDeclaration] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CohortDeclaration:
        names = [c.name for c in self.covariates]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"covariate names must be distinct: {', '.join(repeated)} repeats")
        endpoint_names = [e.name for e in self.endpoints]
        repeated = sorted({n for n in endpoint_names if endpoint_names.count(n) > 1})
        if repeated:
            raise ValueError(f"endpoint names must be distinct: {', '.join(repeated)} repeats")
        clash = sorted(set(names) & set(endpoint_names))
        if clash:
            raise ValueError(f"{', '.join(clash)} names both a covariate and an endpoint")
        unknown = sorted({r.endpoint for c in self.covariates for r in c.event_at_landmark} - set(endpoint_names))
        if unknown:
            raise ValueError(f"event_at_landmark names endpoints that are not declared: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _competing_endpoints(self) -> CohortDeclaration:
        """A competing endpoint is another declared endpoint, and no chain of them loops."""
        names = self.endpoint_names
        for i, e in enumerate(self.endpoints):
            key = f"endpoints[{i}].competing_endpoint"
            other = e.competing_endpoint
            if other is None:
                continue
            if other == e.name:
                raise ValueError(f"{key}: {other!r} is the endpoint itself; name another declared endpoint")
            if other not in names:
                raise ValueError(f"{key}: {other!r} is not a declared endpoint (declared: {', '.join(names)})")
            chain = [e.name, other]
            while (nxt := self.endpoint(chain[-1]).competing_endpoint) is not None:
                if nxt in chain:
                    loop = " → ".join([*chain[chain.index(nxt) :], nxt])
                    raise ValueError(f"{key}: the competing endpoints go round in a loop ({loop})")
                chain.append(nxt)
        return self

    def covariate(self, name: str) -> CovariateDeclaration:
        """The covariate called ``name``."""
        return next(c for c in self.covariates if c.name == name)

    def endpoint(self, name: str) -> EndpointDeclaration:
        """The endpoint called ``name``."""
        return next(e for e in self.endpoints if e.name == name)

    @property
    def endpoint_names(self) -> list[str]:
        """The declared endpoints' names, in order."""
        return [e.name for e in self.endpoints]

    def competing_closure(self, names: Collection[str]) -> list[str]:
        """``names`` and, after them, the competing endpoints they need (their columns must be read)."""
        out = list(dict.fromkeys(names))
        for name in out:  # grows while it is walked: a chain of competing endpoints
            other = self.endpoint(name).competing_endpoint if name in self.endpoint_names else None
            if other is not None and other not in out:
                out.append(other)
        return out

    def source_columns(self, *, outcomes: bool = True) -> list[str]:
        """The data file's columns this declaration reads."""
        cols = [self.id, *([self.centre] if self.centre else []), *(c.column for c in self.covariates)]
        if outcomes:
            cols += [c for e in self.endpoints for c in (e.time, e.event)]
        return list(dict.fromkeys(cols))

    def latest_measurement(self) -> float:
        """The latest ``measured_at_months`` of any covariate: the landmark must be at least this."""
        return max((c.measured_at_months for c in self.covariates), default=0.0)
