"""``riskmodel report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import app, csv_option, user_errors


@app.command("report")
@user_errors
def report_command(
    out: Annotated[Path, typer.Option(help="Folder for report.html (self-contained) and the tables as CSV.")],
    data: Annotated[Path | None, typer.Option(help="Cohort file. Default: the bundled reconstructed cohort.")] = None,
    endpoints: Annotated[
        str | None, typer.Option(help="Comma-separated subset of the endpoints. Default: all of them.")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping YAML for the cohort file.")] = None,
    cutoff: Annotated[
        list[str] | None,
        typer.Option(
            help="Another cut-off for a two-group factor, e.g. --cutoff d90_gy=120 (repeatable). Factors: age, "
            "seed_activity_mci, lesion_volume_cm3, d90_gy, recurrence_interval_months."
        ),
    ] = None,
) -> None:
    """Write the classical survival report: KM curves, log-rank tables, Cox, PH checks, competing risks.

    The univariate tables follow the layout of the study's Tables 1 and 2; rows and models involving
    the 3-month response start at the 3-month landmark. For the bundled cohort the published figures
    are shown beside the results. The report holds counts and estimates only, no patient rows.
    """
    from riskmodel.cohort import ENDPOINTS, bundled_cohort_path, load
    from riskmodel.reporting import build_report

    cutoffs: dict[str, float] = {}
    for item in cutoff or []:
        name, _, value = item.partition("=")
        try:
            cutoffs[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected NAME=NUMBER, got {item!r}", param_hint="--cutoff") from None
    cohort = load(data or bundled_cohort_path(), mapping=mapping)
    chosen = csv_option(endpoints, "--endpoints") or ENDPOINTS
    path = build_report(cohort, out, endpoints=chosen, cutoffs=cutoffs or None)
    typer.echo(f"report written to {path}, with tables/*.csv and summary.json beside it")
