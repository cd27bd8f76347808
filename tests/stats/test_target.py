"""The competing-risks target: its cause-specific view and the checks on its causes."""

from __future__ import annotations

import numpy as np
import pytest

from riskmodel.errors import UserInputError
from riskmodel.stats import check_competing_target, check_survival_target, competing_array, is_competing, survival_array


def test_event_field_is_the_cause_of_interest_only() -> None:
    y = competing_array([0, 1, 2, 1], [1.0, 2.0, 3.0, 4.0])
    assert y["event"].tolist() == [False, True, False, True]
    assert is_competing(y)
    assert not is_competing(survival_array([1], [1.0]))


def test_a_survival_family_refuses_a_competing_target_rather_than_censor_it_silently() -> None:
    with pytest.raises(UserInputError, match="event \\(bool\\) field and a time field"):
        check_survival_target(competing_array([1, 2], [1.0, 2.0]))


@pytest.mark.parametrize(
    ("cause", "time", "rule"),
    [
        ([1, 3], [1.0, 2.0], "cause must be 0"),
        ([2, 0], [1.0, 2.0], "no event of interest"),
        ([1, 2], [1.0, -1.0], "non-negative"),
    ],
)
def test_check_competing_target_refuses(cause: list[int], time: list[float], rule: str) -> None:
    y = np.zeros(2, dtype=[("event", "?"), ("time", "<f8"), ("cause", "i1")])
    y["cause"], y["time"] = cause, time
    with pytest.raises(UserInputError, match=rule):
        check_competing_target(y)


def test_competing_array_refuses_unknown_causes() -> None:
    with pytest.raises(ValueError, match="cause must be"):
        competing_array([1, 5], [1.0, 2.0])
