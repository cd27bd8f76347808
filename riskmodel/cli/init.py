"""``riskmodel init``: declare a clinical export as a runnable experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import app, csv_option, user_errors
from riskmodel.errors import require_writable


@app.command("init")
@user_errors
def init_command(
    data: Annotated[Path, typer.Argument(help="The cohort export: .csv, .tsv, .xlsx or .parquet.")],
    time: Annotated[str, typer.Option(help="The column of the time to event or censoring.")],
    event: Annotated[str, typer.Option(help="The column of the event status.")],
    time_unit: Annotated[
        str | None, typer.Option(help="days, weeks, months or years. Default: read from the time column's header.")
    ] = None,
    event_codes: Annotated[
        str | None, typer.Option(help="Comma-separated codes of the event of interest. Default: 1 (with 0 censored).")
    ] = None,
    competing_codes: Annotated[
        str | None, typer.Option(help="Comma-separated codes of a competing event (say, death before the event).")
    ] = None,
    competing_endpoint: Annotated[
        str | None,
        typer.Option(
            help="The name of a second endpoint in its own columns whose event competes with this one (say, os: "
            "death competes with local failure); needs --competing-time and --competing-event (coded 0/1)."
        ),
    ] = None,
    competing_time: Annotated[str | None, typer.Option(help="The competing endpoint's time column.")] = None,
    competing_event: Annotated[str | None, typer.Option(help="The competing endpoint's event column (0/1).")] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="The patient-identifier column. Default: a column named like 'ID'.")
    ] = None,
    centre: Annotated[str | None, typer.Option(help="The centre (site) column, if any.")] = None,
    endpoint: Annotated[str, typer.Option(help="The endpoint's name, e.g. os, pfs, lc.")] = "outcome",
    out: Annotated[Path, typer.Option(help="Where to write the experiment YAML.")] = Path("experiment.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Write a runnable, commented experiment that declares every column of DATA.

    The kind of each column is inferred (numeric, binary, ordinal, categorical with its most
    common level as reference), with its observed range and missing share as comments and a
    suggested missing-data policy. It prints what it inferred and what a person must check
    (units, ordinal order, codes). Then: riskmodel train experiment.yaml.

    Example: riskmodel init export.csv --time "OS (days)" --event Status --event-codes 1
    --competing-codes 2 --centre Site --endpoint os. Local failure with death in its own columns:
    riskmodel init export.csv --time "LC (months)" --event "Local failure" --endpoint lc
    --competing-endpoint os --competing-time "OS (months)" --competing-event Died
    """
    from riskmodel.errors import UserInputError
    from riskmodel.workflow.init import CompetingColumns, infer_experiment

    require_writable(out, option="--out")
    if out.exists() and not force:
        raise UserInputError(f"--out {out}: exists; choose another file or add --force")
    competing = None
    if (competing_endpoint, competing_time, competing_event) != (None, None, None):
        if None in (competing_endpoint, competing_time, competing_event):
            raise UserInputError(
                "--competing-endpoint, --competing-time and --competing-event go together: name the competing "
                "endpoint and its two columns"
            )
        competing = CompetingColumns(str(competing_endpoint), str(competing_time), str(competing_event))
    inferred = infer_experiment(
        data,
        time=time,
        event=event,
        time_unit=time_unit,
        event_codes=csv_option(event_codes, "--event-codes", lower=False),
        competing_codes=csv_option(competing_codes, "--competing-codes", lower=False),
        patient_id=id_column,
        centre=centre,
        endpoint=endpoint,
        out=out,
        competing_endpoint=competing,
    )
    cohort = inferred.experiment["cohort"]
    names = " and ".join(repr(e["name"]) for e in cohort["endpoints"])
    typer.echo(f"wrote {out}: {len(cohort['covariates'])} covariates, endpoint{'s' * (competing is not None)} {names}")
    for c in cohort["covariates"]:
        extra = f" levels {c['levels']}" if "levels" in c else ""
        typer.echo(f"  {c['name']:<24} {c['kind']:<12} missing: {c['missing']}{extra}")
    typer.echo("check:")
    for note in inferred.notes:
        typer.echo(f"  - {note}")
    typer.echo(f"then: riskmodel train {out}")
