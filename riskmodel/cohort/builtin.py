"""The bundled study's cohort contract as a declaration, like any other cohort's.

``cohort: brachytherapy`` in an experiment declares the bundled cohort's columns through the
same machinery a user's export goes through (:mod:`riskmodel.cohort.declared`), built here from
the contract table (:data:`riskmodel.cohort.contract.COLUMNS`), so the two cannot drift apart.
The default experiments keep the study's own feature blocks (BED, stage groupings, the published
model); a declared experiment on the same file uses the declared encodings instead.

Mapping from the contract: a number is a numeric covariate with its unit, hard range and plausible
range; a category with two values, or yes/no, is binary; the response is ordinal PD < SD < PR < CR
and measured at the 3-month landmark, where PD means local failure has happened
(``event_at_landmark``: scoring refuses an LC prediction after the landmark for a PD patient);
T/N stage are ordinal in the AJCC order; the grade is ordinal low < moderate < high. Required
contract columns are ``missing: refuse``, the optional ones ``missing: indicator``. Time zero is the
implant. LC declares death (the OS endpoint) as its competing event, with
``competing_after_censoring: competing`` (a death after the last local assessment is a death
without local failure), as the contract's ``COMPETING_ENDPOINTS`` says.
"""

from __future__ import annotations

from typing import Any

from riskmodel.cohort.contract import COLUMNS, COMPETING_ENDPOINTS, ENDPOINT_LABELS, Column
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS

__all__ = ["BUILTIN_DECLARATIONS", "builtin_declaration"]

BUILTIN_DECLARATIONS = ("brachytherapy",)

# ordered categories (lowest first); the rest are unordered
_ORDER = {
    "response_3mo": ("PD", "SD", "PR", "CR"),
    "pathological_grade": ("low", "moderate", "high"),
    "n_stage": ("N0", "N1", "N2", "N3"),
}


def _covariate(c: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "column": c.name, "unit": c.unit}
    out["missing"] = "refuse" if c.required else "indicator"
    if c.kind in ("float", "int"):
        out["kind"] = "numeric"
        if c.hard_min is not None and c.hard_max is not None:
            out["range"] = [c.hard_min, c.hard_max]
        if c.plausible is not None:
            out["plausible"] = list(c.plausible)
    elif c.kind == "bool":
        out["kind"] = "binary"
        out["levels"] = ["no", "yes"]
    elif c.name in _ORDER:
        out["kind"] = "ordinal"
        out["levels"] = list(_ORDER[c.name])
    elif c.allowed is not None and len(c.allowed) == 2:
        out["kind"] = "binary"
        out["levels"] = list(c.allowed)
    else:
        out["kind"] = "categorical"
        out["levels"] = list(c.allowed or ())
        out["missing"] = "refuse" if c.required else "indicator"
    if c.name == "response_3mo":
        out["measured_at_months"] = RESPONSE_LANDMARK_MONTHS
        # progressive disease at the 3-month CT is local failure by definition
        out["event_at_landmark"] = [{"endpoint": "lc", "levels": ["PD"], "meaning": "local failure at the 3-month CT"}]
    return out


def _competing(endpoint: str) -> dict[str, str]:
    """LC's competing event is death (the OS endpoint), with the study's rule written down."""
    if endpoint not in COMPETING_ENDPOINTS:
        return {}
    other, after_censoring = COMPETING_ENDPOINTS[endpoint]
    return {"competing_endpoint": other, "competing_after_censoring": after_censoring}


def builtin_declaration(name: str = "brachytherapy") -> CohortDeclaration:
    """A declaration shipped with riskmodel, by name (today: the bundled study's, ``brachytherapy``)."""
    if name not in BUILTIN_DECLARATIONS:
        raise KeyError(name)
    covariates = [_covariate(c) for c in COLUMNS if c.role not in ("id", "outcome")]
    endpoints = [
        {
            "name": ep,
            "time": f"{ep}_months",
            "time_unit": "months",
            "event": f"{ep}_event",
            "event_codes": [1],
            "censored_codes": [0],
            "label": label,
            **_competing(ep),
        }
        for ep, label in ENDPOINT_LABELS.items()
    ]
    return CohortDeclaration.model_validate(
        {"id": "patient_id", "time_origin": "implant", "covariates": covariates, "endpoints": endpoints}
    )
