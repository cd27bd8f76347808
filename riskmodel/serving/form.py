"""The calculator's inputs: one field per cohort column the served models read, from their declarations.

A field carries what a clinician needs to fill it in and what the server checks before any model
sees it: the clinical label (:mod:`riskmodel.features.labels`), the unit, the hard limits of the
cohort's declaration (a value outside them is impossible, the request is refused), the levels of a
category, whether it is required, and the middle of each model's training data (5th smallest to
5th largest value, :mod:`riskmodel.features.safe_harbor`), beyond which a prediction is marked as
outside the development data.

A column a model does not read but its landmark rule does (the bundled study's 3-month response,
whose PD means local failure) is asked for too: without it the rule could not refuse a patient who
is not at risk after the landmark.

:func:`request_model` turns the fields into a strict pydantic model (unknown keys refused), which
FastAPI validates every request with and publishes in its OpenAPI schema; :func:`patient_frame`
writes one request as a one-row patient table, the cells as text, as a patients file would give
them, for :meth:`riskmodel.scoring.RiskModel.score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from riskmodel.cohort.builtin import builtin_declaration
from riskmodel.cohort.declaration import CohortDeclaration, CovariateDeclaration
from riskmodel.features.labels import input_label, input_unit
from riskmodel.scoring import RiskModel
from riskmodel.scoring.landmark import NOT_AT_RISK

__all__ = ["CALCULATOR_ID", "InputField", "input_fields", "landmark_rules", "patient_frame", "request_model"]

# the identifier of the one row a request becomes: never a patient's, and never returned
CALCULATOR_ID = "calculator"


@dataclass(frozen=True)
class InputField:
    """One input of the calculator form and of the JSON API."""

    name: str  # the covariate's name: the JSON key and the form field
    column: str  # its column in a patients table (the declaration's header)
    label: str  # clinical label ("D90", "3-month response")
    kind: Literal["numeric", "binary", "ordinal", "categorical"]
    unit: str
    required: bool
    levels: list[str] | None = None
    limits: tuple[float, float] | None = None  # the declaration's hard range: outside it is impossible
    training: list[str] = field(default_factory=list)  # "LC cox: 47-151 Gy", per model reading it
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        """The field as the page and ``GET /api/inputs`` show it."""
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "unit": self.unit,
            "required": self.required,
            "levels": self.levels,
            "limits": None if self.limits is None else list(self.limits),
            "training": self.training,
            "note": self.note,
        }


def _declaration(model: RiskModel) -> CohortDeclaration:
    return model.declaration if model.declaration is not None else builtin_declaration()


def _landmark_columns(model: RiskModel, decl: CohortDeclaration) -> list[str]:
    """Covariates the model's landmark rule reads: levels meaning its endpoint's event happened."""
    if not model.landmark_months:
        return []
    return [
        c.name
        for c in decl.covariates
        if c.measured_at_months <= model.landmark_months
        and any(r.endpoint == model.endpoint for r in c.event_at_landmark)
    ]


def _training(model: RiskModel, c: CovariateDeclaration) -> str | None:
    who = f"{model.endpoint.upper()} {model.family}"
    if c.name in model.numeric_ranges:
        unit = input_unit(c.name, model.declaration)
        return f"{who}: {model.shown_range(c.name)}{' ' + unit if unit else ''}"
    if c.name in model.categories:
        return f"{who}: {', '.join(model.categories[c.name])}"
    return None


def input_fields(models: Sequence[RiskModel]) -> list[InputField]:
    """The fields of the served models, in the order of the first model's declaration.

    A field is required when a model reads it and may not have it missing (every input of a
    model of the bundled study's own features, whose features are never imputed; a declared
    covariate with ``missing: refuse`` or ``complete_case``), or when a landmark rule needs it.
    """
    found: dict[str, dict[str, Any]] = {}
    for model in models:
        decl = _declaration(model)
        rule = _landmark_columns(model, decl)
        for name in [*model.input_columns, *rule]:
            c = decl.covariate(name)
            entry = found.setdefault(name, {"c": c, "decl": model.declaration, "required": False, "training": []})
            reads = name in model.input_columns
            entry["required"] |= not reads or model.declaration is None or c.missing in ("refuse", "complete_case")
            if reads and (text := _training(model, c)) is not None:
                entry["training"].append(text)
            if not reads:
                entry["note"] = (
                    f"not a predictor of the {model.endpoint.upper()} model; its landmark rule reads it "
                    f"({', '.join(r.meaning or '/'.join(r.levels) for r in c.event_at_landmark)})"
                )
    order = {c.name: i for i, c in enumerate(_declaration(models[0]).covariates)}
    fields = []
    for name in sorted(found, key=lambda n: (order.get(n, len(order)), n)):
        e = found[name]
        cov: CovariateDeclaration = e["c"]
        fields.append(
            InputField(
                name=name,
                column=cov.column,
                label=input_label(name, e["decl"]),
                kind=cov.kind,
                unit=input_unit(name, e["decl"]),
                required=bool(e["required"]),
                levels=list(cov.code_levels) if cov.kind != "numeric" else None,
                limits=None if cov.range is None else (float(cov.range[0]), float(cov.range[1])),
                training=list(e["training"]),
                note=str(e.get("note", "")),
            )
        )
    return fields


def request_model(fields: Sequence[InputField]) -> type[BaseModel]:
    """A strict pydantic model of one patient's inputs: numbers within the hard limits, categories
    among their levels, required fields present, no other key."""
    spec: dict[str, Any] = {}
    for f in fields:
        description = f"{f.label}" + (f" ({f.unit})" if f.unit else "")
        if f.training:
            description += "; middle of the training data: " + "; ".join(f.training)
        if f.kind == "numeric":
            lo, hi = f.limits if f.limits is not None else (None, None)
            annotation: Any = float if f.required else float | None
            info = Field(
                ... if f.required else None, ge=lo, le=hi, allow_inf_nan=False, description=description, title=f.label
            )
        else:
            choice: Any = Literal[tuple(f.levels or ())]
            annotation = choice if f.required else choice | None
            info = Field(... if f.required else None, description=description, title=f.label)
        spec[f.name] = (annotation, info)
    return create_model(
        "PatientInputs",
        __config__=ConfigDict(extra="forbid", title="PatientInputs"),
        **spec,
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def patient_frame(fields: Sequence[InputField], values: dict[str, Any], id_column: str) -> pd.DataFrame:
    """One request as a one-row patients table: text cells under the declaration's column headers,
    blank where a value is missing, and the calculator's own row identifier."""
    row = {id_column: CALCULATOR_ID, **{f.column: _cell(values.get(f.name)) for f in fields}}
    return pd.DataFrame([row], dtype=object)


def landmark_rules(model: RiskModel, fields: Sequence[InputField]) -> list[dict[str, Any]]:
    """The model's landmark rule on the form's fields: per input, the levels (compared without case)
    that refuse a patient, and the reason, worded as :func:`riskmodel.scoring.landmark.landmark_refusals`
    words it."""
    decl = _declaration(model)
    names = {f.name for f in fields}
    out = []
    for name in _landmark_columns(model, decl):
        c = decl.covariate(name)
        for rule in c.event_at_landmark:
            if rule.endpoint != model.endpoint or name not in names:
                continue
            meaning = rule.meaning or (
                f"{c.name} {'/'.join(rule.levels)} at {c.measured_at_months:g} months means the "
                f"{model.endpoint.upper()} event has happened"
            )
            out.append(
                {"input": name, "levels": [v.casefold() for v in rule.levels], "reason": f"{meaning}; {NOT_AT_RISK}"}
            )
    return out
