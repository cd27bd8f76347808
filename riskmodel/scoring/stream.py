"""Scoring a large Parquet file in chunks, with bounded memory: ``riskmodel score --patients
big.parquet --out scores.parquet`` (or ``scores.csv``).

The file is read ``chunk_rows`` records at a time (pyarrow's ``ParquetFile.iter_batches``); each
chunk is validated, encoded and scored (:func:`riskmodel.scoring.frame.score_frame`) and appended
to the output, so memory holds the model, one chunk of patients and its scores, whatever the
file's length. Measured in ``benchmarks/score_stream.py`` (a Cox model, peak RSS of the whole
process): 433 MiB for 200,000 patients and 494-504 MiB for 1,000,000 at the default 100,000 rows
a chunk, of which ~230 MiB is Python with riskmodel and the model loaded, so about 3 kB a patient
of the chunk; the whole file in one chunk took 507 and 1,514 MiB. What grows with the file is 16
bytes a patient of earlier IDs (below) and the list of unscored rows kept for the summary (at most
10,000). The size limit on patients files read whole (``RISKMODEL_MAX_FILE_MB``) does not apply.

What the whole-file path does, the streamed one does too, row for row:

* every row keeps its status (refused by the landmark rule, error, outside the development data,
  extrapolated, scored) and its reason, with its row number **in the whole file**;
* a patient ID seen in an earlier chunk is an error on the later row ("duplicate patient_id (first
  seen on row N)"), as validation of the whole file says; the earlier chunks' IDs are kept as
  64-bit hashes (16 bytes a patient with the row), not as text. A declared cohort's validation
  refuses *every* copy of a repeated ID, the first one included, which a streamed file has already
  written: there the repeat stops the run (exit 2);
* a problem that stops the whole file (a missing column, a file that cannot be read, more than 50
  rows breaking one rule) is one line per problem, exit 2, and **no output is left**: the output
  is written to a temporary file beside the target and renamed over it only at the end, so an
  existing output is never half-replaced.

One difference: with several models, each chunk's rows come model by model (the whole-file path
writes all of the first model's rows, then the second's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.load import ColumnMapping, load_mapping, rename_columns
from riskmodel.core.csvout import safe_csv_text
from riskmodel.core.files import staged_file
from riskmodel.errors import CohortFileError, Problem, UserInputError, one_line
from riskmodel.scoring.flags import EXTRAPOLATED, OUTSIDE
from riskmodel.scoring.frame import identities, is_text, score_chunk, score_columns

__all__ = ["DEFAULT_CHUNK_ROWS", "OUTPUT_SUFFIXES", "StreamSummary", "parquet_chunks", "score_stream"]

DEFAULT_CHUNK_ROWS = 100_000
OUTPUT_SUFFIXES = (".csv", ".parquet")
RULE_CAP = 50  # as validation of a whole file: beyond 50 rows breaking one rule, the file is refused
PROGRESS_EVERY_S = 2.0
MAX_UNSCORED = 10_000  # rows not scored kept for the summary (all of them are in the output)


@dataclass
class StreamSummary:
    """What a streamed scoring reports: per model, the counts; the rows not scored, as lines."""

    rows: int = 0
    counts: list[dict[str, Any]] = field(default_factory=list)  # endpoint, family, patients, scored, outside, ...
    # the rows not scored (row, status, endpoint, family, reason or error), the first MAX_UNSCORED kept
    unscored: list[tuple[Any, str, str, str, str]] = field(default_factory=list)
    more_unscored: int = 0


# ----------------------------------------------------------------------------- reading
def parquet_chunks(
    path: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, mapping: str | Path | None = None, declared: bool = False
) -> tuple[int, Iterator[pd.DataFrame]]:
    """The number of records in a Parquet file, and its records ``chunk_rows`` at a time as raw
    cells, each indexed by its row number in the whole file (from 1, as ``read_patients``), the
    columns renamed by ``mapping`` for the built-in contract (a declared model reads its own)."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    p = Path(path)
    if chunk_rows < 1:
        raise UserInputError(f"--chunk-rows {chunk_rows}: give a number of rows of at least 1")
    if not p.is_file() or p.stat().st_size == 0:
        raise CohortFileError(f"{p}: {'the file is empty' if p.is_file() else 'file not found'}")
    if declared and mapping is not None:
        raise UserInputError("--mapping applies to the built-in contract; a declared model reads its own headers")
    try:
        source = pq.ParquetFile(p)
    except Exception as exc:  # pyarrow's own errors differ by cause; the user needs one line
        raise CohortFileError(one_line(f"{p}: cannot be read as Parquet ({type(exc).__name__}: {exc})")) from None
    _check_schema(p, source.schema_arrow)
    columns = ColumnMapping() if mapping is None else load_mapping(mapping)

    def chunks() -> Iterator[pd.DataFrame]:
        first = 1
        batches = source.iter_batches(batch_size=chunk_rows)
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:
                raise CohortFileError(
                    one_line(f"{p}: rows from {first} on cannot be read as Parquet ({type(exc).__name__}: {exc})")
                ) from None
            if batch is None:
                return
            frame = pa.Table.from_batches([batch]).to_pandas()
            frame.index = pd.RangeIndex(first, first + len(frame), name="row")
            first += len(frame)
            if declared:
                frame.columns = [str(c) for c in frame.columns]
                yield frame
            else:
                yield rename_columns(frame, columns, p.name)[0]

    return int(source.metadata.num_rows), chunks()


def _check_schema(p: Path, schema: Any) -> None:
    """One plain value per cell and one column per name (as the whole-file reader)."""
    from pyarrow import types

    names = [str(n) for n in schema.names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CohortFileError(one_line(f"{p}: repeated column names {', '.join(map(repr, repeated[:5]))}; keep one"))
    nested = [str(c.name)[:60] for c in schema if types.is_nested(c.type)]
    if nested:
        raise CohortFileError(one_line(f"{p}: column {nested[0]!r} holds lists, maps or records; one value per cell"))


# ----------------------------------------------------------------------------- repeated IDs
class SeenIds:
    """The patient IDs of the chunks already scored (for one model), as sorted 64-bit hashes
    beside the row each was first seen on: 16 bytes a patient, not the IDs' text."""

    def __init__(self, source: str, declared: bool, id_column: str) -> None:
        self.source, self.declared, self.id_column = source, declared, id_column
        self.hashes = np.empty(0, dtype=np.uint64)
        self.rows = np.empty(0, dtype=np.int64)

    def __call__(self, rest: pd.DataFrame) -> dict[Any, list[Problem]]:
        """Problems of the rows of ``rest`` (the rows validation reads) whose ID an earlier chunk
        had; then this chunk's first copies of new IDs are remembered."""
        if self.id_column not in rest.columns or not len(rest):
            return {}
        raw = rest[self.id_column]
        text = raw.astype(str).str.strip()
        keep = (raw.notna() & (text != "")).to_numpy()
        rows = rest.index.to_numpy()[keep]
        # IDs are mostly distinct: hashed straight, not factorised first (the same hashes)
        hashes = pd.util.hash_array(text.to_numpy(dtype=object)[keep], categorize=False)
        at = np.searchsorted(self.hashes, hashes)
        hit = at < len(self.hashes)
        hit[hit] = self.hashes[at[hit]] == hashes[hit]
        out: dict[Any, list[Problem]] = {}
        for k in np.flatnonzero(hit):
            first, row, value = int(self.rows[at[k]]), rows[k], raw.loc[rows[k]]
            if self.declared:
                raise UserInputError(
                    str(
                        Problem(
                            f"the patient identifier repeats (first on row {first}, already scored and written); "
                            "each patient needs one row",
                            self.source,
                            row,
                            self.id_column,
                            value,
                        )
                    )
                )
            out[row] = [Problem(f"duplicate patient_id (first seen on row {first})", None, row, "patient_id", value)]
        fresh, fresh_rows = hashes[~hit], rows[~hit].astype(np.int64)
        by = np.lexsort((fresh_rows, fresh))  # by hash, then row: each new ID's first row leads
        fresh, fresh_rows = fresh[by], fresh_rows[by]
        lead = np.ones(len(fresh), dtype=bool)
        lead[1:] = fresh[1:] != fresh[:-1]
        merged = np.concatenate([self.hashes, fresh[lead]])
        order = np.argsort(merged, kind="stable")
        self.hashes = merged[order]
        self.rows = np.concatenate([self.rows, fresh_rows[lead]])[order]
        return out


# ----------------------------------------------------------------------------- writing
class _Writer:
    """Appends score tables to a CSV (header once) or a Parquet file (one schema for every chunk)."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path, self.suffix = path, suffix
        self.parquet: Any = None
        self.header = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.suffix == ".csv":
            with self.path.open("a", encoding="utf-8", newline="") as fh:
                fh.write(safe_csv_text(frame, index=False, header=self.header))
            self.header = False
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parquet is None:
            schema = pa.schema(
                [(c, pa.string() if is_text(c) else pa.int64() if c == "row" else pa.float64()) for c in frame.columns]
            )
            # dictionary pages for the text columns only: a column of distinct floats gains nothing
            # from one (pyarrow builds it, then falls back), and it was 40% of the writing time
            text = [c for c in frame.columns if is_text(c)]
            self.parquet = pq.ParquetWriter(self.path, schema, use_dictionary=text)
        self.parquet.write_table(pa.Table.from_pandas(frame, schema=self.parquet.schema, preserve_index=False))

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        elif self.suffix == ".parquet":  # no rows at all: an empty file with no schema is not Parquet
            self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- scoring
def score_stream(
    models: list[Any],
    chunks: Iterator[pd.DataFrame],
    out: str | Path,
    *,
    source: str,
    times: list[float] | None = None,
    allow_extrapolation: bool = False,
    total: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> StreamSummary:
    """Score every chunk with every model and append the scores to ``out`` (.csv or .parquet),
    renamed into place only when the whole file is scored (see the module docstring)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UserInputError(f"--out {out}: a streamed file is written as .csv or .parquet")
    summary = StreamSummary()
    state = [_ModelState(m, source, times) for m in models]
    summary.counts = [s.counts for s in state]
    start = last = time.monotonic()
    with staged_file(out) as tmp:
        writer = _Writer(tmp, suffix)
        try:
            for chunk in chunks:
                who: dict[str, Any] = {}  # each ID column's identities, computed once for every model
                for s in state:
                    column = s.model.id_column
                    who[column] = who[column] if column in who else identities(chunk, column)
                    writer.write(s.score(chunk, allow_extrapolation, summary, who[column]))
                summary.rows += len(chunk)
                now = time.monotonic()
                if progress is not None and (now - last >= PROGRESS_EVERY_S or summary.rows == total):
                    last = now
                    of = f" of {total:,}" if total is not None else ""
                    progress(f"scored {summary.rows:,}{of} rows ({summary.rows / max(now - start, 1e-9):,.0f} rows/s)")
        finally:
            writer.close()
        if suffix == ".parquet" and not tmp.exists():
            _empty_parquet(tmp, models, times)
    return summary


def _empty_parquet(path: Path, models: list[Any], times: list[float] | None) -> None:
    """A Parquet file with the score columns and no rows (a file with no patients)."""
    from riskmodel.models.base import check_horizons

    m = models[0]
    t = [float(x) for x in check_horizons(m.horizons if times is None else times, m.max_time)]
    writer = _Writer(path, ".parquet")
    writer.write(pd.DataFrame({c: pd.Series([], dtype=object if is_text(c) else float) for c in score_columns(m, t)}))
    writer.close()


class _ModelState:
    """One model's running state over the chunks: the IDs seen, the counts, the rule tallies."""

    def __init__(self, model: Any, source: str, times: list[float] | None) -> None:
        self.model, self.source, self.times = model, source, times
        self.seen = SeenIds(source, model.declaration is not None, model.id_column)
        self.counts: dict[str, Any] = {
            "endpoint": model.endpoint,
            "family": model.family,
            **dict.fromkeys(("patients", "scored", "outside", "refused", "error"), 0),
        }
        self.tally: dict[tuple[str | None, str], list[Problem]] = {}

    def score(
        self, chunk: pd.DataFrame, allow_extrapolation: bool, summary: StreamSummary, who: Any = None
    ) -> pd.DataFrame:
        frame, problems = score_chunk(
            self.model, chunk, self.times, allow_extrapolation=allow_extrapolation, earlier=self.seen, who=who
        )
        self._count_rules(problems)
        status = frame["status"].to_numpy(dtype=object)
        refused, error = int((status == "refused").sum()), int((status == "error").sum())
        outside = int(((status == OUTSIDE) | (status == EXTRAPOLATED)).sum())  # the statuses with those words
        self.counts["patients"] += len(frame)
        self.counts["refused"] += refused
        self.counts["error"] += error
        self.counts["scored"] += len(frame) - refused - error
        self.counts["outside"] += outside
        m = self.model
        rows, reasons, errors = (frame[c].to_numpy() for c in ("row", "reason", "error"))
        for k in np.flatnonzero((status == "refused") | (status == "error")).tolist():
            if len(summary.unscored) >= MAX_UNSCORED:
                summary.more_unscored += 1
                continue
            why = reasons[k] if status[k] == "refused" else errors[k]
            summary.unscored.append((int(rows[k]), str(status[k]), m.endpoint, m.family, str(why)))
        return frame

    def _count_rules(self, problems: dict[Any, list[Problem]]) -> None:
        """Validation of a whole file refuses it when more than 50 rows break one rule; so does the stream."""
        for row_problems in problems.values():
            for p in row_problems:
                self.tally.setdefault((p.column, p.rule), []).append(p)
        over = {key: found for key, found in self.tally.items() if len(found) > RULE_CAP}
        if over:
            lines = []
            for (column, rule), found in over.items():
                lines += [str(Problem(p.rule, self.source, p.row, p.column, p.value)) for p in found[:RULE_CAP]]
                more = f"{len(found) - RULE_CAP} more rows break this rule: {rule}"
                lines.append(str(Problem(more, self.source, None, column)))
            raise UserInputError("cannot score any patient:\n" + "\n".join(lines))
