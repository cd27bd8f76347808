"""Riley et al.'s sample size against pmsampsize's own test values and the BMJ 2020 worked example.

References: pmsampsize's ``tests/testthat/test_surv.R`` (tests 3.1-3.9) expects the same n₁ in every
version and n₂ = the first number below in 1.1.1-1.1.3 and the second in 1.0.2-1.1.0 (which rounded
max R²cs and S before criterion 2). Riley et al., BMJ 2020;368:m441, print max R²cs 0.555, n = 5,143
for criterion 1, 1,049 for criterion 2 (pmsampsize 1.0.2's rounding) and an overall 2-year risk of
0.122 (0.113 to 0.130) at n = 5,143. Sample sizes are integers and must be equal; R² and risks are
held to the printed digits.
"""

from __future__ import annotations

import pytest

from riskmodel.stats.samplesize import anticipated_r2, max_r2_cs, riley_survival

# (name, R²cs, parameters, rate, time point, mean follow-up, n1, n2 exact, n2 bmj2020)
PMSAMPSIZE_TESTS = [
    ("3.1", 0.051, 25, 0.065, 2, 2.07, 4286, 866, 875),
    ("3.2", 0.065, 25, 0.065, 2, 2.07, 3335, 859, 868),
    ("3.3", 0.051, 50, 0.065, 2, 2.07, 8572, 1731, 1749),
    ("3.4", 0.051, 25, 0.1, 2, 2.07, 4286, 731, 725),
    ("3.5", 0.051, 25, 0.065, 4, 2.07, 4286, 866, 875),
    ("3.6", 0.051, 25, 0.065, 2, 4, 4286, 679, 684),
    ("3.7", 0.06, 40, 0.08, 3, 5, 5798, 969, 974),
    ("3.8", 0.03, 10, 0.09, 3, 3, 2950, 272, 273),
    ("3.9", 0.3, 80, 0.03, 1, 5, 1974, 2272, 2279),
]
BMJ = {"parameters": 30, "r2_cs": 0.051, "rate": 0.065, "mean_follow_up": 2.07, "horizon": 2.0}
# the same inputs with time in years, months, weeks and days
UNITS = {"years": 1.0, "months": 12.0, "weeks": 365.25 / 7, "days": 365.25}


@pytest.mark.parametrize(("name", "r2", "p", "rate", "t", "f", "n1", "n2", "n2_bmj2020"), PMSAMPSIZE_TESTS)
def test_criteria_match_pmsampsizes_own_tests(
    name: str, r2: float, p: int, rate: float, t: float, f: float, n1: int, n2: int, n2_bmj2020: int
) -> None:
    for rounding, optimism in (("exact", n2), ("bmj2020", n2_bmj2020)):
        s = riley_survival(parameters=p, r2_cs=r2, rate=rate, mean_follow_up=f, horizon=t, rounding=rounding)
        assert s.required_n == {"shrinkage": n1, "optimism": optimism}, (name, rounding)
        assert s.minimum_n == max(n1, optimism)  # pmsampsize's final n: criterion 3 adds no patients


def test_pmsampsize_test_3_9_is_set_by_criterion_2() -> None:
    inputs = {"parameters": 80, "r2_cs": 0.3, "rate": 0.03, "mean_follow_up": 5.0, "horizon": 1.0}
    assert riley_survival(**inputs).minimum_n == 2279
    assert riley_survival(**inputs, rounding="exact").minimum_n == 2272


def test_the_bmj_2020_worked_example() -> None:
    s = riley_survival(**BMJ)
    assert s.max_r2_cs == 0.55
    assert round(max_r2_cs(0.065, 2.07, rounding="exact"), 3) == 0.555
    assert s.required_n == {"shrinkage": 5143, "optimism": 1049}
    assert s.minimum_n == 5143
    assert riley_survival(**BMJ, rounding="exact").required_n == {"shrinkage": 5143, "optimism": 1039}
    risk, low, high = s.overall_risk or (0.0, 0.0, 0.0)
    assert (round(risk, 3), round(low, 3), round(high, 3)) == (0.122, 0.113, 0.130)
    assert s.overall_risk_precise


@pytest.mark.parametrize("rounding", ["exact", "bmj2020"])
def test_the_time_unit_does_not_change_the_answer(rounding: str) -> None:
    results = []
    for per_year in UNITS.values():
        inputs = {**BMJ, "rate": 0.065 / per_year, "mean_follow_up": 2.07 * per_year, "horizon": 2.0 * per_year}
        results.append(riley_survival(**inputs, rounding=rounding))  # type: ignore[arg-type]
    years = results[0]
    for s in results[1:]:
        assert s.required_n == years.required_n
        assert s.max_r2_cs == pytest.approx(years.max_r2_cs, rel=1e-12)
        assert s.overall_risk == pytest.approx(years.overall_risk, rel=1e-12)
        assert s.expected_shrinkage == pytest.approx(years.expected_shrinkage, rel=1e-12)


def test_an_exact_events_per_person_is_not_pushed_up_by_float_noise() -> None:
    """13 events in 26 patients: λf = 0.5 exactly, however the rate and follow-up were rounded."""
    exact = max_r2_cs(0.5, 1.0)
    for total_time in (71.26, 223.15, 491.75):  # each makes λf·10,000 = 5000.000000000001 in floating point
        assert max_r2_cs(13 / total_time, total_time / 26) == pytest.approx(exact, rel=1e-12)


def test_criterion_3_reports_an_imprecise_overall_risk_without_raising_n() -> None:
    s = riley_survival(parameters=2, r2_cs=0.2, rate=0.5, mean_follow_up=0.5, horizon=2.0)
    risk, low, high = s.overall_risk or (0.0, 0.0, 0.0)
    assert max(high - risk, risk - low) > 0.05
    assert s.overall_risk_precise is False
    assert s.minimum_n == s.required_n["shrinkage"]
    assert f"95% CI {low:.3f}-{high:.3f} at that n, a margin above 0.05" in s.summary()


def test_anticipated_r2_is_capped_by_the_same_maximum() -> None:
    cap = max_r2_cs(0.5 / 12, 12.0)
    r2, how = anticipated_r2(1e6, 100, 2, 0.5 / 12, 12.0)  # an absurd fit: capped just under the maximum
    assert r2 == pytest.approx(0.99 * cap, rel=1e-12)
    assert "van Houwelingen" in how
    assert anticipated_r2(0.0, 100, 2, 0.5, 1.0)[0] == pytest.approx(0.15 * max_r2_cs(0.5, 1.0), rel=1e-12)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"anticipated R²cs must be in \(0, 0.550\), got 0.6"):
        riley_survival(**{**BMJ, "r2_cs": 0.6})
    with pytest.raises(ValueError, match=r"rate and mean follow-up must be positive, got 0 and 2\.07"):
        max_r2_cs(0, 2.07)
    with pytest.raises(ValueError, match="rounding must be 'bmj2020' or 'exact', got 'r'"):
        riley_survival(**BMJ, rounding="r")  # type: ignore[arg-type]
