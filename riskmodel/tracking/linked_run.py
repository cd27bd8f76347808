"""A run that follows from another run: ``riskmodel evaluate``'s and ``update``'s MLflow runs.

Each is one parent run with riskmodel.* tags (the other run's ID among them), its metrics and
text artifacts, and an MLflow note whose link opens the other run in the UI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from riskmodel.tracking.store import Tracker

__all__ = ["link_note", "linked_run"]


@contextmanager
def linked_run(
    tracker: Tracker, name: str, tags: Mapping[str, str], metrics: Mapping[str, float], artifacts: Mapping[str, str]
) -> Iterator[str]:
    """One parent run of ``tracker`` named ``name`` and tagged with ``tags`` (the other run's ID
    among them), its ``metrics`` and text ``artifacts`` (path → text) logged; yields the run ID."""
    with tracker.parent(name, tags) as run_id:
        tracker.log(metrics=metrics)
        for path, text in artifacts.items():
            tracker.log_text(text, path)
        yield run_id


def link_note(tracker: Tracker, words: str, other_run: str) -> None:
    """The active run's note: ``words``, then ``other_run`` as a link to its page in this store's
    UI (its experiment's; a run of another store keeps its ID), through the PHI guard."""
    try:
        where = f"#/experiments/{tracker.mlflow.get_run(other_run).info.experiment_id}/runs/"
    except Exception:  # the other run lives in another store: its ID still says which
        where = "#/runs/"
    note = f"{words} [{other_run}]({where}{other_run})."
    tracker.guard.check_text("the run's note", note)
    tracker.mlflow.set_tag("mlflow.note.content", note)
