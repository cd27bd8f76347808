"""``riskmodel score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from riskmodel.cli.cluster import cluster_option
from riskmodel.cli.common import HorizonsOption, TrackingUriOption, app, months_option, user_errors
from riskmodel.core.parallel import current_cluster
from riskmodel.errors import require_writable

# riskmodel.scoring.stream.DEFAULT_CHUNK_ROWS, spelt out: the option's default must not import scoring
DEFAULT_CHUNK_ROWS = 100_000
OUT_HELP = (
    "Write results to FILE.json, FILE.csv or FILE.parquet. A .parquet patients file scored into .csv or "
    ".parquet is streamed in chunks (--chunk-rows): memory stays bounded however many patients."
)
CHUNK_HELP = (
    "Patients read, scored and written at a time when a .parquet file is streamed. Peak memory is the "
    "process with its model (~230 MiB) plus ~3 kB a patient of the chunk; at the default 100,000 it was "
    "measured at 438 MiB for 200,000 patients and 520 MiB for 1,000,000 (benchmarks/score_stream.py)."
)


def _counts(records: list[dict[str, Any]]) -> str:
    """ "34 of 36 patients scored (3 outside the development data), 2 refused" for one model."""
    n = {s: sum(r["status"] == s for r in records) for s in ("refused", "error")}
    outside = sum("outside the development data" in r["status"] for r in records)
    scored = len(records) - n["refused"] - n["error"]
    text = f"{scored} of {len(records)} patients scored"
    text += f" ({outside} outside the development data)" if outside else ""
    return text + (f", {n['refused']} refused (not at risk after the landmark)" if n["refused"] else "")


@app.command("score")
@user_errors
@cluster_option
def score_command(
    model: Annotated[
        list[str],
        typer.Option(
            help="runs:/<run_id>/model, models:/<name>/<version>, or a model folder. Repeat it to score with "
            "several models (say an LC and an OS model): one result per patient and model."
        ),
    ],
    patients: Annotated[Path, typer.Option(help="Patients to score: .csv, .xlsx or .parquet (no outcomes needed).")],
    horizons: HorizonsOption = None,
    out: Annotated[Path | None, typer.Option(help=OUT_HELP)] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping YAML for the patients file.")] = None,
    tracking_uri: TrackingUriOption = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Also write one HTML page per patient into this folder: curves with uncertainty bands, SHAP "
            "waterfalls, inputs against the training ranges, and a D90 what-if curve. Pseudonymous IDs only; "
            "the results (--out) carry each patient's pseudonym and page, to join pages back to your IDs."
        ),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help=CHUNK_HELP)] = DEFAULT_CHUNK_ROWS,
    allow_extrapolation: Annotated[
        bool,
        typer.Option(
            "--allow-extrapolation",
            help="Give a risk group to a patient outside the development data (an input beyond the training "
            "range, or a category unseen in training); the status still says extrapolated.",
        ),
    ] = False,
) -> None:
    """Score new patients with saved models: risk score, risk group, S(t) at each horizon, flags.

    Each patient is validated with the cohort contract (outcome columns not required). A bad row is
    reported with its row number and does not stop the other patients from being scored. Each result
    has a status: scored; outside the development data (predictions, no risk group unless
    --allow-extrapolation); refused (not at risk after the model's landmark, e.g. PD at the 3-month
    CT for an LC model, or follow-up ending before it: no predictions); or error. Exit code is 0 if
    every row was scored or refused, 1 if some rows could not be read, 2 for a user error.

    Example: riskmodel score --model runs:/<LC run>/model --model runs:/<OS run>/model
    --patients new.csv --report reports/

    A .parquet file scored into --out FILE.parquet or .csv is streamed, --chunk-rows patients at a time
    (the statuses and row numbers of a whole-file scoring; no output left if the run stops).

    A Parquet dataset (a folder of .parquet files) with --out FOLDER is scored a partition at a time
    into FOLDER/<partition>.csv; with --cluster the partitions are spread over the Dask workers
    (which must see both folders at the same paths).
    """
    from riskmodel.errors import UserInputError
    from riskmodel.scoring import read_patients, write_scores
    from riskmodel.tracking import load_model

    if out is not None and not patients.is_dir():
        require_writable(out, option="--out")

    times = months_option(horizons)
    if report is not None:
        require_writable(report, folder=True, option="--report")
    risk_models = [load_model(m, tracking_uri=tracking_uri) for m in model]
    declared = {m.declaration is not None for m in risk_models}
    if len(declared) > 1:
        raise UserInputError("score models of declared cohorts and of the built-in contract in separate commands")
    if patients.is_dir() or current_cluster() is not None:
        if report is not None or out is None:
            raise UserInputError("a Parquet dataset (or --cluster) is scored into an --out folder, without --report")
        _score_dataset(risk_models, patients, out, times, mapping, declared.pop(), allow_extrapolation)
        return
    if out is not None and _streamed(patients, out, report):
        _score_stream(risk_models, patients, out, times, mapping, declared.pop(), allow_extrapolation, chunk_rows)
        return
    table = read_patients(patients, mapping=mapping, declared=declared.pop())
    records: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for risk_model in risk_models:
        these = risk_model.score(table, times, allow_extrapolation=allow_extrapolation)
        records.extend(these)
        bad.extend(r for r in these if r["status"] == "error")
        typer.echo(
            f"{_counts(these)} ({risk_model.endpoint.upper()}, {risk_model.family}, "
            f"time zero: {risk_model.time_origin})",
            err=True,
        )
    pages = _write_pages(risk_models, table, report, records, allow_extrapolation) if report is not None else []
    text = write_scores(records, out)
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"results in {out}", err=True)
    _echo_unscored(records, several=len(risk_models) > 1)
    if report is not None:
        typer.echo(f"{len(pages)} patient report(s) in {report}/ (index.html lists them)", err=True)
    if bad:
        raise typer.Exit(1)


def _streamed(patients: Path, out: Path, report: Path | None) -> bool:
    """Whether scores go to a streamed output: a .parquet one, or a .csv one of a .parquet file."""
    if out.suffix.lower() == ".parquet":
        if report is not None:
            from riskmodel.errors import UserInputError

            raise UserInputError("--report writes pages beside --out FILE.csv or FILE.json, not FILE.parquet")
        return True
    return out.suffix.lower() == ".csv" and patients.suffix.lower() in (".parquet", ".pq") and report is None


def _score_stream(
    models: list[Any],
    patients: Path,
    out: Any,
    times: Any,
    mapping: Any,
    declared: bool,
    allow_extrapolation: bool,
    chunk_rows: int,
) -> None:
    """Score a .parquet file chunk by chunk (any other file in one piece) into ``out`` (.csv or .parquet)."""
    from riskmodel.scoring import read_patients
    from riskmodel.scoring.stream import parquet_chunks, score_stream

    if patients.suffix.lower() in (".parquet", ".pq"):
        total, chunks = parquet_chunks(patients, chunk_rows=chunk_rows, mapping=mapping, declared=declared)
    else:
        table = read_patients(patients, mapping=mapping, declared=declared)
        total, chunks = len(table), iter([table])
    progress = (lambda line: typer.echo(line, err=True)) if total > chunk_rows else None
    summary = score_stream(
        models,
        chunks,
        out,
        source=patients.name,
        times=times,
        allow_extrapolation=allow_extrapolation,
        total=total,
        progress=progress,
    )
    for model, n in zip(models, summary.counts, strict=True):
        text = f"{n['scored']} of {n['patients']} patients scored"
        text += f" ({n['outside']} outside the development data)" if n["outside"] else ""
        text += f", {n['refused']} refused (not at risk after the landmark)" if n["refused"] else ""
        typer.echo(f"{text} ({model.endpoint.upper()}, {model.family}, time zero: {model.time_origin})", err=True)
    typer.echo(f"results in {out}", err=True)
    for row, status, endpoint, family, why in summary.unscored:
        which = f" by the {endpoint.upper()} {family} model" if len(models) > 1 else ""
        typer.echo(f"  row {row}: {'refused' if status == 'refused' else 'not scored'}{which}: {why}", err=True)
    if summary.more_unscored:
        typer.echo(f"  and {summary.more_unscored} more rows not scored (each has its status in {out})", err=True)
    if any(n["error"] for n in summary.counts):
        raise typer.Exit(1)


def _score_dataset(
    models: list[Any], folder: Path, out: Path, times: Any, mapping: Any, declared: bool, allow_extrapolation: bool
) -> None:
    """Score a Parquet dataset partition by partition (on the cluster in use, if any) into ``out``."""
    from riskmodel.scoring.partitions import score_partitions

    suffix = out.suffix.lower() if out.suffix.lower() in (".csv", ".json") and not out.is_dir() else ".csv"
    target = out.with_suffix("") if out.suffix.lower() in (".csv", ".json") and not out.is_dir() else out
    parts = score_partitions(
        models,
        folder,
        target,
        times=times,
        mapping=mapping,
        declared=declared,
        allow_extrapolation=allow_extrapolation,
        suffix=suffix,
    )
    for m, model in enumerate(models):
        n = {k: sum(p.counts[m][k] for p in parts) for k in ("patients", "scored", "refused", "error")}
        typer.echo(
            f"{n['scored']} of {n['patients']} patients scored, {n['refused']} refused, {n['error']} not read "
            f"({model.endpoint.upper()}, {model.family}; {len(parts)} partitions)",
            err=True,
        )
    for p in parts:
        for line in p.unscored:
            typer.echo(f"  {Path(p.source).name} {line}", err=True)
    typer.echo(f"results in {target}/ (one file per partition)", err=True)
    if any(c["error"] for p in parts for c in p.counts):
        raise typer.Exit(1)


def _write_pages(
    models: list[Any], table: Any, report: Path, records: list[dict[str, Any]], allow_extrapolation: bool
) -> list[Path]:
    """Write the patient pages; give each record its page (joined by the pseudonym), or None."""
    from riskmodel.reporting import write_patient_reports
    from riskmodel.reporting.patient_report import page_name

    pages = write_patient_reports(models, table, report, allow_extrapolation=allow_extrapolation)
    by_name = {p.name: p for p in pages}
    for r in records:
        page = by_name.get(page_name(r["pseudonym"])) if r.get("pseudonym") else None
        r["page"] = None if page is None else str(page)
    return pages


def _echo_unscored(records: list[dict[str, Any]], *, several: bool) -> None:
    """One line per row that was refused or could not be read."""
    for r in records:
        if r["status"] in ("error", "refused"):
            which = f" by the {r['endpoint'].upper()} {r['family']} model" if several else ""
            verb = "not scored" if r["status"] == "error" else "refused"
            typer.echo(f"  row {r['row']}: {verb}{which}: {r.get('error') or r.get('reason')}", err=True)
