"""The contract: the issue's required columns, and the data dictionary in sync with the code."""

from __future__ import annotations

from riskmodel.cohort.contract import COLUMNS, column, contract_markdown
from tests.conftest import REPO

ISSUE_COLUMNS = [
    "patient_id",
    "age_years",
    "sex",
    "kps",
    "pathological_grade",
    "t_stage",
    "n_stage",
    "m_stage",
    "prior_ebrt_dose_gy",
    "prior_ebrt_fractions",
    "recurrence_interval_months",
    "lesion_volume_cm3",
    "seed_activity_mci",
    "seed_count",
    "prescription_dose_gy",
    "d90_gy",
    "d100_gy",
    "skin_d2cc_gy",
    "response_3mo",
    "post_implant_chemo",
    "os_months",
    "os_event",
    "lc_months",
    "lc_event",
]


def test_contract_has_every_column_once() -> None:
    names = [c.name for c in COLUMNS]
    assert sorted(names) == sorted(ISSUE_COLUMNS)
    assert len(set(names)) == len(names)


def test_rules_named_in_the_issue() -> None:
    assert column("d90_gy").hard_max == 400
    assert column("os_months").hard_min == 0
    assert column("lc_months").hard_min == 0
    assert column("kps").step == 10
    assert not column("prior_ebrt_fractions").required
    assert column("pathological_grade").allowed == ("low", "moderate", "high")
    assert column("response_3mo").allowed == ("CR", "PR", "SD", "PD")


def test_data_dictionary_is_generated_from_the_contract() -> None:
    text = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    assert contract_markdown() in text, "data/README.md is stale: regenerate the contract table"


def test_every_column_is_documented() -> None:
    for c in COLUMNS:
        assert c.description, c.name
        assert c.kind not in ("float", "int") or c.hard_min is not None, c.name
