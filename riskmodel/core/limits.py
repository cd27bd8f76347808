"""Safety limits on settings that set how much work a run does.

A typo such as ``n_estimators: 1000000000000`` would otherwise pass validation and hang a train
for days. Each limit sits far above what a clinical cohort needs; a user who really wants more
sets ``RISKMODEL_NO_LIMITS=1`` in the environment, and every refusal says so. Bounds that keep
the software correct (a seed must fit in 32 bits) are not limits and cannot be lifted.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import AfterValidator

__all__ = ["LIFT_LIMITS", "SEED_MAX", "check_limit", "limited", "limits_lifted"]

LIFT_LIMITS = "RISKMODEL_NO_LIMITS"
SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's random_state


def limits_lifted() -> bool:
    """Whether the user lifted the safety limits (``RISKMODEL_NO_LIMITS=1``)."""
    return os.environ.get(LIFT_LIMITS, "").strip().lower() in ("1", "true", "yes")


def check_limit(value: float, cap: float) -> str | None:
    """The rule ``value`` breaks when it is above ``cap`` (and the limits are on), else None."""
    if value > cap and not limits_lifted():
        return f"must be at most {cap:,} (a safety limit; set {LIFT_LIMITS}=1 to lift it)"
    return None


def limited(cap: float) -> Any:
    """A pydantic validator refusing a number above ``cap`` unless the limits are lifted.

    Use as ``Annotated[int, limited(5000)]`` (None passes).
    """

    def check(value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            rule = check_limit(value, cap)
            if rule:
                raise ValueError(rule)
        return value

    return AfterValidator(check)
