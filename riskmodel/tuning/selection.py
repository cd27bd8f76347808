"""Choosing the trial to refit, with a guard against the winner's curse."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["select_trial"]


def select_trial(study: Any) -> tuple[Any, str | None]:
    """The trial to refit: the best one, unless it beats the experiment's own parameters (trial 0)
    by less than one standard error of the paired fold differences; then trial 0 (a note says so).

    With few patients the best of many noisy trials is partly luck (the winner's curse); this
    keeps the defaults unless the evidence for the winner is at least that strong.
    """
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial
    base = next((t for t in complete if t.user_attrs.get("experiment_defaults")), None)
    if base is None or best.number == base.number:
        return best, None
    a = np.array(best.user_attrs.get("fold_scores", []), dtype=float)
    b = np.array(base.user_attrs.get("fold_scores", []), dtype=float)
    if len(a) != len(b) or len(a) < 2:
        return best, None
    diff = a - b if study.direction.name == "MAXIMIZE" else b - a
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2:
        return best, None
    se = float(diff.std(ddof=1) / math.sqrt(len(diff)))
    if diff.mean() < se:
        return base, (
            f"trial {best.number} beat the experiment's parameters by {diff.mean():.4f}, less than one standard error "
            f"({se:.4f}) over the folds: the experiment's parameters (trial {base.number}) are kept"
        )
    return best, None
