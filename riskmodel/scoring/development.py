"""What a model says of its own evidence: the size of its development cohort and Riley et al.'s
verdict on it (:mod:`riskmodel.stats.samplesize`), kept in ``model.json`` (``development``) and read
by every page that shows the model's predictions, so "exploratory" follows the model's data, never
the study riskmodel started from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from riskmodel.stats.samplesize import SampleSize

__all__ = ["development_note", "development_record"]


def development_record(size: SampleSize) -> dict[str, Any]:
    """``model.json``'s ``development``: counts and the verdict, nothing of any one patient."""
    return {
        "n_patients": int(size.n),
        "n_events": int(size.events),
        "minimum_n": int(size.minimum_n),
        "exploratory": not size.adequate,
    }


def development_note(development: Mapping[str, Any] | None) -> str:
    """One sentence for a page or an answer on how far a model's predictions can be trusted.

    >>> development_note({"n_patients": 36, "n_events": 25, "minimum_n": 117, "exploratory": True})[:46]
    'Exploratory: developed on 36 patients (25 even'
    """
    d = development
    if d is None:
        return (
            "Exploratory: this model file does not record the size of its development cohort; treat its "
            "predictions as uncertain until it is validated on patients like yours."
        )
    size = f"{d['n_patients']:,} patients ({d['n_events']:,} events)"
    if d["exploratory"]:
        return (
            f"Exploratory: developed on {size}, below Riley et al.'s minimum sample size for this model "
            f"({d['minimum_n']:,}); its predictions are uncertain."
        )
    return (
        f"Developed on {size}, which meets Riley et al.'s minimum sample size for this model "
        f"({d['minimum_n']:,}); check its validation on patients like yours before using it."
    )
