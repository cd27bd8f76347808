"""``riskmodel train --by centre``: the printing of internal-external cross-validation by centre."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from riskmodel.cli.common import stop_if_terminated
from riskmodel.core.files import atomic_write_text

if TYPE_CHECKING:
    from riskmodel.config import ExperimentConfig
    from riskmodel.workflow.by_centre import CentreValidation

__all__ = ["print_by_centre", "train_by_centre"]


def train_by_centre(
    config: ExperimentConfig,
    by: str | None,
    data: Path | None,
    endpoints: list[str] | None,
    models: list[str] | None,
    tracking_uri: str | None,
    summary_json: Path | None,
) -> None:
    """Run :func:`riskmodel.workflow.by_centre.internal_external` and print its tables."""
    from riskmodel.workflow.by_centre import internal_external

    if by is not None and by.strip().lower() != "centre":
        raise typer.BadParameter(f"{by!r}: the only grouping is 'centre'", param_hint="--by")

    def progress(done: int, total: int, label: str) -> None:
        stop_if_terminated()
        typer.echo(f"[{done}/{total}] {label} held out", err=True)

    result = internal_external(
        config, data=data, endpoints=endpoints, models=models, tracking_uri=tracking_uri, progress=progress
    )
    print_by_centre(result)
    if summary_json:
        atomic_write_text(summary_json, json.dumps(result.summary(), indent=2, allow_nan=False))
        typer.echo(f"summary written to {summary_json}")


def print_by_centre(result: CentreValidation) -> None:
    """The notes, each (endpoint, family)'s per-centre table and its pooled measures."""
    from riskmodel.validation.iecv import pooled_table

    for note in result.notes:
        typer.echo(f"note: {note}")
    for run in result.runs:
        typer.echo(
            f"\n{run.endpoint.upper()} {run.family}: internal-external validation by {result.centre_column} "
            f"(O/E and slope at {run.horizon:g} months; SEs by bootstrap of each held-out centre)"
        )
        shown = run.table[["centre", "patients", "events", "c", "c_se", "slope", "slope_se", "oe", "log_oe_se"]]
        typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for row in pooled_table(run.pooled).itertuples():
            typer.echo(
                f"  pooled {row.name} ({row.method}): {row.estimate:.3f} (95% CI {row.ci_low:.3f} to "
                f"{row.ci_high:.3f}); prediction interval for a new centre {row.pi_low:.3f} to {row.pi_high:.3f}; "
                f"tau² {row.tau2:.3g}, I² {row.i2:.0f}%"
            )
        typer.echo(f"  run {run.run_id}")
    typer.echo(f"\nruns in {result.tracking_uri} (forest plots and tables under iecv/)")
