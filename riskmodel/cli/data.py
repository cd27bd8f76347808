"""Commands on cohort files: validate-data, data-dictionary, synthetic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import app, user_errors
from riskmodel.errors import CohortValidationError, own_warnings_silenced


@app.command("validate-data")
@user_errors
def validate_data(
    file: Annotated[
        Path | None,
        typer.Argument(help="Cohort file: .csv, .tsv, .xlsx or .parquet. Default: the bundled reconstructed cohort."),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="YAML file mapping your column names and values to the canonical ones (see data/mapping.example.yaml)."
        ),
    ] = None,
    response_rule: Annotated[
        str | None,
        typer.Option(
            help="How to derive response_3mo from measurements: 'recist' (sum of longest diameters) or "
            "'volume' (the study's rule). Needed only when both kinds of measurement are present."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when there are warnings but no errors.")] = False,
    scoring: Annotated[
        bool, typer.Option(help="Check new patients for scoring: outcome columns are not required.")
    ] = False,
) -> None:
    """Check a cohort file against the contract and print every problem at once.

    Each problem names the file, row (as in a spreadsheet: header = row 1), column, value and rule.
    Raw clinical fields are derived on the way: dates become intervals and outcomes, a TNM string
    becomes T/N/M, three diameters become a volume, two measurements become a response.

    Exit codes: 0 valid; 1 warnings only (with --strict); 2 errors.
    """
    from riskmodel.cohort import bundled_cohort_path, load

    if response_rule not in (None, "recist", "volume"):
        raise typer.BadParameter("must be 'recist' or 'volume'", param_hint="--response-rule")
    path = file or bundled_cohort_path()
    typer.echo(f"Validating {path}")
    with own_warnings_silenced():  # shown below, once, in the report
        try:
            cohort = load(
                path,
                mapping=mapping,
                response_rule=response_rule,  # type: ignore[arg-type]
                require_outcomes=not scoring,
            )
        except CohortValidationError as exc:
            for problem in (*exc.problems, *exc.warnings):
                typer.echo(f"  {problem}")
            typer.echo(
                f"{len(exc.problems)} errors, {len(exc.warnings)} warnings: NOT VALID "
                "(rows are numbered as in a spreadsheet: header = row 1)"
            )
            raise typer.Exit(2) from None
    typer.echo(f"  {cohort.summary()}")
    for rule in cohort.competing_rules:  # the competing-event rule and the patients it moved (counts)
        typer.echo(f"  {rule}")
    if cohort.derived:
        typer.echo(f"  derived: {', '.join(cohort.derived)}")
    if cohort.ignored:
        typer.echo(f"  ignored columns (not in the contract): {', '.join(cohort.ignored)}")
    for problem in cohort.warnings:
        typer.echo(f"  {problem}")
    n = len(cohort.warnings)
    typer.echo(f"0 errors, {n} warnings: {'valid' if n == 0 else 'valid, with warnings to review'}")
    if n and strict:
        raise typer.Exit(1)


@app.command("data-dictionary")
def data_dictionary() -> None:
    """Print the cohort contract: every canonical column, unit, type, range and rule (Markdown)."""
    from riskmodel.cohort import contract_markdown

    typer.echo(contract_markdown(), nl=False)


MAX_SYNTHETIC = 10_000_000  # patients; a safety limit (riskmodel.core.limits)


@app.command("synthetic")
@user_errors
def synthetic(
    out: Annotated[Path, typer.Argument(help="Output file: .csv or .parquet.")],
    n: Annotated[int, typer.Option(help="Number of patients (36 to 1,000,000 and beyond).", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same cohort.")] = 0,
) -> None:
    """Write a synthetic cohort from the documented data-generating process (known true effects)."""
    import io

    from riskmodel.cohort import synthetic as synth
    from riskmodel.cohort.load import cohort_csv_text
    from riskmodel.core.files import atomic_write_bytes, atomic_write_text
    from riskmodel.core.limits import SEED_MAX, check_limit
    from riskmodel.errors import UserInputError, require_writable

    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UserInputError(f"{out}: choose a .csv or .parquet output file")
    if not 0 <= seed <= SEED_MAX:
        raise UserInputError(f"--seed {seed}: must be between 0 and {SEED_MAX}")
    too_many = check_limit(n, MAX_SYNTHETIC)
    if too_many:
        raise UserInputError(f"--n {n:,}: {too_many}")
    require_writable(out, option="out")
    frame = synth.generate(n, seed)
    if out.suffix.lower() == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(out, buffer.getvalue())
    else:
        atomic_write_text(out, cohort_csv_text(frame))
    typer.echo(f"wrote {out}: {n} synthetic patients (seed {seed})")
