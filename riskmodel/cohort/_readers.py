"""Reading CSV and Parquet cohort files as raw cells, with one-line errors for hostile files.

A CSV file is read as UTF-8 unless its first 64 KiB are not (then as cp1252, the Windows
spreadsheet export). A file whose first byte outside UTF-8 comes later is read as cp1252 too
when everything before it is plain ASCII (the same file, just a late accent); when earlier lines
hold UTF-8 accents the file mixes encodings and is refused with the line of the first bad byte.
A Parquet file with a repeated column name or a list, struct or map column is refused by name.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from riskmodel.errors import CohortFileError, one_line

_NA_TEXTS = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "."]  # read as missing, as typed

__all__ = ["read_csv_arrow", "read_csv_cells", "read_parquet_arrow", "read_parquet_cells"]


def read_parquet_cells(p: Path) -> pd.DataFrame:
    """A Parquet file of one plain value per cell: repeated column names and list, struct or map
    columns are refused by name (from the schema, before the data is read)."""
    check_parquet_schema(p)
    return pd.read_parquet(p)


def check_parquet_schema(p: Path) -> None:
    """Refuse a Parquet file with repeated column names or list, struct or map columns, by name."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
    from pyarrow import types

    schema = pq.read_schema(p)
    names = [str(n) for n in schema.names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        shown = ", ".join(repr(n[:40]) for n in repeated[:5]) + (
            f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        )
        raise CohortFileError(one_line(f"{p}: repeated column names {shown}; keep one column of each name"))
    for column in schema:
        if types.is_nested(column.type):
            kind = "records (struct)" if types.is_struct(column.type) else "lists or maps"
            raise CohortFileError(
                one_line(
                    f"{p}: column {str(column.name)[:60]!r} holds {kind}; riskmodel reads one plain value per cell"
                )
            )


def read_parquet_arrow(p: Path) -> pd.DataFrame:
    """:func:`read_parquet_cells` with the text columns kept in Arrow (``pd.ArrowDtype(pa.string())``):
    every other column as ``pandas.read_parquet`` gives it (the same ``to_pandas`` of the same table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from riskmodel.cohort._arrow_cells import parquet_text

    check_parquet_schema(p)
    text = parquet_text()

    def mapper(kind: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
        return text if pa.types.is_string(kind) or pa.types.is_large_string(kind) else None

    frame: pd.DataFrame = pq.read_table(p, use_pandas_metadata=True).to_pandas(types_mapper=mapper)
    return frame


def read_csv_cells(p: Path) -> pd.DataFrame:
    """A CSV or TSV file's cells as text (see the module docstring for the encoding)."""
    with open(p, "rb") as fh:
        head = fh.read(65536)
    if b"\x00" in head:
        raise CohortFileError(f"{p}: binary content, not a text CSV file")
    encoding = "utf-8-sig"
    try:
        sample = head.decode(encoding)
    except UnicodeDecodeError:
        # A Windows spreadsheet export; a cut multi-byte character at the sample's end is not it.
        try:
            sample = head[:-4].decode(encoding)
        except UnicodeDecodeError:
            encoding = "cp1252"
            sample = head.decode(encoding, errors="replace")
    if not sample.strip():
        raise CohortFileError(f"{p}: the file is empty")
    try:
        sep = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    try:
        return _csv_frame(p, sep, encoding)
    except UnicodeDecodeError:
        if encoding == "cp1252":
            raise _not_cp1252(p) from None
    line, mixed = _first_non_utf8(p)  # not UTF-8 after the sample
    if mixed:
        raise CohortFileError(
            f"{p}: line {line} is not UTF-8 text, though earlier lines are (the file mixes encodings); "
            "save it again as UTF-8"
        ) from None
    # Plain ASCII up to that line: a Windows spreadsheet export, read as the sample's would be.
    try:
        return _csv_frame(p, sep, "cp1252")
    except UnicodeDecodeError:
        raise _not_cp1252(p) from None


_NOT_CP1252 = frozenset(b"\x81\x8d\x8f\x90\x9d")  # the five bytes Windows-1252 leaves undefined


def _not_cp1252(p: Path) -> CohortFileError:
    """The line of the first byte that is neither UTF-8 nor Windows-1252, as one-line error."""
    line = 1
    with open(p, "rb") as fh:
        while chunk := fh.read(1 << 20):
            found = [i for i in (chunk.find(bytes([b])) for b in _NOT_CP1252) if i >= 0]
            if found:
                at = min(found)
                line += chunk[:at].count(b"\n")
                return CohortFileError(
                    f"{p}: line {line} has the byte 0x{chunk[at]:02X}, neither UTF-8 nor Windows-1252 text; "
                    "save the file as UTF-8"
                )
            line += chunk.count(b"\n")
    return CohortFileError(f"{p}: neither UTF-8 nor Windows-1252 text; save the file as UTF-8")


def _csv_frame(p: Path, sep: str, encoding: str) -> pd.DataFrame:
    return pd.read_csv(
        p,
        sep=sep,
        dtype=str,
        encoding=encoding,
        keep_default_na=False,
        na_values=_NA_TEXTS,
        skip_blank_lines=False,
    )


def _first_non_utf8(p: Path) -> tuple[int, bool]:
    """The line (1-based) of the first byte that is not UTF-8, and whether any UTF-8 character
    beyond ASCII comes before it (the file mixes encodings). Read in 1 MiB pieces."""
    line, mixed, carry = 1, False, b""
    with open(p, "rb") as fh:
        while chunk := fh.read(1 << 20):
            data = carry + chunk
            try:
                data.decode("utf-8")
                good, carry = data, b""
            except UnicodeDecodeError as exc:
                good = data[: exc.start]
                if exc.reason != "unexpected end of data":
                    return line + good.count(b"\n"), mixed or not good.isascii()
                carry = data[exc.start :]
            line += good.count(b"\n")
            mixed = mixed or not good.isascii()
    return line, mixed


def read_csv_arrow(p: Path) -> pd.DataFrame | None:
    """A UTF-8 CSV or TSV file's cells as Arrow text (``pd.StringDtype("pyarrow", na_value=nan)``),
    read by pyarrow in C; ``None`` whenever pyarrow might read it otherwise than
    :func:`read_csv_cells` (then that reads it): a file that is not UTF-8, a blank or short line, a
    repeated or empty header (pandas renames those), anything pyarrow refuses.

    The same cells as pandas' reader, text for text: quoted fields, embedded line breaks, a byte
    order mark, the same missing-value words (tests/cohort/test_arrow_load.py)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv  # type: ignore[import-untyped]

    from riskmodel.cohort._arrow_cells import csv_text

    with open(p, "rb") as fh:
        head = fh.read(65536)
    try:
        sample = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the sample's end
            sample = head[:-4].decode("utf-8-sig")
        except UnicodeDecodeError:
            return None  # cp1252: pandas' reader decides
    if b"\x00" in head or not sample.strip():
        return None
    try:
        sep = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    parse = pcsv.ParseOptions(delimiter=sep, newlines_in_values=True, ignore_empty_lines=False)
    try:
        with pcsv.open_csv(p, parse_options=parse) as stream:  # the header, from the first block
            names = stream.schema.names
        if len(set(names)) != len(names) or any(not n for n in names):
            return None  # pandas would rename them (x.1, Unnamed: 3): its reader keeps that spelling
        table = pcsv.read_csv(
            p,
            parse_options=parse,
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),  # pandas' own layout: no copy
                null_values=_NA_TEXTS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError, ValueError):
        return None
    if table.schema.names != names:
        return None
    dtype = csv_text()
    return pd.DataFrame({n: pd.Series(pd.array(table.column(i), dtype=dtype)) for i, n in enumerate(names)}, copy=False)
