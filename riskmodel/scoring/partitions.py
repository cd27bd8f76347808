"""Scoring a Parquet dataset (a folder of files) one partition at a time, here or on a Dask cluster.

``riskmodel score --patients dataset/ --out scores/ --cluster ADDRESS`` maps the dataset's files
across the cluster's workers (:func:`riskmodel.core.parallel.parallel_map`): each worker reads one
partition, scores it with every model, and writes ``scores/<partition>.csv`` (or ``.json``), the
same file ``riskmodel score --patients dataset/<partition>.parquet --out scores/<partition>.csv``
writes. Only counts and the unscored rows' reasons come back. Without a cluster the partitions are
scored one after the other on this machine; a partition scored into .csv is streamed in chunks
(:mod:`riskmodel.scoring.stream`), so memory holds one chunk at a time.

The workers must see the dataset and the output folder at the same paths (a shared file system,
as on a SLURM or PBS cluster). The models travel to the workers in memory, already loaded and
verified here; patients' rows stay in the workers' memory and in the output files only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskmodel.core.parallel import parallel_map
from riskmodel.errors import UserInputError, require_writable
from riskmodel.scoring.patients import read_patients, write_scores
from riskmodel.scoring.stream import parquet_chunks, score_stream

__all__ = ["PartitionScores", "dataset_partitions", "score_partitions"]


@dataclass
class PartitionScores:
    """What one partition's scoring reports back: counts per model and the rows not scored."""

    source: str
    written: str
    counts: list[dict[str, Any]] = field(default_factory=list)  # endpoint, family, patients, scored, refused, error
    unscored: list[str] = field(default_factory=list)  # "row 12: refused by the LC cox model: <reason>"


def dataset_partitions(folder: Path) -> list[Path]:
    """The ``*.parquet`` files of a Parquet dataset folder, in name order (refused when there are none)."""
    if not folder.is_dir():
        raise UserInputError(
            f"--patients {folder}: with --cluster, give a Parquet dataset (a folder of .parquet files)"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".parquet" and p.is_file())
    if not files:
        raise UserInputError(f"--patients {folder}: no .parquet files in this folder")
    return files


def score_partitions(
    models: list[Any],
    folder: Path,
    out: Path,
    *,
    times: list[float] | None = None,
    mapping: Path | None = None,
    declared: bool = False,
    allow_extrapolation: bool = False,
    suffix: str = ".csv",
) -> list[PartitionScores]:
    """Score every partition of ``folder`` into ``out/<partition><suffix>``, in partition order."""
    if suffix not in (".csv", ".json"):
        raise UserInputError(f"--out: partitions are written as .csv or .json, not {suffix}")
    require_writable(out, folder=True, option="--out")
    out.mkdir(parents=True, exist_ok=True)
    units = [(str(src.resolve()), str((out / f"{src.stem}{suffix}").resolve())) for src in dataset_partitions(folder)]
    shared = (models, times, None if mapping is None else str(mapping), declared, allow_extrapolation)
    return list(parallel_map(_score_partition, units, shared=shared))


def _score_partition(
    models: list[Any],
    times: list[float] | None,
    mapping: str | None,
    declared: bool,
    allow_extrapolation: bool,
    unit: tuple[str, str],
) -> PartitionScores:
    """One partition: read, score with every model, write; return the counts (no patient rows).
    A .csv output is streamed (:mod:`riskmodel.scoring.stream`): the file ``riskmodel score
    --patients <partition>.parquet --out <partition>.csv`` writes, in bounded memory."""
    src, dst = unit
    result = PartitionScores(src, dst)
    if dst.lower().endswith(".csv"):
        _, chunks = parquet_chunks(src, mapping=mapping, declared=declared)
        summary = score_stream(
            models, chunks, dst, source=Path(src).name, times=times, allow_extrapolation=allow_extrapolation
        )
        keys = ("endpoint", "family", "patients", "scored", "refused", "error")
        result.counts = [{k: c[k] for k in keys} for c in summary.counts]
        for row, outcome, endpoint, family, why in summary.unscored:
            verb = "refused" if outcome == "refused" else "not scored"
            result.unscored.append(f"row {row}: {verb} by the {endpoint.upper()} {family} model: {why}")
        return result
    table = read_patients(src, mapping=mapping, declared=declared)
    records: list[dict[str, Any]] = []
    for model in models:
        these = model.score(table, times, allow_extrapolation=allow_extrapolation)
        records.extend(these)
        status = [r["status"] for r in these]
        refused, error = status.count("refused"), status.count("error")
        result.counts.append(
            {
                "endpoint": model.endpoint,
                "family": model.family,
                "patients": len(these),
                "scored": len(these) - refused - error,
                "refused": refused,
                "error": error,
            }
        )
        for r in these:
            if r["status"] in ("error", "refused"):
                verb = "not scored" if r["status"] == "error" else "refused"
                why = r.get("error") or r.get("reason")
                result.unscored.append(
                    f"row {r['row']}: {verb} by the {model.endpoint.upper()} {model.family} model: {why}"
                )
    write_scores(records, dst)
    return result
