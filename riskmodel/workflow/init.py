"""``riskmodel init``: a runnable, commented experiment declaring every column of a clinical export.

Each column other than the identifier, centre, time and event becomes a covariate whose kind is
inferred from the data:

* numbers with two values: binary; whole numbers with 3-10 values: ordinal when the header names
  an ordered scale (ECOG, performance status, grade, stage, score, a count), else categorical
  codes (a histology or site code has no order; check either way); other numbers: numeric, with
  the unit read from the header (``"CEA (ng/mL)"`` → ng/mL);
* text with up to 20 levels: categorical, the most common level the reference; text with more
  (names, notes, other identifiers) and dates: left out, commented, never modelled.

The missing share of each suggests its policy: none missing → ``refuse``; up to 5 % →
``complete_case``; more → ``impute`` (multiple imputation, categorical covariates too). The observed
range is written as a comment, for a person to turn into ``range`` and ``plausible`` limits.
What a person must check (units, ordinal order, codes, the time unit) is returned as notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from riskmodel.cohort.declaration import TIME_UNITS_MONTHS, CohortDeclaration
from riskmodel.cohort.declared import level_text
from riskmodel.cohort.load import normalise_header, read_table
from riskmodel.config import ExperimentConfig
from riskmodel.core.files import atomic_write_text
from riskmodel.errors import UserInputError
from riskmodel.privacy import years_only

__all__ = ["CompetingColumns", "Inferred", "infer_experiment"]

_UNIT = re.compile(r"^(.*?)\s*[\(\[]\s*([^\)\]]+?)\s*[\)\]]\s*$")
_TIME_UNIT_WORDS = {"day": "days", "days": "days", "d": "days", "week": "weeks", "weeks": "weeks", "wk": "weeks"}
_TIME_UNIT_WORDS |= {"month": "months", "months": "months", "mo": "months", "year": "years", "years": "years"}
_TIME_UNIT_WORDS |= {"yr": "years", "y": "years", "m": "months"}
MAX_LEVELS = 20
# headers of ordered integer scales; other integer codes are declared categorical
_ORDERED_SCALE = re.compile(
    r"ecog|\bwho\b|performance|\bps\b|kps|karnofsky|grade|stage|score|scale|level|count|number|\bn\b|nodes|"
    r"fractions|cycles|lines|dose|year|class|asa|charlson|index|size",
    re.IGNORECASE,
)


@dataclass
class Inferred:
    """What ``init`` wrote and what a person should check."""

    experiment: dict[str, Any]
    text: str  # the commented YAML
    notes: list[str] = field(default_factory=list)


def _name_and_unit(header: str) -> tuple[str, str]:
    """A covariate name and unit from a header: ``"CEA (ng/mL)"`` → (``cea``, ``ng/mL``).

    >>> _name_and_unit("Age (years)"), _name_and_unit("ECOG PS"), _name_and_unit("2nd line")
    (('age', 'years'), ('ecog_ps', ''), ('x2nd_line', ''))
    """
    match = _UNIT.match(str(header))
    base, unit = (match.group(1), match.group(2)) if match else (str(header), "")
    name = normalise_header(base) or "covariate"
    return (name if name[0].isalpha() else f"x{name}"), unit


def _numbers(values: pd.Series) -> pd.Series | None:
    """The column as numbers, or None when some non-blank cell is not one."""
    number = pd.to_numeric(values, errors="coerce")
    return number if number.notna().sum() == values.notna().sum() else None


def _suggest_missing(share: float) -> str:
    if share == 0:
        return "refuse"
    if share <= 0.05:
        return "complete_case"
    return "impute"


def _covariate(header: str, raw: pd.Series, taken: set[str]) -> tuple[dict[str, Any] | None, str]:
    """One column's declaration (None when it should not be modelled) and its comment."""
    blank = raw.isna() | raw.astype(str).str.strip().eq("")
    values = raw.where(~blank)
    share = float(blank.mean()) if len(raw) else 0.0
    name, unit = _name_and_unit(header)
    while name in taken:
        name += "_"
    observed = values.dropna()
    if observed.empty:
        return None, f"{header!r}: every value is missing; not declared"
    numbers = _numbers(observed)
    distinct = observed.map(level_text).unique()
    if numbers is None and observed.astype(str).map(lambda v: years_only(v) != v).mean() > 0.5:
        # a date is no covariate (and a full date may not leave the clinic): an interval is
        return None, f"{header!r}: dates; not declared (derive an interval from them, e.g. months since diagnosis)"
    decl: dict[str, Any] = {"name": name, "column": str(header)}
    if numbers is not None and len(distinct) == 2:
        decl |= {"kind": "binary", "levels": sorted(distinct, key=lambda v: float(v))}
    elif numbers is not None and (numbers == numbers.round()).all() and 3 <= len(distinct) <= 10:
        levels = sorted(distinct, key=lambda v: float(v))
        if _ORDERED_SCALE.search(str(header).replace("_", " ")):
            decl |= {"kind": "ordinal", "levels": levels}
        else:
            counts = observed.map(level_text).value_counts()
            decl |= {"kind": "categorical", "levels": levels, "reference": str(counts.index[0])}
    elif numbers is not None:
        decl |= {"kind": "numeric", **({"unit": unit} if unit else {})}
        if (numbers > 0).all() and numbers.max() / max(numbers.median(), 1e-12) > 10:
            decl["encoding"] = "log"  # right-skewed and positive: a marker, a volume
    elif len(distinct) <= MAX_LEVELS:
        counts = observed.map(level_text).value_counts()
        decl |= {"kind": "categorical", "levels": sorted(distinct), "reference": str(counts.index[0])}
    else:
        return None, f"{header!r}: {len(distinct)} distinct texts (free text or an identifier?); not declared"
    decl["missing"] = _suggest_missing(share)
    comment = f"{decl['kind']}; {100 * share:.0f}% missing"
    if decl["kind"] == "numeric":
        low, high = float(numbers.min()), float(numbers.max())  # type: ignore[union-attr]
        comment += f"; observed {low:g} to {high:g}: set range/plausible"
    return decl, comment


def _time_unit(header: str, given: str | None) -> str:
    if given is not None:
        if given not in TIME_UNITS_MONTHS:
            raise UserInputError(f"--time-unit: {given!r}; choose from {', '.join(TIME_UNITS_MONTHS)}")
        return given
    _, unit = _name_and_unit(header)
    word = unit.lower().strip() or header.lower().split()[-1]
    if word in _TIME_UNIT_WORDS:
        return _TIME_UNIT_WORDS[word]
    raise UserInputError(f"--time-unit: the unit of {header!r} is not in its header; say days, weeks, months or years")


def _event_codes(raw: pd.Series, header: str, given: list[str] | None, competing: list[str]) -> tuple[list, list, list]:
    seen = sorted({level_text(v) for v in raw.dropna()})
    if given is None:
        if not set(seen) <= {"0", "1"}:
            raise UserInputError(
                f"--event-codes: {header!r} holds {', '.join(seen)}; say which code is the event "
                "(and --competing-codes for a competing event)"
            )
        given = ["1"]
    event = [_code(c) for c in given]
    competing_codes = [_code(c) for c in competing]
    censored = [_code(c) for c in seen if c not in {level_text(x) for x in [*given, *competing]}]
    return event, competing_codes, censored or [0]


def _code(text: Any) -> int | str:
    value = level_text(text)
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def _horizons(months: pd.Series) -> list[float]:
    """Clinical horizons that at least a quarter of the patients are followed to."""
    reach = float(months.quantile(0.75)) if months.notna().any() else 0.0
    chosen = [h for h in (3.0, 6.0, 12.0, 24.0, 36.0, 60.0, 120.0) if h <= reach]
    return chosen[-3:] or [round(max(reach, 1.0), 1)]


def _evaluation(n: int) -> dict[str, int]:
    """A validation protocol sized to the cohort: the full small-cohort protocol below 500 patients."""
    if n < 500:
        return {"n_splits": 3, "n_repeats": 10, "bootstrap": 200}
    if n < 5000:
        return {"n_splits": 5, "n_repeats": 2, "bootstrap": 20}
    return {"n_splits": 5, "n_repeats": 1, "bootstrap": 0}


def infer_experiment(
    data: str | Path,
    *,
    time: str,
    event: str,
    time_unit: str | None = None,
    event_codes: list[str] | None = None,
    competing_codes: list[str] | None = None,
    patient_id: str | None = None,
    centre: str | None = None,
    endpoint: str = "outcome",
    out: str | Path | None = None,
    competing_endpoint: CompetingColumns | None = None,
) -> Inferred:
    """Read ``data`` and declare it: see the module docstring. Writes ``out`` when given.

    ``competing_endpoint``: a second endpoint (say, death) in its own columns whose event competes with
    ``endpoint`` (say, local failure); declared with ``competing_endpoint`` and the rule
    ``competing_after_censoring: competing`` written out, for a person to check."""
    frame, _ = read_table(data)
    headers = [str(h) for h in frame.columns]
    frame.columns = headers
    options = [("--time", time), ("--event", event), ("--id", patient_id), ("--centre", centre)]
    other = competing_endpoint
    if other is not None:
        options += [("--competing-time", other.time), ("--competing-event", other.event)]
    for option, column in options:
        if column is not None and column not in headers:
            raise UserInputError(
                f"{option}: no column {column!r} in {Path(data).name} (its columns: {', '.join(headers)})"
            )
    notes: list[str] = []
    if patient_id is None:
        patient_id = next(
            (h for h in headers if normalise_header(h) in ("id", "patient_id", "patient", "subject_id")), None
        )
        if patient_id is None:
            raise UserInputError("--id: no patient-identifier column found; name it with --id")
        notes.append(f"identifier: {patient_id!r} (say --id if that is wrong)")
    unit = _time_unit(time, time_unit)
    codes, competing, censored = _event_codes(frame[event], event, event_codes, competing_codes or [])
    outcome_headers = {time, event} | ({other.time, other.event} if other else set())
    rest = [h for h in headers if h not in {patient_id, centre, *outcome_headers}]
    covariates, comments = _declare_columns(frame, rest, endpoint, notes)
    if not covariates:
        raise UserInputError(
            f"{Path(data).name}: no column other than the identifier and outcome to use as a covariate"
        )
    months = pd.to_numeric(frame[time], errors="coerce") * TIME_UNITS_MONTHS[unit]
    cohort = {
        "id": patient_id,
        **({"centre": centre} if centre else {}),
        "covariates": covariates,
        "endpoints": [
            {
                "name": endpoint,
                "time": time,
                "time_unit": unit,
                "event": event,
                "event_codes": codes,
                **({"competing_codes": competing} if competing else {}),
                "censored_codes": censored,
                "zero_time": "half_day",
                **({"competing_endpoint": other.name, "competing_after_censoring": "competing"} if other else {}),
            },
            *([_competing_endpoint(frame, other, time_unit, notes, endpoint)] if other else []),
        ],
    }
    out_path = Path(out) if out is not None else None
    data_path = str(Path(data).resolve())
    if out_path is not None and Path(data).resolve().is_relative_to(out_path.resolve().parent):
        data_path = str(Path(data).resolve().relative_to(out_path.resolve().parent))
    experiment = {
        "name": re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(data).stem)[:100] or "experiment",
        "description": f"Declared by riskmodel init from {Path(data).name}; check the notes before trusting it.",
        "data": {"path": data_path},
        "cohort": cohort,
        "horizons": _horizons(months),
        "evaluation": _evaluation(len(frame)),
    }
    CohortDeclaration.model_validate(cohort, strict=False)  # what init writes must load
    ExperimentConfig.model_validate(experiment, strict=False)
    text = _commented(experiment, comments, notes)
    if out_path is not None:
        atomic_write_text(out_path, text)
    notes.append(f"time: {time!r} in {unit}; event codes {codes}, competing {competing or 'none'}, censored {censored}")
    return Inferred(experiment, text, notes)


@dataclass(frozen=True)
class CompetingColumns:
    """A competing endpoint in its own columns (``riskmodel init --competing-endpoint``)."""

    name: str
    time: str
    event: str


def _competing_endpoint(
    frame: pd.DataFrame, competing: CompetingColumns, time_unit: str | None, notes: list[str], endpoint: str
) -> dict[str, Any]:
    """The competing endpoint's declaration (0 censored, 1 its event), and a note on the rule."""
    seen = sorted({level_text(v) for v in frame[competing.event].dropna()})
    if not set(seen) <= {"0", "1"}:
        raise UserInputError(
            f"--competing-event: {competing.event!r} holds {', '.join(seen)}; it must be 0 (censored) or 1 (event)"
        )
    if competing.name == endpoint:
        raise UserInputError(f"--competing-endpoint: {competing.name!r} is the endpoint itself; name the other one")
    notes.append(
        f"{endpoint}: a {competing.name} event after the last {endpoint} assessment counts as a competing event at "
        f"its time (competing_after_censoring: competing); set censored for the conservative reading"
    )
    return {
        "name": competing.name,
        "time": competing.time,
        "time_unit": _time_unit(competing.time, time_unit),
        "event": competing.event,
        "event_codes": [1],
        "censored_codes": [0],
        "zero_time": "half_day",
    }


def _declare_columns(
    frame: pd.DataFrame, headers: list[str], endpoint: str, notes: list[str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every column as a covariate declaration (or left out with a note), and its comment."""
    covariates: list[dict[str, Any]] = []
    comments: dict[str, str] = {}
    taken = {endpoint}
    for header in headers:
        decl, comment = _covariate(header, frame[header], taken)
        if decl is None:
            notes.append(f"left out {comment}")
            continue
        covariates.append(decl)
        taken.add(decl["name"])
        comments[decl["name"]] = comment
        if decl["kind"] == "ordinal":
            notes.append(
                f"{decl['name']}: ordinal with levels {decl['levels']}: check the order (or make it categorical)"
            )
        elif decl["kind"] == "categorical" and all(str(v).lstrip("-").isdigit() for v in decl["levels"]):
            notes.append(
                f"{decl['name']}: integer codes {decl['levels']} declared categorical (unordered); if they are an "
                "ordered scale, make it ordinal"
            )
        if decl["kind"] == "numeric" and "unit" not in decl:
            notes.append(f"{decl['name']}: no unit in the header; add one for the reports")
    return covariates, comments


def _commented(experiment: dict[str, Any], comments: dict[str, str], notes: list[str]) -> str:
    """The experiment as YAML, each covariate with its inferred facts as a comment."""
    body = yaml.safe_dump(experiment, sort_keys=False, allow_unicode=True, width=110)
    lines = []
    for line in body.splitlines():
        match = re.match(r"^(\s*)- name: (\S+)$", line)
        if match and match.group(2) in comments:
            lines.append(f"{match.group(1)}# {comments[match.group(2)]}")
        lines.append(line)
    head = [
        "# Written by `riskmodel init`: every column declared, its kind inferred from the data.",
        "# Check before training: units, ordinal order, reference levels, codes, missing-data policies.",
        *(f"#   - {n}" for n in notes),
        "# Then: riskmodel config validate THIS_FILE; riskmodel train THIS_FILE",
        "",
    ]
    return "\n".join(head + lines) + "\n"
