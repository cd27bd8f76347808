"""What a competing-risk model says of a patient: both CIFs and the event-free probability, with
words saying which event is which.

For a competing model (the endpoint's event of interest, say local failure, and its competing
event, say death without local failure), each horizon h gives three probabilities that sum to 1:

* ``cif_<h>``: the cumulative incidence of the event of interest by h (it may not happen at all:
  the competing event may come first);
* ``cif_competing_<h>``: the cumulative incidence of the competing event by h, before the event;
* ``event_free_<h>``: neither by h (1 − both).

The risk score is the CIF of the event at the model's risk horizon (``risk_horizon_`` of the
estimator, months after time zero), and the risk group compares it with the training cut-offs
(tertiles of the training patients' risk scores unless given): the same rule as a survival
model's, on the CIF. Names of the events come from the endpoint declaration (the bundled study:
local failure, with death as the competing event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.contract import COMPETING_ENDPOINTS
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.models.cif import cif_matrix, risk_horizon

__all__ = ["CURVE_KEYS", "CompetingLabels", "competing_curves", "competing_frame", "event_labels"]

# the per-horizon dictionaries of a competing model's score record, and their CSV column prefixes
CURVE_KEYS = ("cif", "cif_competing", "event_free")

# the bundled study's words for its endpoints' events
_EVENT_WORDS = {"lc": "local failure", "os": "death"}


@dataclass(frozen=True)
class CompetingLabels:
    """What each probability of a competing model is the probability of, in words."""

    event: str  # e.g. "local failure"
    competing: str  # e.g. "death without local failure"
    event_free: str  # e.g. "alive without local failure"

    def as_dict(self) -> dict[str, str]:
        """Keyed as the score record's dictionaries (``cif``, ``cif_competing``, ``event_free``)."""
        return {"cif": self.event, "cif_competing": self.competing, "event_free": self.event_free}


def event_labels(endpoint: str, declaration: CohortDeclaration | None) -> CompetingLabels:
    """The words for a competing model's event, competing event and neither.

    >>> event_labels("lc", None).as_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'cif': 'local failure', 'cif_competing': 'death without local failure',
     'event_free': 'alive without local failure'}
    """
    if declaration is None:
        event = _EVENT_WORDS.get(endpoint, f"{endpoint.upper()} event")
        other = COMPETING_ENDPOINTS.get(endpoint)  # type: ignore[call-overload]
        first = _EVENT_WORDS.get(other[0], "competing event") if other else "competing event"
        alive = "alive" if first == "death" else "free of the competing event"
        return CompetingLabels(event, f"{first} without {event}", f"{alive} without {event}")
    ep = declaration.endpoint(endpoint) if endpoint in declaration.endpoint_names else None
    event = (ep.label or endpoint.upper()) + " event" if ep is not None else f"{endpoint.upper()} event"
    if ep is not None and ep.competing_endpoint is not None:
        other = declaration.endpoint(ep.competing_endpoint)
        competing = f"{other.label or other.name.upper()} event without {event}"
    else:
        codes = ", ".join(str(c) for c in ep.competing_codes) if ep is not None else ""
        competing = f"competing event{f' (codes {codes})' if codes else ''} without {event}"
    return CompetingLabels(event, competing, f"free of both ({event} and the competing event)")


def _probabilities(estimator: Any, Z: Any, times: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CIF of the event, CIF of the competing event, event-free): each patients × times."""
    cif = cif_matrix(estimator, Z, times)
    return cif[0], cif[1], 1.0 - cif[0] - cif[1]


def competing_frame(estimator: Any, Z: Any, times: list[float]) -> pd.DataFrame:
    """``risk_score`` (CIF of the event at the risk horizon), then ``cif_<h>``, ``cif_competing_<h>``
    and ``event_free_<h>`` at each horizon: one row per patient (``predict_frame`` of a competing model)."""
    event, competing, free = _probabilities(estimator, Z, times)
    h = risk_horizon(estimator)
    out = pd.DataFrame({"risk_score": cif_matrix(estimator, Z, [h])[0][:, 0]})
    for j, t in enumerate(times):
        out[f"cif_{t:g}"] = event[:, j]
    for j, t in enumerate(times):
        out[f"cif_competing_{t:g}"] = competing[:, j]
    for j, t in enumerate(times):
        out[f"event_free_{t:g}"] = free[:, j]
    return out


def competing_curves(estimator: Any, Z: Any, times: list[float], labels: CompetingLabels) -> list[dict[str, Any]]:
    """Per patient, the score record's competing fields: ``cif``, ``cif_competing`` and
    ``event_free`` (keyed by horizon), the ``risk_horizon_months`` and the ``events`` in words."""
    event, competing, free = _probabilities(estimator, Z, times)
    keys = [f"{t:g}" for t in times]
    out = []
    for i in range(event.shape[0]):
        out.append(
            {
                "risk_horizon_months": risk_horizon(estimator),
                "events": labels.as_dict(),
                **{
                    name: {k: float(v) for k, v in zip(keys, values[i], strict=True)}
                    for name, values in zip(CURVE_KEYS, (event, competing, free), strict=True)
                },
            }
        )
    return out
