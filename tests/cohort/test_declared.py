"""Declared cohorts: the declaration's own rules, and an export read through it.

Headers are found exactly or after normalising; times are converted by their declared unit;
status codes become event types; time zero is refused or moved to half a day; each missing-data
policy does what it says; and every problem names its file, row, column, value and rule, or, when
the declaration itself is wrong, its key path (``cohort.covariates[2].reference``).
Expected values are worked out by hand in each test, never taken from riskmodel's own output.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from riskmodel.cohort.declaration import TIME_UNITS_MONTHS, CohortDeclaration
from riskmodel.cohort.declared import HALF_DAY_MONTHS, load_declared, missing_data_table
from riskmodel.config import ExperimentConfig
from riskmodel.errors import CohortFileError, CohortValidationError, RiskModelWarning
from riskmodel.workflow.prepare import drop_uninformative

# eight patients as a spreadsheet export holds them: text cells, units in the headers, days, codes
EXPORT = {
    "Patient ID": ["A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08"],
    "Site": ["Leeds", "Leeds", "Lyon", "Lyon", "Lyon", "Turin", "Turin", "Turin"],
    "Age (years)": ["61", "70", "55", "48", "66", "59", "73", "62"],
    "Stage": ["I", "III", "II", "I", "II", "III", "I", "II"],
    "Arm": ["A", "B", "A", "B", "B", "A", "B", "B"],
    "Smoker": ["yes", "no", "no", "Yes", "N", "1", "0", "no"],
    "CEA (ng/mL)": ["3.1", "12.5", "", "4.4", "7.0", "", "2.2", "9.9"],
    "OS (days)": ["400", "35", "913", "120", "730", "61", "1500", "240"],
    "Status": ["1", "1", "0", "2", "0", "1", "0", "2"],
}
COVARIATES: list[dict[str, Any]] = [
    {"name": "age", "column": "Age (years)", "kind": "numeric", "unit": "years", "range": [18, 110]},
    {"name": "stage", "column": "Stage", "kind": "ordinal", "levels": ["I", "II", "III"]},
    {"name": "arm", "column": "Arm", "kind": "categorical", "levels": ["A", "B"], "reference": "A"},
    {"name": "smoker", "column": "Smoker", "kind": "binary"},
    {"name": "cea", "column": "CEA (ng/mL)", "kind": "numeric", "unit": "ng/mL", "missing": "impute"},
]
ENDPOINT = {
    "name": "os",
    "time": "OS (days)",
    "time_unit": "days",
    "event": "Status",
    "event_codes": [1],
    "competing_codes": [2],
    "censored_codes": [0],
}
DAYS_PER_MONTH = 365.25 / 12  # 30.4375


def declare(covariates: list[dict[str, Any]] | None = None, **endpoint: Any) -> CohortDeclaration:
    cohort = {
        "id": "Patient ID",
        "centre": "Site",
        "covariates": COVARIATES if covariates is None else covariates,
        "endpoints": [{**ENDPOINT, **endpoint}],
    }
    return CohortDeclaration.model_validate(cohort, strict=False)


def with_covariate(index: int, **changes: Any) -> list[dict[str, Any]]:
    out = [dict(c) for c in COVARIATES]
    out[index].update(changes)
    return out


def write(tmp_path: Path, changes: dict[str, list[str]] | None = None, name: str = "export.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame({**EXPORT, **(changes or {})}).to_csv(path, index=False)
    return path


def problems(path: Path, declaration: CohortDeclaration) -> list[str]:
    with pytest.raises(CohortValidationError) as info:
        load_declared(path, declaration)
    return [str(p) for p in info.value.problems]


# --------------------------------------------------------------------------- the clean export
def test_a_clean_export_is_typed_one_column_per_declared_name(tmp_path: Path) -> None:
    cohort = load_declared(write(tmp_path), declare())
    d = cohort.data
    assert list(d.index) == list(range(2, 10))  # spreadsheet rows: the header is row 1
    assert d["patient_id"].tolist() == EXPORT["Patient ID"]
    assert d["centre"].tolist() == EXPORT["Site"]
    assert d["age"].tolist() == [61.0, 70.0, 55.0, 48.0, 66.0, 59.0, 73.0, 62.0]
    assert d["stage"].tolist() == [0.0, 2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 1.0]  # I, II, III in declared order
    assert d["arm"].tolist() == EXPORT["Arm"]
    assert d["smoker"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]  # yes/Yes/1 and no/N/0
    assert d["cea"].isna().tolist() == [False, False, True, False, False, True, False, False]
    # competing codes: the competing-risks time is an outcome too (here the own time, as no rule moves it)
    assert cohort.outcomes == ("os_months", "os_event", "os_event_type", "os_cr_months")
    assert d["os_cr_months"].tolist() == d["os_months"].tolist()


# --------------------------------------------------------------------------- headers
@pytest.mark.parametrize("declared", ["Age (years)", "age (YEARS)", "AGE_YEARS", "  Age  [years] "])
def test_a_header_is_found_exactly_or_after_normalising_case_spaces_and_punctuation(
    tmp_path: Path, declared: str
) -> None:
    cohort = load_declared(write(tmp_path), declare(with_covariate(0, column=declared)))
    assert cohort.data["age"].tolist()[:3] == [61.0, 70.0, 55.0]


def test_an_exact_header_wins_over_one_that_only_normalises_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, {"age_years": ["20", "21", "22", "23", "24", "25", "26", "27"]})
    cohort = load_declared(path, declare(with_covariate(0, column="age_years")))
    assert cohort.data["age"].tolist()[:2] == [20.0, 21.0]
    cohort = load_declared(path, declare(with_covariate(0, column="Age (years)")))
    assert cohort.data["age"].tolist()[:2] == [61.0, 70.0]


def test_an_unknown_column_names_its_key_path_and_lists_the_files_headers(tmp_path: Path) -> None:
    with pytest.raises(CohortFileError) as info:
        load_declared(write(tmp_path), declare(with_covariate(0, column="Age (yrs)")))
    message = str(info.value)
    assert "export.csv: cohort.covariates[0].column (age): no column 'Age (yrs)' in the file" in message
    assert "'Age (years)'" in message  # what it could have meant
    with pytest.raises(CohortFileError, match=r"cohort\.endpoints\[0\]\.event \(os\): no column 'Outcome'"):
        load_declared(write(tmp_path), declare(event="Outcome"))


# --------------------------------------------------------------------------- time and codes
def test_the_time_units_are_a_twelfth_of_a_julian_year() -> None:
    assert TIME_UNITS_MONTHS["days"] == pytest.approx(1 / 30.4375, rel=1e-15)
    assert TIME_UNITS_MONTHS["weeks"] == pytest.approx(7 / 30.4375, rel=1e-15)
    assert TIME_UNITS_MONTHS["months"] == 1.0
    assert TIME_UNITS_MONTHS["years"] == 12.0


@pytest.mark.parametrize(
    ("unit", "cells", "months"),
    [
        ("days", ["365.25", "30.4375", "1"], [12.0, 1.0, 1 / 30.4375]),
        ("weeks", ["52", "1", "4.348214285714286"], [52 * 7 / 30.4375, 7 / 30.4375, 1.0]),
        ("months", ["7.5", "1", "120"], [7.5, 1.0, 120.0]),
        ("years", ["2", "0.5", "10"], [24.0, 6.0, 120.0]),
    ],
)
def test_the_time_is_converted_to_months_by_its_declared_unit(
    tmp_path: Path, unit: str, cells: list[str], months: list[float]
) -> None:
    times = [*cells, *EXPORT["OS (days)"][3:]]
    cohort = load_declared(write(tmp_path, {"OS (days)": times}), declare(time_unit=unit))
    assert cohort.data["os_months"].tolist()[:3] == pytest.approx(months, rel=1e-12)


def test_status_codes_become_the_event_and_the_event_type(tmp_path: Path) -> None:
    status = ["1", "0", "2", "1.0", " 2 ", "0.0", "1", "0"]  # Excel writes 1 as 1.0; cells carry spaces
    d = load_declared(write(tmp_path, {"Status": status}), declare()).data
    assert d["os_event_type"].tolist() == [1, 0, 2, 1, 2, 0, 1, 0]
    assert d["os_event"].tolist() == [1, 0, 0, 1, 0, 0, 1, 0]  # a competing event is not the event


def test_text_status_codes_and_several_codes_per_kind(tmp_path: Path) -> None:
    status = ["died", "alive", "died-other", "lost", "died", "alive", "died-other", "lost"]
    declaration = declare(event_codes=["died"], competing_codes=["died-other"], censored_codes=["alive", "lost"])
    d = load_declared(write(tmp_path, {"Status": status}), declaration).data
    assert d["os_event_type"].tolist() == [1, 0, 2, 0, 1, 0, 2, 0]


def test_an_undeclared_status_code_names_the_row_and_the_declared_codes(tmp_path: Path) -> None:
    status = ["1", "0", "9", "1", "0", "1", "0", "2"]
    assert problems(write(tmp_path, {"Status": status}), declare()) == [
        "error: export.csv, row 4, column Status, value '9': must be one of the declared codes "
        "(event [1], competing [2], censored [0])"
    ]


def test_a_code_in_two_kinds_is_refused_by_the_declaration() -> None:
    with pytest.raises(ValidationError, match="code 2 is in both event_codes and competing_codes"):
        declare(event_codes=[1, 2], competing_codes=[2])


def test_time_zero_is_refused_by_default_naming_the_row(tmp_path: Path) -> None:
    times = ["400", "0", *EXPORT["OS (days)"][2:]]
    assert problems(write(tmp_path, {"OS (days)": times}), declare()) == [
        "error: export.csv, row 3, column OS (days), value '0': os time is 0: an event or censoring at time zero "
        "(set zero_time: half_day to move it)"
    ]


def test_time_zero_moves_to_half_a_day_on_request(tmp_path: Path) -> None:
    times = ["400", "0", *EXPORT["OS (days)"][2:]]
    d = load_declared(write(tmp_path, {"OS (days)": times}), declare(zero_time="half_day")).data
    assert pytest.approx(0.5 / 30.4375, rel=1e-15) == HALF_DAY_MONTHS
    assert d["os_months"].tolist()[:2] == pytest.approx([400 / 30.4375, 0.5 / 30.4375], rel=1e-12)


def test_a_negative_or_missing_time_is_a_row_error(tmp_path: Path) -> None:
    times = ["-3", "", *EXPORT["OS (days)"][2:]]
    found = problems(write(tmp_path, {"OS (days)": times}), declare())
    assert "error: export.csv, row 2, column OS (days), value '-3': os time must be 0 or more" in found
    assert "error: export.csv, row 3, column OS (days), value (empty): os time is missing" in found


# --------------------------------------------------------------------------- per-row problems
def test_a_typo_in_one_cell_names_file_row_column_value_and_rule_and_all_are_reported_at_once(
    tmp_path: Path,
) -> None:
    changes = {
        "Age (years)": ["61", "70", "5O", "48", "66", "59", "73", "62"],  # a letter O for a zero
        "Arm": ["A", "B", "A", "B", "B", "A", "C", "B"],
        "Smoker": ["yes", "no", "no", "Yes", "N", "1", "0", "maybe"],
    }
    assert problems(write(tmp_path, changes), declare()) == [
        "error: export.csv, row 4, column Age (years), value '5O': age is declared numeric: must be a number "
        "(no units)",
        "error: export.csv, row 8, column Arm, value 'C': must be one of the declared levels: A, B",
        "error: export.csv, row 9, column Smoker, value 'maybe': smoker is binary: must be 0/1 or yes/no",
    ]


def test_range_is_an_error_and_plausible_a_warning_that_keeps_the_value(tmp_path: Path) -> None:
    ages = ["61", "170", "55", "48", "66", "59", "101", "62"]
    assert problems(write(tmp_path, {"Age (years)": ages}), declare()) == [
        "error: export.csv, row 3, column Age (years), value '170': must be within 18 to 110 years"
    ]
    plausible = declare(with_covariate(0, range=None, plausible=[18, 100]))
    with pytest.warns(RiskModelWarning, match="2 warnings") as caught:
        cohort = load_declared(write(tmp_path, {"Age (years)": ages}), plausible)
    assert "row 3, column Age (years), value '170': outside the plausible 18 to 100 years" in str(caught[0].message)
    assert "row 8, column Age (years), value '101'" in str(caught[0].message)
    assert cohort.data["age"].tolist()[1] == 170.0
    assert [p.row for p in cohort.warnings] == [3, 8]


def test_a_log_encoding_refuses_a_value_at_or_below_zero(tmp_path: Path) -> None:
    cea = ["3.1", "0", "", "4.4", "7.0", "", "2.2", "9.9"]
    found = problems(write(tmp_path, {"CEA (ng/mL)": cea}), declare(with_covariate(4, encoding="log")))
    assert found == ["error: export.csv, row 3, column CEA (ng/mL), value '0': cea has a log encoding: must be above 0"]


# --------------------------------------------------------------------------- the declaration against the data
def test_a_kind_the_data_contradict_is_one_error_with_its_key_path_not_one_per_row(tmp_path: Path) -> None:
    found = problems(write(tmp_path), declare(with_covariate(2, kind="numeric", levels=None, reference=None)))
    assert len(found) == 1
    assert "cohort.covariates[2].kind (arm): declared numeric, but 8 of 8 values in 'Arm' are not numbers" in found[0]
    binary = {"name": "stage", "column": "Stage", "kind": "binary"}
    found = problems(write(tmp_path), declare([COVARIATES[0], binary, *COVARIATES[2:]]))
    assert len(found) == 1
    assert "cohort.covariates[1].kind (stage): declared binary, but 'Stage' has 3 distinct values" in found[0]


def test_levels_the_data_do_not_use_are_one_error_with_their_key_path(tmp_path: Path) -> None:
    found = problems(write(tmp_path), declare(with_covariate(1, levels=["1", "2", "3"])))
    assert len(found) == 1
    assert (
        "cohort.covariates[1].levels (stage): 8 of 8 values in 'Stage' are not among the declared levels" in (found[0])
    )


def test_a_reference_level_no_patient_has_is_an_error_with_its_key_path(tmp_path: Path) -> None:
    found = problems(write(tmp_path), declare(with_covariate(2, levels=["A", "B", "C"], reference="C")))
    assert len(found) == 1
    assert "cohort.covariates[2].reference (arm): the reference level 'C' has no patient in the file" in found[0]


# --------------------------------------------------------------------------- missing-data policies
def test_refuse_names_every_missing_cell_and_the_policy(tmp_path: Path) -> None:
    found = problems(write(tmp_path), declare(with_covariate(4, missing="refuse")))
    rule = "cea is missing; the declaration says missing: refuse (choose complete_case, indicator or impute)"
    assert found == [
        f"error: export.csv, row 4, column CEA (ng/mL), value (empty): {rule}",
        f"error: export.csv, row 7, column CEA (ng/mL), value (empty): {rule}",
    ]


def test_complete_case_leaves_the_patients_out_with_a_warning_and_counts_them_first(tmp_path: Path) -> None:
    declaration = declare(with_covariate(4, missing="complete_case"))
    with pytest.warns(
        RiskModelWarning, match=r"2 patients left out for a missing cea \(declared missing: complete_case\)"
    ):
        cohort = load_declared(write(tmp_path), declaration)
    assert cohort.data["patient_id"].tolist() == ["A01", "A02", "A04", "A05", "A07", "A08"]
    assert cohort.n_read == 8
    assert cohort.missing.loc["cea", "missing"] == 2  # the file's count, before the exclusion
    table = missing_data_table(cohort).set_index("covariate")
    assert table.loc["cea", "policy"] == "complete_case"
    assert table.loc["age", "handling"] == "none missing"


@pytest.mark.parametrize("policy", ["impute", "indicator"])
def test_impute_and_indicator_keep_the_patient_with_nan(tmp_path: Path, policy: str) -> None:
    cohort = load_declared(write(tmp_path), declare(with_covariate(4, missing=policy)))
    assert len(cohort) == 8
    assert math.isnan(cohort.data.loc[4, "cea"])


def test_the_missing_table_gives_shares_by_event_status_and_centre_by_hand(tmp_path: Path) -> None:
    cohort = load_declared(write(tmp_path), declare())
    row = missing_data_table(cohort).set_index("covariate").loc["cea"]
    # CEA is missing in rows 4 (A03: censored, Lyon) and 7 (A06: event, Turin);
    # events are A01, A02, A06 (3 patients); the other 5 include two competing events
    assert (row["missing"], row["percent"]) == (2, 25.0)
    assert row["os event %"] == pytest.approx(round(100 / 3, 1))
    assert row["os no event %"] == 20.0
    assert (row["centre Leeds %"], row["centre Lyon %"], row["centre Turin %"]) == (0.0, pytest.approx(33.3), 33.3)


def test_a_constant_or_empty_covariate_is_left_out_with_a_note_naming_it(tmp_path: Path) -> None:
    changes = {"Arm": ["A"] * 8, "CEA (ng/mL)": [""] * 8}
    declaration = declare()
    cohort = load_declared(write(tmp_path, changes), declare(with_covariate(2, levels=["A", "B"])))
    config = ExperimentConfig.model_validate(
        {"name": "x", "data": {"path": "export.csv"}, "cohort": declaration.model_dump(mode="json")}, strict=False
    )
    kept, notes = drop_uninformative(config, cohort)
    assert kept.covariates == ["age", "stage", "smoker"]
    assert notes == [
        "covariate arm has the same value for every patient: left out of the models",
        "covariate cea is missing for every patient: left out of the models",
    ]


# --------------------------------------------------------------------------- the declaration's own rules
@pytest.mark.parametrize(
    ("index", "changes", "field", "words"),
    [
        (2, {"reference": "C"}, "reference", "reference level 'C' is not among the levels ['A', 'B']"),
        (3, {"encoding": "spline"}, "encoding", "encoding spline applies to numeric covariates only"),
        (1, {"encoding": "log"}, "encoding", "encoding log applies to numeric covariates only"),
        (3, {"range": [0, 1]}, "range", "range and plausible apply to numeric covariates"),
        (1, {"reference": "I"}, "reference", "only a categorical covariate has a reference level"),
    ],
)
def test_a_declaration_error_is_located_at_the_offending_key(
    index: int, changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as info:
        declare(with_covariate(index, **changes))
    [error] = info.value.errors()
    assert error["loc"] == ("covariates", index, field)
    assert words in error["msg"]


@pytest.mark.parametrize(
    ("index", "changes", "words"),
    [
        (3, {"kind": "categorical"}, "a categorical covariate needs its levels"),
        (1, {"levels": ["I", "II", "I"]}, "levels must not repeat"),
        (0, {"range": [110, 18]}, "range must be two finite numbers, low ≤ high"),
        (0, {"encoding": "threshold"}, "encoding: threshold and a threshold value go together"),
        (0, {"encoding": "log", "range": [0, 10]}, "its range must start above 0"),
    ],
)
def test_other_declaration_rules_name_the_covariate(index: int, changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        declare(with_covariate(index, **changes))
    [error] = info.value.errors()
    assert error["loc"][:2] == ("covariates", index)
    assert words in error["msg"]


def experiment(**changes: Any) -> dict[str, Any]:
    covariates = with_covariate(1, measured_at_months=6)
    return {"name": "x", "cohort": declare(covariates).model_dump(mode="json"), **changes}


def test_the_landmark_defaults_to_the_latest_measurement() -> None:
    assert ExperimentConfig.model_validate(experiment(), strict=False).landmark_months == 6.0


def test_a_covariate_measured_after_the_landmark_is_refused_at_its_key_path() -> None:
    with pytest.raises(ValidationError) as info:
        ExperimentConfig.model_validate(experiment(landmark_months=3), strict=False)
    message = str(info.value)
    assert "cohort.covariates[1].measured_at_months: stage is measured at 6 months, after the landmark of 3" in message
    assert "guarantee-time bias" in message
    ExperimentConfig.model_validate(experiment(landmark_months=6), strict=False)
    # a covariate the models do not use does not constrain the landmark
    unused = experiment(landmark_months=3, features={"covariates": ["age", "arm"]})
    assert ExperimentConfig.model_validate(unused, strict=False).covariates == ["age", "arm"]
