"""Competing risks in the data layer: declaring a competing endpoint, the rule for a death after
censoring, the bundled study's LC with death, the target from a landmark, and the refusals.

Every expected state and time is worked out by hand in the test (or, for the bundled cohort, from
the raw CSV with pandas, or with R's cmprsk), never taken from riskmodel's own output.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import Cohort, bundled_cohort_path, load, local_failure_competing, survival_data
from riskmodel.cohort.builtin import builtin_declaration
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.declared import from_frame_declared, load_declared
from riskmodel.config import ExperimentConfig, competing_endpoints, default_experiment_path, load_experiment
from riskmodel.errors import UserInputError
from riskmodel.privacy import PhiGuard, PrivacyError
from riskmodel.stats import aalen_johansen, is_competing, step_values

# Local failure and death in separate columns, as a clinical export holds them. By hand, per patient:
#   P1 local failure at 4, died at 10           → event at 4 (either rule)
#   P2 censored for LC at 6, died at 6          → competing at 6 (either rule)
#   P3 censored for LC at 5, died at 8          → competing at 8, or censored at 5
#   P4 censored for LC at 9, alive at 12        → censored at 9
#   P5 censored for LC at 3, died at 7.5        → competing at 7.5, or censored at 3
#   P6 local failure at 2, died at 2 (same day) → event at 2
#   P7 censored for LC at 1.5, died at 1.5      → competing at 1.5
#   P8 censored for LC at 2.5, alive at 2.5     → censored at 2.5
EXPORT = {
    "ID": [f"P{i}" for i in range(1, 9)],
    "Age": ["61", "70", "55", "48", "66", "59", "73", "62"],
    "LC (months)": ["4", "6", "5", "9", "3", "2", "1.5", "2.5"],
    "Local failure": ["1", "0", "0", "0", "0", "1", "0", "0"],
    "OS (months)": ["10", "6", "8", "12", "7.5", "2", "1.5", "2.5"],
    "Died": ["1", "1", "1", "0", "1", "1", "1", "0"],
}
BY_RULE = {
    "competing": ([1, 2, 2, 0, 2, 1, 2, 0], [4.0, 6.0, 8.0, 9.0, 7.5, 2.0, 1.5, 2.5]),
    "censored": ([1, 2, 0, 0, 0, 1, 2, 0], [4.0, 6.0, 5.0, 9.0, 3.0, 2.0, 1.5, 2.5]),
}


def cohort_section(**lc: Any) -> dict[str, Any]:
    return {
        "id": "ID",
        "covariates": [{"name": "age", "column": "Age", "kind": "numeric", "unit": "years"}],
        "endpoints": [
            {"name": "lc", "time": "LC (months)", "event": "Local failure", "competing_endpoint": "os", **lc},
            {"name": "os", "time": "OS (months)", "event": "Died"},
        ],
    }


def declared(frame: dict[str, list[str]] | None = None, **lc: Any) -> Cohort:
    declaration = CohortDeclaration.model_validate(cohort_section(**lc), strict=False)
    return from_frame_declared(pd.DataFrame(frame or EXPORT), declaration, source="export.csv", first_row=2)


# --------------------------------------------------------------------------- the two rules
@pytest.mark.parametrize("rule", ["competing", "censored"])
def test_a_death_after_lc_censoring_follows_the_declared_rule_exactly(rule: str) -> None:
    cohort = declared(competing_after_censoring=rule)
    d = cohort.data
    states, times = BY_RULE[rule]
    assert d["lc_event_type"].tolist() == states
    assert d["lc_cr_months"].tolist() == times
    # the cause-specific view is untouched: own time, death censored
    assert d["lc_months"].tolist() == [4.0, 6.0, 5.0, 9.0, 3.0, 2.0, 1.5, 2.5]
    assert d["lc_event"].tolist() == [1, 0, 0, 0, 0, 1, 0, 0]
    assert cohort.competing_rule_counts == {"lc": 2}  # P3 and P5 died after their last LC assessment
    assert str(cohort.competing_rules[0]).startswith("LC: 2 patients had the OS event after their last LC assessment")
    assert f"(competing_after_censoring: {rule})" in str(cohort.competing_rules[0])


def test_the_rule_defaults_to_competing_and_is_written_on_the_bundled_declaration() -> None:
    assert declared().data["lc_event_type"].tolist() == BY_RULE["competing"][0]
    lc = builtin_declaration("brachytherapy").endpoint("lc")
    assert (lc.competing_endpoint, lc.competing_after_censoring) == ("os", "competing")
    assert builtin_declaration("brachytherapy").endpoint("os").competing_endpoint is None


@pytest.mark.parametrize("rule", ["competing", "censored"])
def test_local_failure_competing_honours_the_rule_on_contract_columns(rule: str) -> None:
    frame = pd.DataFrame(
        {
            "lc_months": [float(v) for v in EXPORT["LC (months)"]],
            "lc_event": [int(v) for v in EXPORT["Local failure"]],
            "os_months": [float(v) for v in EXPORT["OS (months)"]],
            "os_event": [int(v) for v in EXPORT["Died"]],
        }
    )
    out = local_failure_competing(frame, after_censoring=rule)  # type: ignore[arg-type]
    states, times = BY_RULE[rule]
    assert out["event_type"].tolist() == states
    assert out["time"].tolist() == times


def test_competing_codes_of_its_own_status_column_keep_their_own_time() -> None:
    section = cohort_section()
    section["endpoints"] = [
        {"name": "lc", "time": "LC (months)", "event": "Local failure", "competing_codes": [2]},
    ]
    frame = {**EXPORT, "Local failure": ["1", "2", "0", "0", "2", "1", "0", "0"]}
    cohort = from_frame_declared(pd.DataFrame(frame), CohortDeclaration.model_validate(section, strict=False))
    assert cohort.data["lc_event_type"].tolist() == [1, 2, 0, 0, 2, 1, 0, 0]
    assert cohort.data["lc_cr_months"].tolist() == [4.0, 6.0, 5.0, 9.0, 3.0, 2.0, 1.5, 2.5]
    assert cohort.competing_rules == ()


def test_an_lc_only_experiment_reads_the_os_columns_its_rule_needs() -> None:
    declaration = CohortDeclaration.model_validate(cohort_section(), strict=False)
    cohort = from_frame_declared(pd.DataFrame(EXPORT), declaration, endpoints=["lc"])
    assert cohort.data["lc_cr_months"].tolist() == BY_RULE["competing"][1]
    assert "os_months" in cohort.outcomes


# --------------------------------------------------------------------------- the bundled cohort
def died_after_lc_censoring(raw: pd.DataFrame) -> int:
    return int(((raw["os_event"] == 1) & (raw["lc_event"] == 0) & (raw["os_months"] > raw["lc_months"])).sum())


def test_the_bundled_count_matches_the_raw_csv(bundled: Cohort) -> None:
    raw = pd.read_csv(bundled_cohort_path())
    assert bundled.competing_rule_counts == {"lc": died_after_lc_censoring(raw)}
    # the bundled study's deaths without local failure end LC follow-up at death: none moved today
    assert bundled.competing_rule_counts == {"lc": 0}


def shortened(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The bundled cohort with the last LC assessment of three who died without local failure moved
    two months before death (a follow-up schedule that stops before death)."""
    raw = pd.read_csv(bundled_cohort_path())
    rows = raw.index[(raw["os_event"] == 1) & (raw["lc_event"] == 0) & (raw["os_months"] > 3)][:3]
    raw.loc[rows, "lc_months"] = (raw.loc[rows, "os_months"] - 2).round(2)
    path = tmp_path / "shortened.csv"
    raw.to_csv(path, index=False)
    return path, raw


def test_the_rule_count_is_logged_and_printed_by_validate_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, raw = shortened(tmp_path)
    assert died_after_lc_censoring(raw) == 3
    with caplog.at_level(logging.INFO, logger="riskmodel.cohort"):
        cohort = load(path)
    assert cohort.competing_rule_counts == {"lc": 3}
    line = "LC: 3 patients had the OS event after their last LC assessment"
    assert any(line in r.getMessage() for r in caplog.records)
    # the states and times of the competing view, from the raw columns with pandas
    progressed, died = raw["lc_event"] == 1, (raw["os_event"] == 1) & (raw["lc_event"] == 0)
    expected_time = np.where(progressed, raw["lc_months"], np.where(died, raw["os_months"], raw["lc_months"]))
    np.testing.assert_array_equal(cohort.data["lc_cr_months"].to_numpy(), expected_time)
    np.testing.assert_array_equal(
        cohort.data["lc_event_type"].to_numpy(), np.where(progressed, 1, np.where(died, 2, 0))
    )
    result = CliRunner().invoke(app, ["validate-data", str(path)])
    assert result.exit_code == 0, result.output
    assert line in result.output
    assert "(competing_after_censoring: competing)" in result.output


def test_the_bundled_file_through_its_declaration_gives_the_same_competing_view(tmp_path: Path) -> None:
    path, _ = shortened(tmp_path)
    contract = load(path)
    declared_cohort = load_declared(path, builtin_declaration("brachytherapy"))
    for column in ("lc_event_type", "lc_cr_months"):
        np.testing.assert_array_equal(declared_cohort.data[column].to_numpy(), contract.data[column].to_numpy())
    assert declared_cohort.competing_rule_counts == contract.competing_rule_counts == {"lc": 3}


R_CUMINC = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressMessages(library(cmprsk))
d <- read.csv(args[1])
# the rule, written here from the raw columns: LC first; else a death (at death, or censored at
# the last LC assessment under the conservative rule); else censored at the last LC assessment
for (rule in c("competing", "censored")) {
  later <- d$os_event == 1 & d$lc_event == 0 & d$os_months > d$lc_months
  status <- ifelse(d$lc_event == 1, 1, ifelse(d$os_event == 1 & (rule == "competing" | !later), 2, 0))
  time <- ifelse(status == 2 & rule == "competing", d$os_months, d$lc_months)
  keep <- time > 3
  fit <- cuminc(time[keep] - 3, status[keep], cencode = 0)
  at <- c(0.5, 1.5, 2.5, 5, 9)
  cat(rule, sprintf("%.15g", timepoints(fit, at)$est["1 1", ]), sep = "\t"); cat("\n")
  cat(paste0(rule, "_n"), sum(keep), sum(status[keep] == 2), sep = "\t"); cat("\n")
}
"""


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed (.ci/run installs r-cran-cmprsk)")
def test_the_landmarked_competing_target_gives_cmprsk_cuminc(tmp_path: Path) -> None:
    """The target of survival_data(competing=True) from a 3-month landmark, through Aalen-Johansen,
    equals cmprsk::cuminc on the rule coded in R from the raw CSV (tolerance 1e-10)."""
    path, _ = shortened(tmp_path)
    (tmp_path / "cuminc.R").write_text(R_CUMINC, encoding="utf-8")
    run = subprocess.run(
        ["Rscript", str(tmp_path / "cuminc.R"), str(path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    r = {key: np.array(values, float) for key, *values in (line.split("\t") for line in run.stdout.splitlines())}
    for rule in ("competing", "censored"):
        cohort = load_declared(path, builtin_declaration("brachytherapy"))
        if rule == "censored":
            section = builtin_declaration("brachytherapy").model_dump(mode="json")
            section["endpoints"][0]["competing_after_censoring"] = "censored"
            cohort = load_declared(path, CohortDeclaration.model_validate(section))
        sd = survival_data(cohort, "lc", landmark_months=3, competing=True)
        t, cif = aalen_johansen(sd.y["time"], sd.y["cause"], cause=1)
        ours = step_values(t, cif, np.array([0.5, 1.5, 2.5, 5, 9]))
        np.testing.assert_allclose(ours, r[rule], rtol=0, atol=1e-10)
        assert [len(sd.y), int((sd.y["cause"] == 2).sum())] == r[f"{rule}_n"].tolist()


# --------------------------------------------------------------------------- the target from a landmark
def test_the_landmark_removes_patients_by_cause_in_the_competing_view() -> None:
    cohort = declared()
    sd = survival_data(cohort, "lc", landmark_months=3, competing=True)
    assert sd.competing
    assert is_competing(sd.y)
    # dropped at or before 3: P6 (event at 2), P7 (competing at 1.5), P8 (censored at 2.5);
    # P5 (censored for LC at 3, died at 7.5) is at risk until death under the competing rule
    assert (sd.excluded_events, sd.excluded_competing, sd.excluded_censored) == (1, 1, 1)
    assert sd.y["cause"].tolist() == [1, 2, 2, 0, 2]
    assert sd.y["time"].tolist() == [1.0, 3.0, 5.0, 6.0, 4.5]
    assert sd.y["event"].tolist() == [True, False, False, False, False]
    assert list(sd.X.index) == [2, 3, 4, 5, 6]  # spreadsheet rows of P1-P5
    assert "dropped 3 patients (1 with an event, 1 with a competing event, 1 censored before it)" in sd.describe()
    assert "5 patients, 1 events, 3 competing events" in sd.describe()


def test_the_cause_specific_view_is_unchanged_without_competing() -> None:
    sd = survival_data(declared(), "lc", landmark_months=3)
    assert not sd.competing
    assert not is_competing(sd.y)
    # P5's LC time is 3, so the cause-specific view drops it with P6, P7 and P8
    assert (sd.excluded_events, sd.excluded_competing, sd.excluded_censored) == (1, 0, 3)
    assert sd.y["time"].tolist() == [1.0, 3.0, 2.0, 6.0]


def test_an_endpoint_without_competing_events_gives_its_plain_target() -> None:
    sd = survival_data(declared(), "os", competing=True)
    assert not sd.competing
    assert not is_competing(sd.y)
    assert sd.y["time"].tolist() == [10.0, 6.0, 8.0, 12.0, 7.5, 2.0, 1.5, 2.5]


def test_the_derived_outcome_columns_are_never_model_features(bundled: Cohort) -> None:
    outcomes = ("lc_event_type", "lc_cr_months", "os_event_type")
    for cohort in (declared(), bundled):
        assert {"lc_event_type", "lc_cr_months"} <= set(cohort.outcomes)
        for competing in (False, True):
            sd = survival_data(cohort, "lc", competing=competing)
            assert not set(sd.X.columns) & {*cohort.outcomes, *outcomes}
    # a patient-level table of them is refused by the PHI guard
    with pytest.raises(PrivacyError, match="patient-level cohort columns"):
        PhiGuard.for_cohort(bundled).check_text("table.csv", "lc_event_type,lc_cr_months\n2,3.1\n")


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("lc", "os", "words"),
    [
        ({"competing_endpoint": "lc"}, {}, "cohort: endpoints[0].competing_endpoint: 'lc' is the endpoint itself"),
        ({"competing_endpoint": "death"}, {}, "cohort: endpoints[0].competing_endpoint: 'death' is not a declared"),
        ({}, {"competing_endpoint": "lc"}, "cohort: endpoints[0].competing_endpoint: the competing endpoints go round"),
    ],
)
def test_a_bad_competing_endpoint_is_one_line_naming_its_key(
    tmp_path: Path, lc: dict[str, Any], os: dict[str, Any], words: str
) -> None:
    section = cohort_section(**lc)
    section["endpoints"][1].update(os)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "cr", "data": {"path": "export.csv"}, "cohort": section}))
    pd.DataFrame(EXPORT).to_csv(tmp_path / "export.csv", index=False)
    with pytest.raises(UserInputError) as info:
        load_experiment(path)
    [line] = str(info.value).splitlines()
    assert words in line, line
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_a_rule_without_a_competing_endpoint_is_refused() -> None:
    section = cohort_section()
    section["endpoints"][1]["competing_after_censoring"] = "censored"
    with pytest.raises(ValidationError, match="competing_after_censoring applies to a competing_endpoint"):
        CohortDeclaration.model_validate(section, strict=False)


def test_local_follow_up_after_death_is_exit_2_naming_file_row_columns_values_and_rule(tmp_path: Path) -> None:
    frame = pd.DataFrame({**EXPORT, "LC (months)": ["4", "6", "10", "9", "3", "2", "1.5", "2.5"]})  # P3: LC 10, died 8
    frame.to_csv(tmp_path / "export.csv", index=False)
    path = tmp_path / "exp.yaml"
    section = cohort_section()
    path.write_text(yaml.safe_dump({"name": "cr", "data": {"path": "export.csv"}, "cohort": section}))
    result = CliRunner().invoke(app, ["config", "validate", str(path), "--data", str(tmp_path / "export.csv")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = [x for x in result.output.splitlines() if "competing event" in x]
    assert "export.csv, row 4, column LC (months), value '10'" in line  # row 4: P3, the header is row 1
    assert "OS (months) = 8, Died = 1" in line
    assert "lc follow-up cannot go on after its competing event (cohort.endpoints[0].competing_endpoint: os)" in line


# --------------------------------------------------------------------------- the experiment and init
def test_the_experiment_says_which_endpoints_are_competing() -> None:
    default = load_experiment(default_experiment_path())
    assert default.competing_risks is True
    assert default.competing_endpoints == ["lc"]
    assert load_experiment(default_experiment_path(), competing_risks=False).competing_endpoints == []
    cr = ExperimentConfig.model_validate({"name": "cr", "cohort": cohort_section()}, strict=False)
    assert cr.competing_endpoints == ["lc"]
    assert competing_endpoints(cr.cohort) == ["lc"]
    assert competing_endpoints(declared()) == ["lc"]
    assert "cause-specific view" in ExperimentConfig.model_fields["competing_risks"].description  # type: ignore[operator]


def test_init_declares_a_competing_endpoint_in_its_own_columns(tmp_path: Path) -> None:
    pd.DataFrame(EXPORT).to_csv(tmp_path / "export.csv", index=False)
    out = tmp_path / "exp.yaml"
    args = ["init", str(tmp_path / "export.csv"), "--time", "LC (months)", "--event", "Local failure"]
    args += ["--endpoint", "lc", "--competing-endpoint", "os", "--competing-time", "OS (months)"]
    result = CliRunner().invoke(app, [*args, "--competing-event", "Died", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(out.read_text())["cohort"]
    assert [c["name"] for c in written["covariates"]] == ["age"]  # the OS columns are outcomes, not covariates
    lc, os_ = written["endpoints"]
    assert (lc["competing_endpoint"], lc["competing_after_censoring"]) == ("os", "competing")
    assert (os_["name"], os_["time"], os_["event"], os_["time_unit"]) == ("os", "OS (months)", "Died", "months")
    config = load_experiment(out)
    assert config.competing_endpoints == ["lc"]
    missing = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "other.yaml")])
    assert missing.exit_code == 2
    assert "--competing-endpoint, --competing-time and --competing-event go together" in missing.output
