"""``riskmodel report``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from riskmodel.cli.common import app, csv_option, user_errors


@app.command("report")
@user_errors
def report_command(
    out: Annotated[Path, typer.Option(help="Folder for report.html (self-contained) and the tables as CSV.")],
    experiment: Annotated[
        Path | None,
        typer.Argument(
            metavar="EXPERIMENT",
            help="Experiment YAML. With a cohort: section, the report of that declared cohort (its data.path, "
            "covariates and endpoints). Default: the bundled study's report.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Cohort file: replaces the experiment's data.path. Default: the bundled reconstructed cohort."
        ),
    ] = None,
    endpoints: Annotated[
        str | None, typer.Option(help="Comma-separated subset of the endpoints. Default: all of them.")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(help="Column mapping YAML for a cohort file on the study's contract (without EXPERIMENT)."),
    ] = None,
    cutoff: Annotated[
        list[str] | None,
        typer.Option(
            help="Another cut-off for a two-group factor, e.g. --cutoff d90_gy=120 (repeatable). Factors: age, "
            "seed_activity_mci, lesion_volume_cm3, d90_gy, recurrence_interval_months. With a declared cohort, any "
            "numeric covariate (e.g. --cutoff age=65); without one it is split at its declared threshold, else at "
            "its median."
        ),
    ] = None,
) -> None:
    """Write the classical survival report: KM curves, log-rank tables, Cox, PH checks.

    Without EXPERIMENT: the bundled study's report (or --data on its contract). The univariate
    tables follow the layout of the study's Tables 1 and 2; rows and models involving the 3-month
    response start at the 3-month landmark; local control with death as a competing risk; for the
    bundled cohort the published figures are shown beside the results.

    With an EXPERIMENT that declares its cohort (riskmodel init writes one): the missing data per
    covariate (n, %, by event status and centre); characteristics overall and by centre; per
    endpoint, events, reverse-KM follow-up and the KM median, a log-rank test and KM curves per
    covariate (by its levels, or split at --cutoff, its declared threshold or its median); the
    multivariable Cox model of the declared covariates with their declared encodings (pooled over
    imputations by Rubin's rules under missing: impute) and its proportional-hazards tests.
    Constant and all-missing covariates are left out with a note; an endpoint below Riley et al.'s
    minimum sample size is marked exploratory.

    The report holds counts and estimates only, no patient rows, identifiers or dates.

    Examples: riskmodel report --out report/ ;
    riskmodel report experiment.yaml --out report/ --cutoff age=65
    """
    from riskmodel.errors import UserInputError

    cutoffs: dict[str, float] = {}
    for item in cutoff or []:
        name, _, value = item.partition("=")
        try:
            cutoffs[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected NAME=NUMBER, got {item!r}", param_hint="--cutoff") from None
    if experiment is not None:
        from riskmodel.config import load_experiment
        from riskmodel.workflow import experiment_report

        if mapping is not None:
            raise UserInputError("--mapping: with an experiment, give it as data.mapping (or declare a cohort:)")
        config = load_experiment(experiment)
        wanted = csv_option(endpoints, "--endpoints", lower=config.cohort is None)
        path = experiment_report(config, out, data=data, endpoints=wanted, cutoffs=cutoffs or None)
        typer.echo(f"report written to {path}, with tables/*.csv and summary.json beside it")
        return
    from riskmodel.cohort import ENDPOINTS, bundled_cohort_path, load
    from riskmodel.reporting import build_report

    cohort = load(data or bundled_cohort_path(), mapping=mapping)
    chosen = csv_option(endpoints, "--endpoints") or ENDPOINTS
    path = build_report(cohort, out, endpoints=chosen, cutoffs=cutoffs or None, sample_sizes=_sizes(cohort, chosen))
    typer.echo(f"report written to {path}, with tables/*.csv and summary.json beside it")


def _sizes(cohort: Any, endpoints: Sequence[str]) -> dict[str, Any]:
    """Riley et al.'s assessment of the default experiment's multivariable model of each endpoint
    on this cohort, so the report calls it exploratory from its own data; {} (every endpoint
    labelled exploratory, as not assessed) when the default experiment cannot be found."""
    from riskmodel.config import default_experiment_path, load_experiment
    from riskmodel.errors import UserInputError
    from riskmodel.workflow.report import sample_sizes

    try:
        config = load_experiment(default_experiment_path())
    except UserInputError:
        return {}
    config = config.model_copy(update={"endpoints": list(endpoints)})
    return sample_sizes(config, cohort)[0]
