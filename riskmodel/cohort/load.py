"""Read a cohort file, map its column names, derive what is missing, validate, return a Cohort."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Collection
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from riskmodel.cohort._arrow_cells import is_arrow_text, object_cells
from riskmodel.cohort._cells import Reporter, blank_mask
from riskmodel.cohort._readers import read_csv_arrow, read_csv_cells, read_parquet_arrow, read_parquet_cells
from riskmodel.cohort.competing import CompetingRule, competing_view
from riskmodel.cohort.contract import COLUMNS, COMPETING_ENDPOINTS, ENDPOINTS, OUTCOME_COLUMNS
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.derive import RAW_COLUMNS, ResponseRule, derive_missing
from riskmodel.cohort.validate import validate_frame
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.yamlio import read_yaml_mapping, validation_lines
from riskmodel.errors import CohortFileError, CohortValidationError, Problem, RiskModelWarning, one_line

__all__ = [
    "DEFAULT_ALIASES",
    "Cohort",
    "ColumnMapping",
    "cohort_csv_text",
    "contract_competing",
    "from_frame",
    "load",
    "load_mapping",
    "read_table",
    "rename_columns",
    "sensitive_values",
    "write_csv",
]

logger = logging.getLogger(__name__)
CANONICAL = tuple(c.name for c in COLUMNS)
_TARGETS = frozenset(CANONICAL) | frozenset(RAW_COLUMNS)

# Header spellings seen in clinical exports, after normalise_header(). Users add their own in a
# mapping file (see data/mapping.example.yaml); these only save typing.
DEFAULT_ALIASES: dict[str, str] = {
    **dict.fromkeys(["id", "patient", "patientid", "subject_id", "study_id", "pseudonym"], "patient_id"),
    **dict.fromkeys(["age", "age_at_implant"], "age_years"),
    **dict.fromkeys(["gender"], "sex"),
    **dict.fromkeys(["karnofsky", "kps_score", "karnofsky_performance_status"], "kps"),
    **dict.fromkeys(["grade", "differentiation", "pathology_grade"], "pathological_grade"),
    **dict.fromkeys(["t", "t_category"], "t_stage"),
    **dict.fromkeys(["n", "n_category"], "n_stage"),
    **dict.fromkeys(["m", "m_category"], "m_stage"),
    **dict.fromkeys(["tnm_stage", "stage_tnm", "ctnm"], "tnm"),
    **dict.fromkeys(["ebrt_dose", "ebrt_dose_gy", "prior_dose_gy", "prior_ebrt_dose"], "prior_ebrt_dose_gy"),
    **dict.fromkeys(["ebrt_fractions", "prior_fractions"], "prior_ebrt_fractions"),
    **dict.fromkeys(
        ["recurrence_interval", "interval_months", "time_to_recurrence_months"], "recurrence_interval_months"
    ),
    **dict.fromkeys(["volume", "volume_cm3", "lesion_volume", "gtv_volume_cm3", "gtv_cm3"], "lesion_volume_cm3"),
    **dict.fromkeys(["activity", "seed_activity", "activity_mci"], "seed_activity_mci"),
    **dict.fromkeys(["seeds", "n_seeds", "number_of_seeds", "seed_number"], "seed_count"),
    **dict.fromkeys(["prescription", "prescription_dose", "prescribed_dose_gy", "pd_gy"], "prescription_dose_gy"),
    **dict.fromkeys(["d90"], "d90_gy"),
    **dict.fromkeys(["d100"], "d100_gy"),
    **dict.fromkeys(["skin_d2cc", "d2cc_skin_gy"], "skin_d2cc_gy"),
    **dict.fromkeys(["response", "short_term_response", "response_3m", "response_3_months"], "response_3mo"),
    **dict.fromkeys(["chemo", "chemotherapy", "post_implant_chemotherapy"], "post_implant_chemo"),
    **dict.fromkeys(["os_time", "os_time_months"], "os_months"),
    **dict.fromkeys(["os_status"], "os_event"),
    **dict.fromkeys(["lc_time", "lc_time_months"], "lc_months"),
    **dict.fromkeys(["lc_status"], "lc_event"),
    **dict.fromkeys(["date_ebrt_end", "ebrt_end"], "ebrt_end_date"),
    **dict.fromkeys(["date_recurrence"], "recurrence_date"),
    **dict.fromkeys(["date_implant", "implantation_date", "date_of_implant"], "implant_date"),
    **dict.fromkeys(["date_local_progression", "progression_date"], "local_progression_date"),
    **dict.fromkeys(["date_of_death", "date_death"], "death_date"),
    **dict.fromkeys(
        ["last_follow_up_date", "date_last_followup", "last_contact_date", "last_follow_up"], "last_followup_date"
    ),
    **dict.fromkeys(
        ["last_fu_date", "last_fu", "followup_date", "fu_date", "date_of_last_follow_up"], "last_followup_date"
    ),
    **dict.fromkeys(["end_of_ebrt_date", "date_of_ebrt_end"], "ebrt_end_date"),
    **dict.fromkeys(["date_of_recurrence"], "recurrence_date"),
    **dict.fromkeys(["date_of_local_progression", "lp_date", "local_failure_date"], "local_progression_date"),
    **{
        f"{stem}{i}_{unit}": f"diameter_{i}_{unit}"
        for i in (1, 2, 3)
        for unit in ("mm", "cm")
        for stem in ("diameter", "lesion_diameter_", "diam_", "diam", "d")
    },
    **dict.fromkeys(["baseline_sld_mm", "sld_baseline", "sld_0_mm", "sld_pre_mm"], "sld_baseline_mm"),
    **dict.fromkeys(["sld_3m_mm", "sld_3_months_mm", "sld_3mo", "sld_followup_mm", "sld_post_mm"], "sld_3mo_mm"),
    **dict.fromkeys(
        ["baseline_volume_cm3", "volume_baseline", "volume_pre_cm3", "volume_0_cm3"], "volume_baseline_cm3"
    ),
    **dict.fromkeys(
        ["volume_3m_cm3", "volume_3_months_cm3", "volume_3mo", "volume_followup_cm3", "volume_post_cm3"],
        "volume_3mo_cm3",
    ),
}


def normalise_header(name: object) -> str:
    """Lower-case a header and turn every run of other characters into one underscore.

    >>> normalise_header("D90 (Gy)")
    'd90_gy'
    >>> normalise_header("  Last follow-up date ")
    'last_follow_up_date'
    """
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


class ColumnMapping(BaseModel):
    """A user-editable mapping file: header renames, value renames, and reading options."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    columns: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}
    date_format: str | None = None
    response_rule: ResponseRule | None = None

    @field_validator("date_format")
    @classmethod
    def _a_date_format(cls, value: str | None) -> str | None:
        """Tried once here, so a broken format is one line about the mapping, not a failure per cell."""
        if value is None:
            return value
        if "%" not in value:
            raise ValueError("must hold strftime codes such as %d/%m/%Y")
        try:
            pd.to_datetime(pd.Series(["2000-01-31"]), format=value, errors="coerce")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a date format ({one_line(str(exc), 120)}); use codes such as %d/%m/%Y") from None
        return value


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read and check a YAML mapping file (see ``data/mapping.example.yaml``)."""
    p = Path(path)
    raw = read_yaml_mapping(p, "mapping", "columns, values, date_format, response_rule", CohortFileError)
    try:
        mapping = ColumnMapping.model_validate(raw)
    except ValidationError as exc:
        raise CohortFileError("\n".join(validation_lines(p, exc))) from None
    bad = [
        f"{p}: columns.{k}: '{v}' is not a canonical or raw column name"
        for k, v in mapping.columns.items()
        if v not in _TARGETS
    ]
    bad += [f"{p}: values.{k}: not a canonical column" for k in mapping.values if k not in CANONICAL]
    if bad:
        raise CohortFileError("\n".join(bad))
    return mapping


@dataclass(frozen=True)
class Cohort:
    """A validated cohort: canonical, typed columns, indexed by the source row number."""

    data: pd.DataFrame
    source: str
    warnings: tuple[Problem, ...] = ()
    derived: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    # values that must never be logged or shared (raw dates, unused identifier-like columns);
    # read by riskmodel.privacy.PhiGuard, kept out of repr and comparisons
    sensitive: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    # first and last implant year, when the input had implant dates: the only date facts shared
    implant_years: tuple[int, int] | None = field(default=None, compare=False)
    # the cohort's declaration (None: the built-in brachytherapy contract), and its outcome columns
    declaration: CohortDeclaration | None = field(default=None, compare=False)
    outcomes: tuple[str, ...] = OUTCOME_COLUMNS
    # declared covariates: per covariate, patients of the file missing it (before any
    # complete-case exclusion), and the % missing by event status and by centre (counts only)
    missing: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    n_read: int | None = field(default=None, compare=False)
    # each competing endpoint applied (LC with death) and the patients its after-censoring rule moved
    competing_rules: tuple[CompetingRule, ...] = field(default=(), compare=False)

    @property
    def competing_rule_counts(self) -> dict[str, int]:
        """Per endpoint with a competing endpoint: the patients whose competing event came after their
        censoring for it (died after the last local assessment), whichever rule applied (counts only)."""
        return {r.endpoint: r.affected for r in self.competing_rules}

    @property
    def endpoints(self) -> list[str]:
        """The endpoints this cohort has outcomes for."""
        names = self.declaration.endpoint_names if self.declaration is not None else list(ENDPOINTS)
        return [ep for ep in names if f"{ep}_event" in self.data.columns]

    def __len__(self) -> int:
        return len(self.data)

    def summary(self) -> str:
        """A short, shareable summary: counts only, no patient-level values."""
        d = self.data
        parts = [f"{len(d)} patients, {d.shape[1]} {'declared' if self.declaration else 'canonical'} columns"]
        for ep in self.endpoints:
            parts.append(f"{ep.upper()} events {int(d[f'{ep}_event'].sum())}")
        return "; ".join(parts)


MAX_FILE_MB = 512  # default size limit of a cohort file; RISKMODEL_MAX_FILE_MB overrides it


def _max_file_mb() -> int:
    text = os.environ.get("RISKMODEL_MAX_FILE_MB", "")
    return int(text) if text.isdigit() and int(text) > 0 else MAX_FILE_MB


def read_table(path: str | Path, *, arrow: bool = False) -> tuple[pd.DataFrame, int]:
    """Read a CSV/TSV, Excel or Parquet file as raw cells, and the row number of its first record.

    CSV and Excel cells are kept as the text or value the user typed, so error messages can
    quote them. Rows are numbered as in a spreadsheet (header = row 1), Parquet records from 1.
    With ``arrow``, text columns of CSV and Parquet files stay in Arrow (pyarrow-backed string
    dtypes; the cohort loader's checks read them in C) wherever pyarrow reads the same cells.
    """
    p = Path(path)
    if not p.exists():
        raise CohortFileError(f"{p}: file not found")
    if p.is_dir():
        raise CohortFileError(f"{p}: is a folder, not a cohort file")
    size = p.stat().st_size
    if size == 0:
        raise CohortFileError(f"{p}: the file is empty")
    limit_mb = _max_file_mb()
    if size > limit_mb * 2**20:
        raise CohortFileError(
            f"{p}: {size / 2**20:,.0f} MB is more than the {limit_mb:,} MB riskmodel reads "
            "(a million patients take about 200 MB as CSV; set RISKMODEL_MAX_FILE_MB to raise the limit)"
        )
    suffix = p.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            fast = read_csv_arrow(p) if arrow else None
            return (read_csv_cells(p) if fast is None else fast), 2
        if suffix in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(p, dtype=object, sheet_name=0), 2
        if suffix in (".parquet", ".pq"):
            return (read_parquet_arrow(p) if arrow else read_parquet_cells(p)), 1
    except CohortFileError:
        raise
    except Exception as exc:  # every reader fails differently; the user needs one clear line
        kind = {".parquet": "Parquet", ".pq": "Parquet"}.get(suffix, "Excel" if suffix.startswith(".xl") else "CSV")
        raise CohortFileError(
            one_line(f"{p}: cannot be read as {kind} ({type(exc).__name__}: {exc})".strip())
        ) from None
    raise CohortFileError(f"{p}: unsupported file type '{suffix}'; use .csv, .tsv, .xlsx or .parquet")


def rename_columns(frame: pd.DataFrame, mapping: ColumnMapping, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The table with the user's headers renamed to canonical columns by ``mapping`` (headers
    compared normalised), and the headers the mapping leaves out (ignored)."""
    if frame.shape[1] == 0:
        raise CohortFileError(f"{source}: the table has no columns (is the file or sheet empty?)")
    user = {normalise_header(k): v for k, v in mapping.columns.items()}
    targets: dict[str, str] = {}
    ignored: list[str] = []
    clashes: list[str] = []
    names = [str(h) for h in frame.columns]
    for header in names:
        # pandas renames a repeated header "x" to "x.1"; two columns of one name must not pass quietly
        base = re.match(r"^(.*)\.(\d+)$", header)
        if base and base[1] in names:
            clashes.append(f"{source}: the column '{base[1]}' appears more than once; keep one")
    for header in frame.columns:
        key = normalise_header(header)
        target = user.get(key) or (key if key in _TARGETS else DEFAULT_ALIASES.get(key))
        if target is None:
            ignored.append(str(header))
        elif target in targets.values():
            first = next(h for h, t in targets.items() if t == target)
            clashes.append(
                f"{source}: columns '{first}' and '{header}' both map to {target}; "
                "rename or drop one (or map it in the mapping file)"
            )
        else:
            targets[str(header)] = target
    if clashes:
        raise CohortFileError("\n".join(clashes))
    if not targets:
        shown = ", ".join(repr(str(h)) for h in list(frame.columns)[:5])
        raise CohortFileError(
            f"{source}: none of its columns ({shown}) is a cohort column; "
            "is this the right file? (see data/README.md, or map names with --mapping)"
        )
    if list(targets) == names:  # every column kept, in order: new names, the same arrays
        out = frame.copy(deep=False)
        out.columns = pd.Index(list(targets.values()), dtype=object)
    else:
        out = frame[list(targets)].rename(columns=targets)
    for col, renames in mapping.values.items():
        if col in out.columns:
            cells = object_cells(out[col])
            lookup = {v: renames.get(str(v).strip(), v) for v in pd.unique(cells.dropna())}
            out[col] = cells.map(lookup)
    return out, ignored


def from_frame(
    frame: pd.DataFrame,
    *,
    source: str = "<DataFrame>",
    mapping: ColumnMapping | None = None,
    response_rule: ResponseRule | None = None,
    require_outcomes: bool = True,
    required: Collection[str] | None = None,
    first_row: int | None = None,
) -> Cohort:
    """Map, derive and validate an in-memory table; raise ``CohortValidationError`` on errors.

    ``first_row`` renumbers the index (the row number of the first record) for messages; by
    default the frame's own index labels are used.
    """
    mapping = mapping or ColumnMapping()
    raw = frame.copy(deep=False)  # nothing below writes into a column: new names and rows only
    if first_row is not None:
        raw.index = pd.RangeIndex(first_row, first_row + len(raw), name="row")
        if raw.shape[1]:
            all_blank = np.ones(len(raw), dtype=bool)  # narrowed column by column: few rows stay
            for c in raw.columns:
                left = np.flatnonzero(all_blank)
                if not left.size:
                    break
                column = raw[c] if left.size == len(raw) else raw[c].iloc[left]
                all_blank[left] = blank_mask(column).to_numpy()
            if all_blank.any():
                raw = raw.loc[~all_blank]
    original = raw
    raw, ignored = rename_columns(raw, mapping, source)
    raw = _raw_fields_as_objects(raw)
    sensitive = sensitive_values(original, ignored, raw)
    rep = Reporter(source)
    derived_frame, derived = derive_missing(
        raw, rep, response_rule=response_rule or mapping.response_rule, date_format=mapping.date_format
    )
    typed = validate_frame(derived_frame, rep, require_outcomes=require_outcomes, required=required)
    problems = rep.finish()
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise CohortValidationError(problems, source)
    found = tuple(p for p in problems if p.severity == "warning")
    if found:
        n = len(found)
        warnings.warn(
            f"{source}: {n} warning{'s' if n > 1 else ''}:\n" + "\n".join(map(str, found)),
            RiskModelWarning,
            stacklevel=2,
        )
    typed, rules = contract_competing(typed)
    for applied in rules:
        logger.info("%s", applied)  # counts only: shareable
    return Cohort(
        typed,
        source,
        found,
        tuple(derived),
        tuple(ignored),
        sensitive,
        _implant_years(raw, mapping),
        outcomes=OUTCOME_COLUMNS + tuple(f"{r.endpoint}_{part}" for r in rules for part in ("event_type", "cr_months")),
        competing_rules=rules,
    )


def _raw_fields_as_objects(raw: pd.DataFrame) -> pd.DataFrame:
    """The raw clinical fields (dates, TNM, diameters) as object cells, as the derivations read
    them; the contract's columns stay as they are (their checks read Arrow text in C)."""
    arrow = [c for c in raw.columns if c in RAW_COLUMNS and is_arrow_text(raw[c])]
    if not arrow:
        return raw
    return raw.assign(**{c: object_cells(raw[c]) for c in arrow})


def contract_competing(typed: pd.DataFrame) -> tuple[pd.DataFrame, tuple[CompetingRule, ...]]:
    """The bundled contract's competing endpoints (LC with death) as ``<name>_event_type`` and
    ``<name>_cr_months`` columns, when both endpoints' outcomes are complete; else unchanged.

    Follow-up after death (``lc_months > os_months``) is refused by the contract's own row check."""
    rules = []
    out = typed
    for ep, (other, after_censoring) in COMPETING_ENDPOINTS.items():
        cols = [f"{ep}_months", f"{ep}_event", f"{other}_months", f"{other}_event"]
        if not set(cols) <= set(typed.columns) or typed[cols].isna().to_numpy().any():
            continue
        state, cr_months, affected = competing_view(
            typed[f"{ep}_event"].to_numpy(int),
            typed[f"{ep}_months"].to_numpy(float),
            typed[f"{other}_event"].to_numpy(int),
            typed[f"{other}_months"].to_numpy(float),
            after_censoring,
        )
        if out is typed:
            out = typed.copy(deep=False)  # new columns only: the others are not copied
        out[f"{ep}_event_type"] = state
        out[f"{ep}_cr_months"] = cr_months
        rules.append(CompetingRule(ep, other, after_censoring, affected))
    return out, tuple(rules)


def _implant_years(renamed: pd.DataFrame, mapping: ColumnMapping) -> tuple[int, int] | None:
    if "implant_date" not in renamed.columns:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmt = mapping.date_format or "ISO8601"
        dates = pd.to_datetime(renamed["implant_date"], format=fmt, errors="coerce").dropna()
    return (int(dates.min().year), int(dates.max().year)) if len(dates) else None


def sensitive_values(original: pd.DataFrame, ignored: list[str], renamed: pd.DataFrame) -> frozenset[str]:
    """Text of raw date cells, and of unused columns that look like identifiers or free text.

    An unused column counts when most of its values are distinct (names, MRNs, notes); a
    low-cardinality one (say, "left"/"right") is a category, and guarding its words would refuse
    ordinary text. Only those columns are converted to text, so loading a large cohort pays nothing.
    """
    out: set[str] = set()
    unused = [original[h] for h in original.columns if str(h) in ignored]  # headers may be non-text (Excel)
    columns = unused + [renamed[c] for c in renamed.columns if c.endswith("_date")]
    for i, column in enumerate(columns):
        values = object_cells(column).dropna().astype(str).str.strip()
        values = values[values != ""]
        if i < len(unused) and values.nunique() < max(5, len(values) // 2):
            continue
        out.update(values.unique().tolist())
    return frozenset(out)


def load(
    path: str | Path,
    *,
    mapping: ColumnMapping | str | Path | AbcMapping[str, Any] | None = None,
    response_rule: ResponseRule | None = None,
    require_outcomes: bool = True,
    required: Collection[str] | None = None,
) -> Cohort:
    """Load a cohort file (CSV, Excel or Parquet): map aliases, derive, validate.

    Every problem is reported at once, each naming file, row, column, value and rule, in a
    :class:`~riskmodel.errors.CohortValidationError`. Warnings are emitted as
    :class:`~riskmodel.errors.RiskModelWarning` and kept in ``Cohort.warnings``. Set
    ``require_outcomes=False`` to load new patients for scoring, or ``required`` to the columns
    an experiment uses (an OS-only experiment needs no LC columns; present columns are checked).
    """
    if isinstance(mapping, (str, Path)):
        mapping = load_mapping(mapping)
    elif isinstance(mapping, AbcMapping):
        mapping = ColumnMapping.model_validate(dict(mapping))
    frame, first_row = read_table(path, arrow=True)
    return from_frame(
        frame,
        source=Path(path).name,
        mapping=mapping,
        response_rule=response_rule,
        require_outcomes=require_outcomes,
        required=required,
        first_row=first_row,
    )


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write the cohort as the CSV shipped in ``data/`` (yes/no for booleans)."""
    Path(path).write_text(cohort_csv_text(frame), encoding="utf-8")


def cohort_csv_text(frame: pd.DataFrame) -> str:
    """The cohort as the text of the CSV shipped in ``data/`` (yes/no for booleans)."""
    out = frame.copy()
    out["post_implant_chemo"] = out["post_implant_chemo"].map({True: "yes", False: "no"})
    for name in ("age_years", "kps", "prior_ebrt_fractions", "seed_count"):
        if (out[name] == out[name].round()).all():
            out[name] = out[name].astype("int64")
    return safe_csv_text(out, index=False, lineterminator="\n")
