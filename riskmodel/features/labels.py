"""Clinical labels: how a model input or feature is named and shown to a clinician.

A model feature is an encoding ("m1" = 1, "log_lesion_volume_cm3" = 2.526); a clinician reads
the value it came from ("M1", "lesion volume 12.5 cm³"). This is the one mapping from a feature
column to its clinical label and shown value, read by every plot and page that speaks to a
clinician (patient pages, their SHAP waterfalls and what-if curves).

* :func:`input_label` names an input column ("D90", "3-month response"), with :func:`input_unit`.
* :func:`shown_input` shows one input value with its label and unit ("D90 120 Gy", "age 90+ years").
* :func:`feature_input` finds the input a model feature is computed from.
* :func:`feature_labels` shows one patient's model features as the clinical values they encode.
* :func:`column_label` names a model column as a clinician reads it, for tables and figures of the
  whole model ("M stage M1", "lesion volume (cm³, log scale)", "D90 (spline term 1)").

Ages follow Safe Harbor (90+) through :func:`riskmodel.features.safe_harbor.shown_value`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.features.safe_harbor import is_age, shown_value

__all__ = [
    "CLINICAL_NAMES",
    "column_label",
    "column_labels",
    "feature_input",
    "feature_labels",
    "input_label",
    "input_unit",
    "relabel",
    "shown_input",
    "variable_label",
]

# the bundled study's columns as a clinician names them
CLINICAL_NAMES: dict[str, str] = {
    "age_years": "age",
    "sex": "sex",
    "kps": "KPS",
    "pathological_grade": "grade",
    "t_stage": "T stage",
    "n_stage": "N stage",
    "m_stage": "M stage",
    "prior_ebrt_dose_gy": "prior EBRT dose",
    "prior_ebrt_fractions": "prior EBRT fractions",
    "recurrence_interval_months": "recurrence interval",
    "lesion_volume_cm3": "lesion volume",
    "seed_activity_mci": "seed activity",
    "seed_count": "seeds",
    "prescription_dose_gy": "prescription dose",
    "d90_gy": "D90",
    "d100_gy": "D100",
    "skin_d2cc_gy": "skin D2cc",
    "response_3mo": "3-month response",
    "post_implant_chemo": "chemotherapy after implant",
}
_UNITS = {"cm3": "cm³", "points": "", "mm3": "mm³"}
# model features of the study's blocks whose input is not a prefix of their name
_CLINICAL_SOURCES = {"m1": "m_stage", "grade_moderate_or_high": "pathological_grade"}
_COMPUTED = {"bed": "BED", "eqd2": "EQD2"}


def input_label(name: str, declaration: Any = None) -> str:
    """An input column as a clinician names it.

    >>> input_label("d90_gy"), input_label("lesion_volume_cm3")
    ('D90', 'lesion volume')
    """
    if name in CLINICAL_NAMES:
        return CLINICAL_NAMES[name]
    return name.replace("_", " ")


def input_unit(name: str, declaration: Any = None) -> str:
    """The unit an input is shown in ("Gy", "cm³"); "" for none."""
    unit = ""
    if declaration is not None:
        c = next((c for c in declaration.covariates if c.name == name), None)
        unit = c.unit if c is not None else ""
    else:
        from riskmodel.cohort.contract import COLUMNS

        unit = next((c.unit for c in COLUMNS if c.name == name), "")
    return _UNITS.get(unit, unit)


def shown_input(name: str, value: Any, declaration: Any = None) -> str:
    """One input value with its label and unit, as a clinician reads it.

    >>> shown_input("d90_gy", 120.0), shown_input("lesion_volume_cm3", 12.5), shown_input("m_stage", "M1")
    ('D90 120 Gy', 'lesion volume 12.5 cm³', 'M stage M1')
    >>> shown_input("age_years", 93.0), shown_input("post_implant_chemo", True)
    ('age 90+ years', 'chemotherapy after implant yes')
    """
    label = input_label(name, declaration)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return f"{label} missing"
    if isinstance(value, bool | np.bool_):
        return f"{label} {'yes' if value else 'no'}"
    if isinstance(value, int | float | np.number):
        unit = input_unit(name, declaration)
        return f"{label} {shown_value(float(value), age=is_age(name, declaration))}{' ' + unit if unit else ''}"
    return f"{label} {value}"


def feature_input(feature: str, inputs: Sequence[str]) -> str | None:
    """The input column a model feature is computed from; None for one computed from several (BED).

    >>> feature_input("log_lesion_volume_cm3", ["d90_gy", "lesion_volume_cm3"])
    'lesion_volume_cm3'
    >>> feature_input("m1", ["m_stage"]), feature_input("response_cr_pr", ["response_3mo"])
    ('m_stage', 'response_3mo')
    """
    if feature in _CLINICAL_SOURCES and _CLINICAL_SOURCES[feature] in inputs:
        return _CLINICAL_SOURCES[feature]
    if feature.startswith("response_") and "response_3mo" in inputs:
        return "response_3mo"
    stem = feature.removeprefix("log_")
    matches = [c for c in inputs if stem == c or stem.startswith(f"{c}_") or feature.startswith(f"{c}_")]
    if feature.startswith(("d90_ge_", "d90_high")) and "d90_gy" in inputs:
        return "d90_gy"
    return max(matches, key=len) if matches else None


def _computed_label(feature: str) -> str:
    """A feature computed from several inputs: "BED implant (Gy, α/β 10)"."""
    match = re.fullmatch(r"(bed|eqd2)_(\w+?)_gy_ab([\d.]+)", feature)
    if match is None:
        return feature.replace("_", " ")
    kind, part, ab = match.groups()
    return f"{_COMPUTED[kind]} {part} (Gy, α/β {ab})"


def column_label(feature: str, inputs: Sequence[str], declaration: Any = None) -> str:
    """A model column as a clinician names it, for a table or figure of the whole model.

    >>> inputs = ["d90_gy", "lesion_volume_cm3", "m_stage", "t_stage", "response_3mo"]
    >>> column_label("d90_gy", inputs), column_label("log_lesion_volume_cm3", inputs), column_label("m1", inputs)
    ('D90 (Gy)', 'lesion volume (cm³, log scale)', 'M stage M1')
    >>> column_label("t_stage_T3", inputs), column_label("response_cr_pr", inputs)
    ('T stage T3', '3-month response CR/PR')
    >>> column_label("d90_ge_110gy", inputs), column_label("d90_gy_rcs1", inputs)
    ('D90 ≥ 110 Gy', 'D90 (spline term 1)')
    """
    source = feature_input(feature, inputs)
    if source is None:
        return _computed_label(feature)
    label, unit = input_label(source, declaration), input_unit(source, declaration)
    fixed = {
        "m1": "M stage M1",
        "grade_moderate_or_high": "grade moderate or high",
        "response_cr_pr": "3-month response CR/PR",
    }
    if feature in fixed:
        return fixed[feature]
    threshold = re.fullmatch(r"d90_ge_([\d.]+)gy", feature)
    spline = re.fullmatch(rf"{re.escape(source)}_rcs(\d+)", feature)
    if feature.endswith("_missing"):
        return f"{label} missing"
    if threshold:
        return f"{label} ≥ {threshold.group(1)} Gy"
    if spline:
        return f"{label} (spline term {spline.group(1)})"
    if feature == f"log_{source}":
        return f"{label} ({unit + ', ' if unit else ''}log scale)"
    if feature.endswith("_ordinal"):
        return f"{label} (ordinal code)"
    if feature.startswith(f"{source}_"):
        return f"{label} {feature[len(source) + 1 :]}"
    return f"{label} ({unit})" if unit else label


def variable_label(name: str, declaration: Any = None) -> str:
    """An input as a figure or table names it: "D90 (Gy)", "M stage".

    >>> variable_label("lesion_volume_cm3"), variable_label("m_stage")
    ('lesion volume (cm³)', 'M stage')
    """
    unit = input_unit(name, declaration)
    return f"{input_label(name, declaration)} ({unit})" if unit else input_label(name, declaration)


def column_labels(
    features: Sequence[str], inputs: Sequence[str], declaration: Any = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(model column → its clinical label, cohort column → its clinical name with unit): the labels
    of a report's tables and lists (the model report's ``ModelFacts.labels`` and ``input_labels``)."""
    columns = {str(n): column_label(str(n), inputs, declaration) for n in features}
    return columns, {str(c): variable_label(str(c), declaration) for c in inputs}


def relabel(frame: pd.DataFrame, labels: dict[str, str], column: str | None = None) -> pd.DataFrame:
    """A table with its index (or ``column``) of model or cohort columns shown as their ``labels``."""
    if column is not None and column in frame.columns:
        return frame.assign(**{column: [labels.get(str(v), str(v)) for v in frame[column]]})
    if column is None:
        out = frame.rename(index=lambda v: labels.get(str(v), str(v)))
        out.index.name = frame.index.name
        return out
    return frame


def _feature_label(feature: str, value: float, source: str | None, row: pd.Series, declaration: Any) -> str:
    if source is None:
        kind = feature.split("_")[0]
        part = feature.split("_")[1] if feature.count("_") >= 1 else ""
        return f"{_COMPUTED.get(kind, kind)} {part} {value:.3g} Gy".replace("  ", " ")
    raw = row.get(source)
    if feature.endswith("_missing"):
        return f"{input_label(source, declaration)} {'missing' if value else 'recorded'}"
    if source == "response_3mo" and feature == "response_cr_pr":
        return f"3-month response {raw} ({'CR/PR' if value else 'SD/PD'})"
    return shown_input(source, raw, declaration)


def feature_labels(features: Any, row: pd.Series, Z: Any, declaration: Any = None) -> list[str]:
    """One patient's model features as the clinical values they encode, in the features' order.

    ``row`` is the patient's validated inputs; ``Z`` the same patient's feature row (read only
    for features computed from several inputs, such as BED, shown in Gy).
    """
    names = [str(n) for n in features.get_feature_names_out()]
    inputs = list(features.input_columns())
    return [
        _feature_label(name, float(z), feature_input(name, inputs), row, declaration)
        for name, z in zip(names, Z, strict=True)
    ]
