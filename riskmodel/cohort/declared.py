"""Reading a clinical export through its declaration: one typed row per patient, every problem found.

The result is a :class:`~riskmodel.cohort.load.Cohort` whose columns are the declaration's names:

* ``patient_id`` (text) and, when declared, ``centre``;
* one column per covariate: a number for numeric ones; 0/1 for binary; the level's code (0, 1,
  …, in the declared order) for ordinal ones; the level's text for categorical ones. A missing
  value is NaN (the covariate's ``missing`` policy says what happens to it next);
* per endpoint ``<name>_months`` (the time converted to months), ``<name>_event`` (1 for the
  event of interest, else 0) and ``<name>_event_type`` (0 censored, 1 event, 2 competing event);
  an endpoint with competing events also has ``<name>_cr_months``, the time of its competing-risks
  view (its own time, or its competing endpoint's event time where the rule of
  :mod:`riskmodel.cohort.competing` moved it). ``_months`` and ``_event`` stay the cause-specific
  view. All of them are outcomes (``Cohort.outcomes``), never model features.

Each problem names the file, the row as a spreadsheet shows it, the column, the value and the
rule; all are reported at once (:class:`~riskmodel.errors.CohortValidationError`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from riskmodel.cohort._cells import MAX_REPORTED_PER_RULE, Reporter, blank_mask, to_numeric
from riskmodel.cohort.competing import CompetingRule, after_competing_event, competing_view
from riskmodel.cohort.declaration import CohortDeclaration, CovariateDeclaration, EndpointDeclaration
from riskmodel.cohort.load import Cohort, normalise_header, read_table, sensitive_values
from riskmodel.errors import CohortFileError, CohortValidationError, RiskModelWarning

__all__ = ["HALF_DAY_MONTHS", "from_frame_declared", "level_text", "load_declared", "outcome_columns"]

HALF_DAY_MONTHS = 0.5 * 12 / 365.25
logger = logging.getLogger(__name__)
_YES = frozenset({"1", "yes", "y", "true", "t"})
_NO = frozenset({"0", "no", "n", "false", "f"})


def outcome_columns(declaration: CohortDeclaration, endpoints: Collection[str] | None = None) -> tuple[str, ...]:
    """The outcome columns a declared cohort's table holds (of ``endpoints``, default every one)."""
    chosen = [e for e in declaration.endpoints if endpoints is None or e.name in endpoints]
    parts = ("months", "event", "event_type")
    return tuple(f"{e.name}_{part}" for e in chosen for part in (*parts, *(("cr_months",) if e.has_competing else ())))


def level_text(value: object) -> str:
    """A cell as level text: stripped, and a whole number without its ``.0`` (Excel writes 1 as 1.0).

    >>> level_text(" 2.0 "), level_text(3), level_text("PD")
    ('2', '3', 'PD')
    """
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number == int(number) else text


def _find_columns(frame: pd.DataFrame, wanted: Collection[str]) -> dict[str, str]:
    """Declared header → the file's header: exact, else equal after normalising (case, spaces, units)."""
    headers = [str(h) for h in frame.columns]
    by_norm: dict[str, str] = {}
    for h in headers:
        by_norm.setdefault(normalise_header(h), h)
    found = {}
    for w in wanted:
        if w in headers:
            found[w] = w
        elif normalise_header(w) in by_norm:
            found[w] = by_norm[normalise_header(w)]
    return found


def _contradiction(c: CovariateDeclaration, raw: pd.Series, blank: pd.Series) -> str | None:
    """What is wrong with the declaration itself when the data contradict its kind or levels
    wholesale (most values, not a few typos), else None; the few-typos case is per row."""
    texts = raw[~blank].map(level_text)
    if texts.empty:
        return None
    examples = ", ".join(repr(v) for v in list(dict.fromkeys(texts))[:4])
    if c.kind == "numeric":
        bad = pd.to_numeric(texts, errors="coerce").isna()
        if bad.mean() > 0.5:
            return (
                f"kind: declared numeric, but {int(bad.sum())} of {len(texts)} values in {c.column!r} are not "
                f"numbers (e.g. {examples}): declare it categorical, ordinal or binary with its levels"
            )
        return None
    if c.kind == "binary" and not c.levels:
        # yes/Yes/Y/1 are one value: count meanings, not spellings. More than two is a contradiction
        # when most cells are not yes/no words, or when all are numbers (a 0-3 score, say); a stray
        # word in a yes/no column is a typo, reported on its row
        lower = texts.str.lower()
        meanings = list(dict.fromkeys(lower.map(lambda v: "1" if v in _YES else ("0" if v in _NO else v))))
        numbers = bool(pd.to_numeric(texts, errors="coerce").notna().all())
        if len(meanings) > 2 and (numbers or (~lower.isin(_YES | _NO)).mean() > 0.5):
            return (
                f"kind: declared binary, but {c.column!r} has {len(meanings)} distinct values (e.g. {examples}): "
                "declare it numeric, ordinal or categorical"
            )
    if c.levels:
        outside = ~texts.isin(c.code_levels)
        if outside.mean() > 0.5:
            return (
                f"levels: {int(outside.sum())} of {len(texts)} values in {c.column!r} are not among the declared "
                f"levels {c.code_levels} (e.g. {examples}): check the kind and the levels"
            )
    if c.kind == "categorical" and c.reference is not None and c.reference not in set(texts):
        return (
            f"reference: the reference level {c.reference!r} has no patient in the file (levels seen: "
            f"{', '.join(sorted(set(texts)))}); choose one that is present, usually the most common"
        )
    return None


def _covariate(c: CovariateDeclaration, raw: pd.Series, rep: Reporter, key: str, scoring: bool) -> pd.Series:
    """One covariate's cells, typed and checked (NaN where missing); ``key``: its declaration key path;
    ``scoring``: new patients, each of whom gets a score or an error (none is left out)."""
    blank = blank_mask(raw)
    wrong = _contradiction(c, raw, blank)
    if wrong is not None:
        field_name, _, reason = wrong.partition(": ")
        rep.add(f"{key}.{field_name} ({c.name}): {reason}", column=c.column)
        return pd.Series(math.nan, index=raw.index, dtype=float if c.kind != "categorical" else object)
    if c.missing == "refuse":
        rep.add_rows(
            blank,
            f"{c.name} is missing; the declaration says missing: refuse (choose complete_case, indicator or impute)",
            c.column,
            raw,
        )
    elif c.missing == "complete_case" and scoring:
        rule = f"{c.name} is missing; the model was trained on complete cases (declared missing: complete_case)"
        rep.add_rows(blank, rule, c.column, raw)
    if c.kind == "numeric":
        num = to_numeric(raw, c.column, rep, f"{c.name} is declared numeric: must be a number (no units)")
        if c.range is not None:
            low, high = c.range
            rep.add_rows(
                (num < low) | (num > high), f"must be within {low:g} to {high:g} {c.unit}".rstrip(), c.column, raw
            )
            num = num.where((num >= low) & (num <= high))
        if c.plausible is not None:
            low, high = c.plausible
            rule = f"outside the plausible {low:g} to {high:g} {c.unit}".rstrip() + "; check the value and unit"
            rep.add_rows((num < low) | (num > high), rule, c.column, raw, "warning")
        if c.encoding == "log":
            rep.add_rows(num <= 0, f"{c.name} has a log encoding: must be above 0", c.column, raw)
            num = num.where(num > 0)
        return num
    texts = raw.where(~blank).map(level_text, na_action="ignore")
    if c.kind == "binary" and not c.levels:
        codes = texts.str.lower().map(lambda v: 1.0 if v in _YES else (0.0 if v in _NO else math.nan))
        rep.add_rows(codes.isna() & ~blank, f"{c.name} is binary: must be 0/1 or yes/no", c.column, raw)
        return codes.astype(float)
    levels = c.code_levels
    unknown = ~texts.isin(levels) & ~blank
    rep.add_rows(unknown, f"must be one of the declared levels: {', '.join(levels)}", c.column, raw)
    if c.kind == "categorical":
        return texts.where(~unknown)
    return texts.map({lvl: float(i) for i, lvl in enumerate(levels)}).astype(float)


def _endpoint(e: EndpointDeclaration, frame: pd.DataFrame, found: dict[str, str], rep: Reporter) -> pd.DataFrame:
    """One endpoint's time in months, event and event type."""
    t_raw, e_raw = frame[found[e.time]], frame[found[e.event]]
    time = to_numeric(t_raw, e.time, rep, f"{e.name} time must be a number of {e.time_unit}")
    rep.add_rows(blank_mask(t_raw), f"{e.name} time is missing", e.time, t_raw)
    rep.add_rows(time < 0, f"{e.name} time must be 0 or more", e.time, t_raw)
    kinds = {level_text(c): 1 for c in e.event_codes}
    kinds.update({level_text(c): 2 for c in e.competing_codes})
    kinds.update({level_text(c): 0 for c in e.censored_codes})
    event_type = e_raw.map(level_text, na_action="ignore").map(kinds)
    shown = f"event {e.event_codes}" + (f", competing {e.competing_codes}" if e.competing_codes else "")
    rep.add_rows(
        event_type.isna(), f"must be one of the declared codes ({shown}, censored {e.censored_codes})", e.event, e_raw
    )
    months = time * e.months_per_unit
    zero = months == 0
    if e.zero_time == "refuse":
        rule = f"{e.name} time is 0: an event or censoring at time zero (set zero_time: half_day to move it)"
        rep.add_rows(zero, rule, e.time, t_raw)
    else:
        months = months.where(~zero, HALF_DAY_MONTHS)
    return pd.DataFrame(
        {
            f"{e.name}_months": months,
            f"{e.name}_event": (event_type == 1).astype(int),
            f"{e.name}_event_type": event_type.fillna(0).astype(int),
        }
    )


def _competing_rules(
    declaration: CohortDeclaration,
    read: list[EndpointDeclaration],
    out: pd.DataFrame,
    raw: pd.DataFrame,
    found: dict[str, str],
    rep: Reporter,
) -> tuple[CompetingRule, ...]:
    """Add each competing endpoint's events to ``<name>_event_type`` and ``<name>_cr_months`` (in
    ``out``), refuse follow-up after the competing event, and say how many patients the rule moved."""
    rules = []
    for e in read:
        if not e.has_competing:
            continue
        months = out[f"{e.name}_months"]
        out[f"{e.name}_cr_months"] = months
        other = e.competing_endpoint
        if other is None:
            continue
        c = declaration.endpoint(other)
        died, death_months = out[f"{other}_event"].to_numpy(), out[f"{other}_months"].to_numpy(float)
        after = pd.Series(after_competing_event(months.to_numpy(float), death_months, died), index=out.index)
        key = f"cohort.endpoints[{declaration.endpoints.index(e)}].competing_endpoint"
        rule = f"{e.name} follow-up cannot go on after its competing event ({key}: {other}); correct one of the times"
        bad = after.index[after.to_numpy()]
        for row in bad[:MAX_REPORTED_PER_RULE]:  # each line quotes its row's two times, so it caps itself
            shown = f"{c.time} = {raw.at[row, found[c.time]]!s}, {c.event} = {raw.at[row, found[c.event]]!s}"
            rep.add(
                f"{e.name} time is after the {other} event ({shown}): {rule}",
                row=row,
                column=e.time,
                value=raw.at[row, found[e.time]],
            )
        if len(bad) > MAX_REPORTED_PER_RULE:
            rep.add(f"{len(bad) - MAX_REPORTED_PER_RULE} more rows break this rule: {rule}", column=e.time)
        state, cr_months, affected = competing_view(
            out[f"{e.name}_event_type"].to_numpy(), months.to_numpy(float), died, death_months, e.after_censoring
        )
        out[f"{e.name}_event_type"] = state
        out[f"{e.name}_cr_months"] = cr_months
        rules.append(CompetingRule(e.name, other, e.after_censoring, affected))
    return tuple(rules)


def from_frame_declared(
    frame: pd.DataFrame,
    declaration: CohortDeclaration,
    *,
    source: str = "<DataFrame>",
    require_outcomes: bool = True,
    first_row: int | None = None,
    covariates: Collection[str] | None = None,
    require_id: bool = True,
    endpoints: Collection[str] | None = None,
) -> Cohort:
    """Type and check a table by its declaration; raise ``CohortValidationError`` listing every problem.

    ``covariates``: only these declared covariates are read (a model needs only its own);
    ``require_outcomes=False`` reads new patients for scoring (a patient missing a complete-case
    covariate is then an error on its row, not left out); ``require_id=False`` accepts a table
    without the identifier column (a prediction from Python).
    """
    raw = frame.copy()
    if first_row is not None:
        raw.index = pd.RangeIndex(first_row, first_row + len(raw), name="row")
    chosen = [c for c in declaration.covariates if covariates is None or c.name in covariates]
    # an endpoint's competing endpoint is read with it: its event times are the competing events
    wanted_endpoints = declaration.competing_closure(declaration.endpoint_names if endpoints is None else endpoints)
    read_endpoints = [e for e in (declaration.endpoints if require_outcomes else []) if e.name in wanted_endpoints]
    has_id = require_id or bool(_find_columns(raw, [declaration.id]))
    wanted = [
        *([declaration.id] if has_id else []),
        *([declaration.centre] if declaration.centre and require_id else []),
    ]
    wanted += [c.column for c in chosen] + [col for e in read_endpoints for col in (e.time, e.event)]
    found = _find_columns(raw, wanted)
    missing = [w for w in dict.fromkeys(wanted) if w not in found]
    if missing:
        keys = _key_paths(declaration, missing)
        listed = ", ".join(repr(str(h)) for h in raw.columns[:20]) + (" …" if raw.shape[1] > 20 else "")
        raise CohortFileError(
            "\n".join(f"{source}: {keys[m]}: no column {m!r} in the file (its columns: {listed})" for m in missing)
        )
    rep = Reporter(source)
    out = pd.DataFrame(index=raw.index)
    if has_id:
        ids = raw[found[declaration.id]]
        rep.add_rows(blank_mask(ids), "a patient identifier is required", declaration.id, ids)
        out["patient_id"] = ids.map(lambda v: str(v).strip(), na_action="ignore")
        duplicated = out["patient_id"].duplicated(keep=False) & out["patient_id"].notna()
        rep.add_rows(duplicated, "the patient identifier repeats; each patient needs one row", declaration.id, ids)
    if declaration.centre and declaration.centre in found:
        out["centre"] = raw[found[declaration.centre]].map(lambda v: str(v).strip(), na_action="ignore")
    for c in chosen:
        key = f"cohort.covariates[{declaration.covariates.index(c)}]"
        out[c.name] = _covariate(c, raw[found[c.column]], rep, key, scoring=not require_outcomes)
    for e in read_endpoints:
        out = out.join(_endpoint(e, raw, found, rep))
    rules = _competing_rules(declaration, read_endpoints, out, raw, found, rep)
    problems = rep.finish()
    if any(p.severity == "error" for p in problems):
        raise CohortValidationError(problems, source)
    missing_counts = missing_profile(out, [c.name for c in chosen], [e.name for e in read_endpoints])
    n_read = len(out)
    dropped = [c.name for c in chosen if c.missing == "complete_case" and out[c.name].isna().any()]
    if dropped:
        complete = out[[c for c in dropped]].notna().all(axis=1)
        rep.add(
            f"{int((~complete).sum())} patients left out for a missing {', '.join(dropped)} "
            "(declared missing: complete_case)",
            severity="warning",
        )
        out = out.loc[complete]
    found_warnings = tuple(p for p in rep.finish() if p.severity == "warning")
    if found_warnings:
        n = len(found_warnings)
        warnings.warn(
            f"{source}: {n} warning{'s' if n > 1 else ''}:\n" + "\n".join(map(str, found_warnings)),
            RiskModelWarning,
            stacklevel=2,
        )
    ignored = [str(h) for h in raw.columns if str(h) not in set(found.values())]
    sensitive = sensitive_values(raw, ignored, pd.DataFrame(index=raw.index))
    if "patient_id" in out.columns:
        sensitive |= frozenset(out["patient_id"].dropna())
    for applied in rules:
        logger.info("%s", applied)  # counts only: shareable
    return Cohort(
        out,
        source,
        found_warnings,
        (),
        tuple(ignored),
        sensitive,
        None,
        declaration=declaration,
        outcomes=outcome_columns(declaration, [e.name for e in read_endpoints]),
        missing=missing_counts,
        n_read=n_read,
        competing_rules=rules,
    )


HANDLING = {
    "refuse": "refused (a missing value is an error)",
    "complete_case": "patients with it missing are left out (complete-case)",
    "indicator": "a <name>_missing flag feature (a numeric value filled with the training median)",
    "impute": "multiply imputed (chained equations with the outcome), or kept missing for tree families",
}


def missing_profile(data: pd.DataFrame, covariates: list[str], endpoints: list[str]) -> pd.DataFrame:
    """Per covariate: ``missing`` (patients), ``percent``, then the % missing among each endpoint's
    patients with and without the event (``<ep> event %``, ``<ep> no event %``) and in each centre
    (``centre <name> %``). A missingness that differs by event status is not completely at random."""
    table = pd.DataFrame(index=pd.Index(covariates, name="covariate"))
    if not covariates:
        return table
    isna = data[covariates].isna()
    table["missing"] = isna.sum().astype(int)
    table["percent"] = (100 * isna.mean()).round(1) if len(data) else pd.Series(0.0, index=table.index)
    for ep in endpoints:
        event = data[f"{ep}_event"].astype(bool)
        for label, chosen in ((f"{ep} event %", event), (f"{ep} no event %", ~event)):
            table[label] = (100 * isna[chosen.to_numpy()].mean()).round(1) if chosen.any() else math.nan
    if "centre" in data.columns:
        for centre, group in isna.groupby(data["centre"].fillna("(none)").astype(str), sort=True):
            table[f"centre {centre} %"] = (100 * group.mean()).round(1)
    return table


def missing_data_table(cohort: Cohort) -> pd.DataFrame:
    """Per declared covariate: patients missing it in the file, their share, the declared policy
    and what it does, then the shares by event status and by centre. Counts only (shareable)."""
    if cohort.declaration is None or cohort.missing is None or cohort.missing.empty:
        return pd.DataFrame(columns=["covariate", "missing", "percent", "policy", "handling"])
    policy = {c.name: c.missing for c in cohort.declaration.covariates}
    table = cohort.missing.reset_index()
    table.insert(3, "policy", table["covariate"].map(policy))
    table.insert(
        4,
        "handling",
        [HANDLING[p] if n else "none missing" for p, n in zip(table["policy"], table["missing"], strict=True)],
    )
    return table


def _key_paths(declaration: CohortDeclaration, columns: Collection[str]) -> dict[str, str]:
    """The declaration key naming each column, for messages."""
    keys: dict[str, str] = {declaration.id: "cohort.id"}
    if declaration.centre:
        keys[declaration.centre] = "cohort.centre"
    for i, c in enumerate(declaration.covariates):
        keys.setdefault(c.column, f"cohort.covariates[{i}].column ({c.name})")
    for i, e in enumerate(declaration.endpoints):
        keys.setdefault(e.time, f"cohort.endpoints[{i}].time ({e.name})")
        keys.setdefault(e.event, f"cohort.endpoints[{i}].event ({e.name})")
    return {c: keys.get(c, "cohort") for c in columns}


def load_declared(
    path: str | Path,
    declaration: CohortDeclaration,
    *,
    require_outcomes: bool = True,
    covariates: Collection[str] | None = None,
    endpoints: Collection[str] | None = None,
) -> Cohort:
    """Read a cohort file (CSV, Excel or Parquet) through its declaration; see the module docstring.

    ``covariates`` and ``endpoints``: only these are read (an OS-only experiment needs no LC columns)."""
    frame, first_row = read_table(path)
    return from_frame_declared(
        frame,
        declaration,
        source=Path(path).name,
        require_outcomes=require_outcomes,
        first_row=first_row,
        covariates=covariates,
        endpoints=endpoints,
    )


def numeric_summary(values: pd.Series) -> tuple[float, float, float]:
    """(share missing, 5th smallest, 5th largest) of a numeric column: a range that describes at
    least five patients, never one patient's exact extreme value."""
    v = np.sort(values.dropna().to_numpy(float))
    share = float(values.isna().mean()) if len(values) else 0.0
    if v.size == 0:
        return share, math.nan, math.nan
    k = min(4, v.size - 1)
    return share, float(v[k]), float(v[-1 - k])
