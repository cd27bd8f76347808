"""Clinical derivations against hand computations, boundaries, and raw exports end to end."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskmodel.cohort import load
from riskmodel.cohort.derive import (
    bed_fractionated,
    bed_permanent_implant,
    ellipsoid_volume_cm3,
    eqd2,
    months_between,
    parse_tnm,
    recist_response,
    volume_response,
)


class TestDoseBiology:
    def test_implant_bed_matches_the_study_worked_figure(self) -> None:
        # study.md: "D90 = 110 Gy gives BED10 ≈ 111.3 Gy"
        assert bed_permanent_implant(110.0) == pytest.approx(111.3, abs=0.05)

    def test_implant_bed_by_hand(self) -> None:
        # λ = ln2/(59.4·24 h), μ = ln2/1.5 h; BED3 = D(1 + Dλ/((μ+λ)·3)) for D = 145 Gy
        lam, mu = 0.6931471805599453 / 1425.6, 0.6931471805599453 / 1.5
        expected = 145 * (1 + 145 * lam / ((mu + lam) * 3))
        assert bed_permanent_implant(145.0, alpha_beta=3.0) == pytest.approx(expected, rel=1e-12)
        assert expected == pytest.approx(152.37, abs=0.01)  # 145 · (1 + 0.152408 / 3)

    def test_ebrt_bed_and_eqd2(self) -> None:
        assert bed_fractionated(60.0, 30, 10.0) == pytest.approx(72.0)  # study.md worked figure
        assert bed_fractionated(50.4, 28, 10.0) == pytest.approx(50.4 * 1.18)
        assert eqd2(bed_fractionated(60.0, 30, 3.0), 3.0) == pytest.approx(60.0)
        # 20 Gy in 5 fractions of 4 Gy: BED10 = 28, EQD2 = 28/1.2
        assert eqd2(bed_fractionated(20.0, 5, 10.0)) == pytest.approx(23.3333, abs=1e-4)

    def test_low_dose_rate_bed_tends_to_physical_dose_for_small_doses(self) -> None:
        assert bed_permanent_implant(1e-6) == pytest.approx(1e-6, rel=1e-6)


class TestTNM:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("T2N1M0", ("T2", "N1", "M0")),
            ("cT3 N2 M0", ("T3", "N2", "M0")),
            ("T4aN0M1", ("T4a", "N0", "M1")),
            ("pT1b N3 M0", ("T1b", "N3", "M0")),
            ("t1n0m0", ("T1", "N0", "M0")),
            ("ypT2, N1, M0", ("T2", "N1", "M0")),
            ("TisN0M0", ("Tis", "N0", "M0")),
        ],
    )
    def test_parses(self, text: str, expected: tuple[str, str, str]) -> None:
        assert parse_tnm(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("T5N0M0", "unknown T category 'T5'"),
            ("T2N4M0", "unknown N category 'N4'"),
            ("TxN0M0", "unknown stage cannot be modelled"),
            ("T2N1", "not a TNM string"),
            ("stage III", "not a TNM string"),
            ("T4cN0M0", "unknown T category 'T4c'"),
        ],
    )
    def test_rejects(self, text: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_tnm(text)


class TestResponse:
    @pytest.mark.parametrize(
        ("baseline", "followup", "expected"),
        [
            (50, 35, "PR"),
            (50, 35.01, "SD"),  # -30 % is PR, just above is SD
            (30, 21, "PR"),
            (10, 7, "PR"),  # -30 % with awkward floating point
            (25, 30, "PD"),
            (25, 29.99, "SD"),  # +20 % with +5 mm is PD
            (20, 24, "SD"),
            (20, 25, "PD"),  # +20 % but +4 mm is not PD; +25 % and +5 mm is
            (100, 119.9, "SD"),
            (100, 120, "PD"),
            (40, 0, "CR"),
            (40, 40, "SD"),
        ],
    )
    def test_recist_boundaries(self, baseline: float, followup: float, expected: str) -> None:
        assert recist_response(baseline, followup) == expected

    @pytest.mark.parametrize(
        ("baseline", "followup", "expected"),
        [
            (20, 14, "PR"),
            (20, 14.01, "SD"),
            (20, 24, "PD"),
            (20, 23.99, "SD"),
            (3, 3.6, "PD"),
            (10, 7, "PR"),
            (20, 0, "CR"),
        ],
    )
    def test_volume_rule_boundaries(self, baseline: float, followup: float, expected: str) -> None:
        assert volume_response(baseline, followup) == expected

    def test_zero_baseline_is_refused(self) -> None:
        with pytest.raises(ValueError, match="greater than 0"):
            recist_response(0, 5)

    @given(st.floats(1, 300), st.floats(0, 600), st.floats(0, 600))
    def test_recist_is_monotone_in_the_follow_up_size(self, base: float, a: float, b: float) -> None:
        order = ["CR", "PR", "SD", "PD"]
        lo, hi = sorted((a, b))
        assert order.index(recist_response(base, lo)) <= order.index(recist_response(base, hi))


def test_ellipsoid_volume() -> None:
    assert ellipsoid_volume_cm3(2.0, 2.0, 2.0) == pytest.approx(4 / 3 * math.pi)  # a sphere of radius 1
    assert ellipsoid_volume_cm3(4.0, 3.0, 2.0) == pytest.approx(4 * math.pi)


def test_months_between_uses_365_25_over_12_days() -> None:
    assert months_between(date(2019, 1, 1), date(2019, 1, 1)) == 0
    assert months_between(date(2015, 1, 1), date(2019, 1, 1)) == pytest.approx(48.0)  # 1461 days
    assert months_between(date(2021, 3, 1), date(2021, 3, 31)) == pytest.approx(30 / 30.4375)


class TestRawExport:
    def test_every_raw_form_is_derived(self, raw_export: Path) -> None:
        c = load(raw_export, response_rule="volume")
        d = c.data.set_index("patient_id")
        assert set(c.derived) >= {
            "recurrence_interval_months",
            "os_months",
            "os_event",
            "lc_months",
            "lc_event",
            "t_stage",
            "n_stage",
            "m_stage",
            "lesion_volume_cm3",
            "response_3mo",
        }
        # A1: EBRT end 2015-01-10 -> recurrence 2015-09-10 = 243 days
        assert d.loc["A1", "recurrence_interval_months"] == pytest.approx(243 / 30.4375)
        # A1 died 2016-10-01, implant 2015-10-01: 366 days; progressed 2016-04-01: 183 days
        assert (d.loc["A1", "os_event"], d.loc["A1", "os_months"]) == (1, pytest.approx(366 / 30.4375))
        assert (d.loc["A1", "lc_event"], d.loc["A1", "lc_months"]) == (1, pytest.approx(183 / 30.4375))
        # A2 alive, last follow-up 2018-03-20, implant 2017-03-20: 365 days, censored for both
        assert (d.loc["A2", "os_event"], d.loc["A2", "lc_event"]) == (0, 0)
        assert d.loc["A2", "lc_months"] == d.loc["A2", "os_months"] == pytest.approx(365 / 30.4375)
        # A3 died without local progression: LC is censored at death (92 days)
        assert (d.loc["A3", "lc_event"], d.loc["A3", "lc_months"]) == (0, pytest.approx(92 / 30.4375))
        assert tuple(d.loc["A3", ["t_stage", "n_stage", "m_stage"]]) == ("T4a", "N0", "M1")
        # volume from diameters in mm: pi/6 * 4 * 3 * 2 cm = 4 pi
        assert d.loc["A1", "lesion_volume_cm3"] == pytest.approx(4 * math.pi)
        # volume rule: 12.566 -> 8.0 is -36 % (PR); 14.137 -> 20 is +41 % (PD); 31.4 -> 40 is +27 % (PD)
        assert list(d["response_3mo"].astype(str)) == ["PR", "PD", "PD"]
        assert d.loc["A1", "pathological_grade"] == "low"
        assert "death_date" not in c.data.columns  # dates never travel past the loader


def test_excel_export_with_real_date_cells(tmp_path: Path) -> None:
    from io import StringIO

    import pandas as pd

    from tests.conftest import RAW_EXPORT

    frame = pd.read_csv(StringIO(RAW_EXPORT), dtype=str, keep_default_na=False)
    for col in [c for c in frame.columns if c.endswith("date")]:
        frame[col] = pd.to_datetime(frame[col].replace("", None))  # real Excel date cells
    frame = frame.rename(columns={"Diameter 1 (mm)": "d1_mm", "Last follow-up date": "Last FU date"})
    path = tmp_path / "export.xlsx"
    frame.to_excel(path, index=False)
    d = load(path, response_rule="volume").data.set_index("patient_id")
    assert d.loc["A1", "os_months"] == pytest.approx(366 / 30.4375)
    assert d.loc["A2", "os_months"] == pytest.approx(365 / 30.4375)
    assert d.loc["A1", "lesion_volume_cm3"] == pytest.approx(4 * math.pi)
