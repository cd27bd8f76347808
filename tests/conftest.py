"""Shared fixtures: the bundled cohort, file writers, and a raw clinician-style export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from riskmodel.cohort import Cohort, bundled_cohort_path, load

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bundled() -> Cohort:
    return load(bundled_cohort_path())


@pytest.fixture(scope="session")
def targets() -> dict:
    return json.loads((REPO / "data" / "published_targets.json").read_text())


@pytest.fixture
def canonical_frame(bundled: Cohort) -> pd.DataFrame:
    """The bundled cohort as raw CSV text cells, ready to be broken by a test."""
    return pd.read_csv(bundled_cohort_path(), dtype=str, keep_default_na=False)


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    def _write(frame: pd.DataFrame | str, name: str = "cohort.csv") -> Path:
        path = tmp_path / name
        if isinstance(frame, str):
            path.write_text(frame, encoding="utf-8")
        else:
            frame.to_csv(path, index=False)
        return path

    return _write


RAW_EXPORT = """\
Patient ID,Age,Gender,KPS,Grade,TNM,EBRT dose (Gy),EBRT fractions,EBRT end date,Recurrence date,Implant date,Diameter 1 (mm),Diameter 2 (mm),Diameter 3 (mm),Volume 3mo (cm3),D90 (Gy),Death date,Last follow-up date,Local progression date
A1,63,male,80,poorly differentiated,cT3 N2 M0,60,30,2015-01-10,2015-09-10,2015-10-01,40,30,20,8.0,112.5,2016-10-01,,2016-04-01
A2,58,F,90,moderate,T2N1M0,50.4,28,2016-03-01,2017-03-01,2017-03-20,30,30,30,20.0,95,,2018-03-20,
A3,70,M,70,high,T4aN0M1,66,33,2014-06-30,2014-09-15,2014-10-01,50,40,30,40.0,80,2015-01-01,,
"""


@pytest.fixture
def raw_export(write_csv: Callable[..., Path]) -> Path:
    return write_csv(RAW_EXPORT, "export.csv")
