"""Loading: formats, aliases, mapping files, and every kind of bad input reported precisely."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from riskmodel.cohort import Cohort, from_frame, load, load_mapping
from riskmodel.errors import CohortFileError, CohortValidationError, RiskModelWarning
from riskmodel.privacy import pseudonym

Writer = Callable[..., Path]


def errors_of(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(CohortValidationError) as info:
        load(path, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def broken(frame: pd.DataFrame, row: int, column: str, value: str) -> pd.DataFrame:
    """Set one cell; ``row`` is the spreadsheet row (header = 1, first patient = 2)."""
    out = frame.copy()
    out.loc[row - 2, column] = value
    return out


class TestBundledAndFormats:
    def test_bundled_cohort_is_valid_and_typed(self, bundled: Cohort) -> None:
        d = bundled.data
        assert len(bundled) == 36
        assert bundled.warnings == ()
        assert bundled.derived == ()
        assert d["d90_gy"].dtype == "float64"
        assert d["os_event"].dtype == "int64"
        assert list(d["response_3mo"].cat.categories) == ["PD", "SD", "PR", "CR"]
        assert d["response_3mo"].cat.ordered
        assert d["post_implant_chemo"].dtype == "boolean"
        assert d.index[0] == 2  # spreadsheet row numbers

    @pytest.mark.parametrize("suffix", [".xlsx", ".parquet", ".tsv"])
    def test_other_formats_load_to_the_same_cohort(
        self, bundled: Cohort, canonical_frame: pd.DataFrame, tmp_path: Path, suffix: str
    ) -> None:
        path = tmp_path / f"cohort{suffix}"
        if suffix == ".xlsx":
            canonical_frame.to_excel(path, index=False)
        elif suffix == ".parquet":
            bundled.data.to_parquet(path)
        else:
            canonical_frame.to_csv(path, sep="\t", index=False)
        other = load(path)
        pd.testing.assert_frame_equal(other.data.reset_index(drop=True), bundled.data.reset_index(drop=True))

    def test_semicolon_csv_with_windows_encoding(self, canonical_frame: pd.DataFrame, tmp_path: Path) -> None:
        frame = canonical_frame.copy()
        frame.loc[0, "patient_id"] = "RÉCON-01"
        path = tmp_path / "export.csv"
        frame.to_csv(path, sep=";", index=False, encoding="cp1252")
        assert load(path).data["patient_id"].iloc[0] == "RÉCON-01"

    def test_aliases_and_loose_headers(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = canonical_frame.rename(
            columns={"d90_gy": "D90 (Gy)", "age_years": "Age", "sex": "Gender", "response_3mo": "Short-term response"}
        )
        assert len(load(write_csv(frame))) == 36

    def test_unknown_columns_are_ignored_and_reported(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = canonical_frame.assign(**{"Surgeon notes": "x"})
        cohort = load(write_csv(frame))
        assert cohort.ignored == ("Surgeon notes",)
        assert "Surgeon notes" not in cohort.data

    def test_blank_lines_keep_row_numbers(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        text = canonical_frame.to_csv(index=False).splitlines()
        text.insert(3, "")  # a blank line 4
        text[5] = text[5].replace("RECON-04", "RECON-01")  # file line 6 duplicates an ID
        lines = errors_of(write_csv("\n".join(text) + "\n"))
        assert lines == [
            f"error: cohort.csv, row 6, column patient_id, value {pseudonym('RECON-01')}: "
            "duplicate patient_id (first seen on row 2)"
        ]


class TestBadInput:
    def test_missing_columns_each_named(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(canonical_frame.drop(columns=["d90_gy", "os_event"])))
        assert any("column d90_gy: required column is missing" in line for line in lines)
        assert any("column os_event: required column is missing" in line for line in lines)

    def test_text_in_numeric_column(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(broken(canonical_frame, 5, "d90_gy", "110 Gy")))
        assert lines == [
            "error: cohort.csv, row 5, column d90_gy, value '110 Gy': must be a number (use a decimal point, no units)"
        ]

    def test_unknown_stage(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(broken(canonical_frame, 9, "t_stage", "T5")))
        assert lines == [
            "error: cohort.csv, row 9, column t_stage, value 'T5': "
            "must be one of T0, Tis, T1, T1a, T1b, T2, T3, T4, T4a, T4b"
        ]

    def test_negative_time(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = broken(broken(canonical_frame, 3, "lc_months", "-1"), 3, "os_months", "-1")
        lines = errors_of(write_csv(frame))
        assert "error: cohort.csv, row 3, column os_months, value '-1': must be at least 0 months (hard limit)" in lines
        assert "error: cohort.csv, row 3, column lc_months, value '-1': must be at least 0 months (hard limit)" in lines

    def test_duplicated_ids(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(broken(canonical_frame, 10, "patient_id", "RECON-02")))
        assert lines == [
            f"error: cohort.csv, row 10, column patient_id, value {pseudonym('RECON-02')}: "
            "duplicate patient_id (first seen on row 3)"
        ]

    def test_lc_after_os_and_event_at_time_zero(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = canonical_frame.copy()
        frame.loc[0, ["lc_months", "os_months"]] = ["12", "10"]
        frame.loc[1, ["os_months", "lc_months", "os_event"]] = ["0", "0", "1"]
        lines = errors_of(write_csv(frame))
        assert any(
            line.startswith("error: cohort.csv, row 2, column lc_months, value 12.0: lc_months is greater")
            for line in lines
        )
        assert (
            "error: cohort.csv, row 3, column os_months, value 0.0: an event (os_event = 1) cannot happen at time 0"
            in lines
        )

    def test_hard_limits(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = broken(broken(canonical_frame, 4, "d90_gy", "401"), 6, "os_event", "2")
        lines = errors_of(write_csv(frame))
        assert "error: cohort.csv, row 4, column d90_gy, value '401': must be at most 400 Gy (hard limit)" in lines
        assert "error: cohort.csv, row 6, column os_event, value '2': must be 0 (censored) or 1 (event)" in lines

    def test_d100_above_d90(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(broken(canonical_frame, 2, "d100_gy", "200")))
        assert len(lines) == 1
        assert "row 2, column d100_gy, value 200.0: D100 cannot exceed D90" in lines[0]

    def test_response_for_a_patient_dead_before_the_scan(
        self, canonical_frame: pd.DataFrame, write_csv: Writer
    ) -> None:
        frame = canonical_frame.copy()
        frame.loc[2, ["os_months", "lc_months", "os_event", "lc_event"]] = ["2", "2", "1", "0"]
        lines = errors_of(write_csv(frame))
        assert len(lines) == 1
        assert "died before the 3-month CT" in lines[0]
        assert "row 4" in lines[0]

    def test_every_problem_is_reported_at_once(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = canonical_frame.copy()
        frame.loc[0, "d90_gy"] = "abc"
        frame.loc[5, "sex"] = "X"
        frame.loc[10, "kps"] = "75.5"
        frame.loc[20, "post_implant_chemo"] = "maybe"
        frame.loc[30, "age_years"] = ""
        lines = errors_of(write_csv(frame))
        expected = [
            ("row 2", "d90_gy"),
            ("row 7", "sex"),
            ("row 12", "kps"),
            ("row 22", "post_implant_chemo"),
            ("row 32", "age_years"),
        ]
        for row, col in expected:
            assert any(f"{row}, column {col}," in line for line in lines), (row, col, lines)

    def test_a_flood_of_bad_cells_is_capped(self, canonical_frame: pd.DataFrame, tmp_path: Path) -> None:
        frame = pd.concat([canonical_frame] * 3, ignore_index=True)
        frame["patient_id"] = [f"P{i}" for i in range(len(frame))]
        frame["kps"] = "high"
        path = tmp_path / "big.csv"
        frame.to_csv(path, index=False)
        lines = errors_of(path)
        assert len(lines) == 51
        assert lines[-1].startswith("error: big.csv, column kps: 58 more rows break")

    def test_g_codes_are_not_guessed(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(broken(canonical_frame, 2, "pathological_grade", "G1")))
        assert "G1 is well differentiated" in lines[0]


class TestDates:
    @pytest.mark.parametrize(
        ("column", "value", "rule"),
        [
            (
                "Death date",
                "2015-09-01",
                "row 2, column death_date, value '2015-09-01': death is dated before the implant",
            ),
            (
                "Local progression date",
                "2016-11-01",
                "row 2, column death_date, value '2016-10-01': local progression is dated after death",
            ),
            (
                "Last follow-up date",
                "2015-09-30",
                "row 2, column last_followup_date, value '2015-09-30': last follow-up is dated before the implant",
            ),
            (
                "Recurrence date",
                "2014-12-31",
                "row 2, column recurrence_date, value '2014-12-31': recurrence is dated before the end of EBRT",
            ),
            ("Death date", "01/10/2016", "must be a date in the format YYYY-MM-DD"),
        ],
    )
    def test_impossible_orders_and_formats(self, write_csv: Writer, column: str, value: str, rule: str) -> None:
        from tests.conftest import RAW_EXPORT

        frame = pd.read_csv(pd.io.common.StringIO(RAW_EXPORT), dtype=str, keep_default_na=False)
        frame.loc[0, column] = value
        lines = errors_of(write_csv(frame), response_rule="volume")
        assert any(rule in line for line in lines), lines

    def test_date_format_from_the_mapping(self, write_csv: Writer, tmp_path: Path) -> None:
        from tests.conftest import RAW_EXPORT

        frame = pd.read_csv(pd.io.common.StringIO(RAW_EXPORT), dtype=str, keep_default_na=False)
        for col in [c for c in frame.columns if c.endswith("date")]:
            frame[col] = pd.to_datetime(frame[col]).dt.strftime("%d.%m.%Y").fillna("")
        mapping = tmp_path / "map.yaml"
        mapping.write_text('date_format: "%d.%m.%Y"\nresponse_rule: volume\n')
        cohort = load(write_csv(frame), mapping=mapping)
        assert cohort.data["os_months"].iloc[0] == pytest.approx(366 / 30.4375)

    def test_both_response_inputs_need_a_choice(self, write_csv: Writer) -> None:
        from tests.conftest import RAW_EXPORT

        frame = pd.read_csv(pd.io.common.StringIO(RAW_EXPORT), dtype=str, keep_default_na=False)
        frame = frame.assign(sld_baseline_mm="40", sld_3mo_mm="20")
        lines = errors_of(write_csv(frame))
        assert any("choose response_rule" in line for line in lines)
        assert list(load(write_csv(frame), response_rule="recist").data["response_3mo"].astype(str)) == ["PR"] * 3


class TestUnreadableFiles:
    def test_empty_file(self, write_csv: Writer) -> None:
        with pytest.raises(CohortFileError, match="the file is empty"):
            load(write_csv(""))

    def test_whitespace_only_file(self, write_csv: Writer) -> None:
        with pytest.raises(CohortFileError, match="the file is empty"):
            load(write_csv("\n\n  \n"))

    def test_header_only(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        assert errors_of(write_csv(",".join(canonical_frame.columns) + "\n")) == [
            "error: cohort.csv: the table has no patient rows"
        ]

    def test_binary_file_named_csv(self, tmp_path: Path) -> None:
        path = tmp_path / "scan.csv"
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
        with pytest.raises(CohortFileError, match="binary content, not a text CSV"):
            load(path)

    def test_prose_named_csv(self, write_csv: Writer) -> None:
        with pytest.raises(CohortFileError, match="none of its columns"):
            load(write_csv("Dear colleague, please find the data attached.\nBest wishes\n"))

    @pytest.mark.parametrize("name", ["cohort.docx", "cohort.json", "cohort"])
    def test_unsupported_type(self, tmp_path: Path, name: str) -> None:
        path = tmp_path / name
        path.write_text("{}")
        with pytest.raises(CohortFileError, match="unsupported file type"):
            load(path)

    def test_corrupt_excel(self, tmp_path: Path) -> None:
        path = tmp_path / "c.xlsx"
        path.write_text("not really excel")
        with pytest.raises(CohortFileError, match="cannot be read as Excel"):
            load(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(CohortFileError, match="file not found"):
            load(tmp_path / "nope.csv")

    def test_two_headers_mapping_to_one_column(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = canonical_frame.assign(D90=canonical_frame["d90_gy"])
        with pytest.raises(CohortFileError, match="columns 'd90_gy' and 'D90' both map to d90_gy"):
            load(write_csv(frame))


class TestMappingFile:
    def test_example_mapping_is_valid(self) -> None:
        from tests.conftest import REPO

        mapping = load_mapping(REPO / "data" / "mapping.example.yaml")
        assert mapping.response_rule == "volume"
        assert mapping.columns["Dosis D90"] == "d90_gy"

    def test_value_renames(self, canonical_frame: pd.DataFrame, write_csv: Writer, tmp_path: Path) -> None:
        frame = canonical_frame.assign(sex=canonical_frame["sex"].map({"M": "1", "F": "2"}))
        mapping = tmp_path / "m.yaml"
        mapping.write_text("values:\n  sex: {'1': M, '2': F}\n")
        assert (load(write_csv(frame), mapping=mapping).data["sex"] == "M").sum() == 32

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("columns: {a: d90}\n", "columns.a: 'd90' is not a canonical"),
            ("colums: {}\n", "colums, value {}: Extra inputs are not permitted"),
            ("response_rule: diameters\n", "response_rule"),
            ("- just a list\n", "must be a YAML mapping with keys such as columns"),
            ("columns: [\n", "not a readable YAML file"),
        ],
    )
    def test_bad_mapping_files(self, tmp_path: Path, text: str, message: str) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(text)
        with pytest.raises(CohortFileError, match=message):
            load_mapping(path)


class TestWarnings:
    def test_warnings_are_shown_and_kept(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = broken(broken(canonical_frame, 2, "kps", "75"), 3, "age_years", "101")
        with pytest.warns(RiskModelWarning, match="2 warnings") as record:
            cohort = load(write_csv(frame))
        assert "kps" in str(record[0].message)
        assert [(w.row, w.column) for w in cohort.warnings] == [(3, "age_years"), (2, "kps")]
        assert all(w.severity == "warning" for w in cohort.warnings)

    def test_dose_units_warning(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        frame = broken(canonical_frame, 2, "prescription_dose_gy", "300")
        with pytest.warns(RiskModelWarning, match="factor 2"):
            load(write_csv(frame))


def test_scoring_cohort_needs_no_outcomes(bundled: Cohort) -> None:
    new = bundled.data.drop(columns=["os_months", "os_event", "lc_months", "lc_event"])
    assert "os_months" not in from_frame(new, require_outcomes=False).data
    with pytest.raises(CohortValidationError, match="os_months: required column is missing"):
        from_frame(new)


class TestMoreMalformedFiles:
    def test_a_repeated_header_is_refused(self, canonical_frame: pd.DataFrame, tmp_path: Path) -> None:
        path = tmp_path / "dup.csv"
        text = canonical_frame.to_csv(index=False).splitlines()
        path.write_text("\n".join([text[0] + ",d90_gy"] + [line + ",99" for line in text[1:]]) + "\n")
        with pytest.raises(CohortFileError, match="the column 'd90_gy' appears more than once"):
            load(path)

    def test_event_given_as_text(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        lines = errors_of(write_csv(broken(canonical_frame, 4, "os_event", "yes")))
        assert lines == ["error: cohort.csv, row 4, column os_event, value 'yes': must be 0 (censored) or 1 (event)"]

    def test_empty_excel_sheet(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.xlsx"
        pd.DataFrame().to_excel(path)
        with pytest.raises(CohortFileError, match="no columns"):
            load(path)

    def test_ragged_csv_names_the_line(self, canonical_frame: pd.DataFrame, write_csv: Writer) -> None:
        text = canonical_frame.to_csv(index=False).splitlines()
        text[2] += ",x,y"
        with pytest.raises(CohortFileError, match="Expected 24 fields in line 3, saw 26"):
            load(write_csv("\n".join(text) + "\n"))

    def test_impossible_calendar_date(self, write_csv: Writer) -> None:
        path = write_csv("patient_id,implant_date,last_followup_date\nP1,2015-02-30,2016-01-01\n")
        assert any("row 2, column implant_date, value '2015-02-30': must be a date" in line for line in errors_of(path))
