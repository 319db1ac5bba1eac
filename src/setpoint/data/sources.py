"""Read a dataset from a file, a SQL query or an in-memory frame.

Every failure becomes a :class:`~setpoint.errors.SourceError` (or a
:class:`~setpoint.errors.SchemaError` for column-name problems) whose message
says which source, what is wrong and where, so that the user never has to read
a pandas or Arrow traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from setpoint.config.spec import SourceSpec
from setpoint.data._sql import read_sql
from setpoint.errors import InvalidParameterError, SchemaError, SourceError

__all__ = ["read_source"]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_RAGGED = re.compile(r"Expected (\d+) columns, got (\d+)")
_CHUNK = 1 << 20
# What a byte-order mark says about a file that was read as something else.
_BOMS = {b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}
# Cells setpoint can store and validate: scalars. Anything pandas calls
# "mixed" is scanned for containers, which have no schema kind.
_CONTAINERS = (dict, list, set, frozenset, tuple, np.ndarray)


def read_source(
    source: SourceSpec | str | Path | pd.DataFrame | pa.Table,
    *,
    name: str | None = None,
    root: str | Path | None = None,
    text_columns: Collection[str] = (),
) -> pd.DataFrame:
    """Read ``source`` into a DataFrame with string column names and a RangeIndex.

    ``name`` (the key under ``sources:`` in the spec) only labels error
    messages. ``root`` is the folder relative paths are resolved against,
    usually the folder of ``setpoint.yaml``. ``text_columns`` of a CSV file
    are read as text, not guessed: ids like ``000123`` or 30-digit account
    numbers must not become floats that lose digits.

    Raises :class:`SourceError` when the source cannot be read or holds no
    rows, and :class:`SchemaError` when column names are duplicated.
    """
    if isinstance(source, SourceSpec):
        if source.sql is not None:
            frame, label = read_sql(source, name=name)
            return _finish(frame, label=label, what="the query returned no rows")
        path = _resolve(source.path or "", root)
        return _read_file(
            path,
            fmt=source.format,
            encoding=source.encoding,
            delimiter=source.delimiter,
            name=name,
            text_columns=text_columns,
        )
    if isinstance(source, str | Path):
        return _read_file(
            _resolve(source, root),
            fmt=None,
            encoding="utf-8",
            delimiter=",",
            name=name,
            text_columns=text_columns,
        )
    if isinstance(source, pd.DataFrame):
        label = f"source {name!r}" if name else "DataFrame"
        return _finish(source.copy(deep=False), label=label, what="has no rows")
    if isinstance(source, pa.Table):
        label = f"source {name!r}" if name else "Arrow table"
        return _finish(_arrow_to_pandas(source), label=label, what="has no rows")
    raise InvalidParameterError(
        owner="read_source",
        parameter="source",
        expected="a SourceSpec, a str or Path, a pandas DataFrame or a pyarrow Table",
        got=type(source).__name__,
    )


def _resolve(path: str | Path, root: str | Path | None) -> Path:
    candidate = Path(path).expanduser()
    if root is not None and not candidate.is_absolute():
        candidate = Path(root) / candidate
    return candidate


def _label(path: Path, name: str | None) -> str:
    # A name that is only the path again would print it twice.
    return f"source {name!r} ({path})" if name and name != str(path) else str(path)


def _read_file(
    path: Path,
    *,
    fmt: str | None,
    encoding: str,
    delimiter: str,
    name: str | None,
    text_columns: Collection[str] = (),
) -> pd.DataFrame:
    label = _label(path, name)
    if not path.exists():
        hint = _similar_files(path)
        raise SourceError(f"file not found{hint}", source=label, path=str(path))
    if path.is_dir():
        raise SourceError("is a directory, not a file", source=label, path=str(path))
    if path.stat().st_size == 0:
        raise SourceError("is empty (0 bytes)", source=label, path=str(path))
    fmt = fmt or _format_from_suffix(path, label)
    if fmt == "parquet":
        frame = _read_parquet(path, label)
        return _finish(frame, label=label, what="has columns but no rows")
    frame = _read_csv(
        path, label, encoding=encoding, delimiter=delimiter, text_columns=text_columns
    )
    return _finish(frame, label=label, what="has a header but no rows")


def _similar_files(path: Path) -> str:
    folder = path.parent if str(path.parent) else Path()
    if not folder.is_dir():
        return f" (the folder {str(folder)!r} does not exist either)"
    names = [p.name for p in folder.iterdir() if p.is_file()]
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _format_from_suffix(path: Path, label: str) -> str:
    lower = path.name.lower()
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise SourceError(
        f"cannot tell the format from the suffix {path.suffix!r}: use one of "
        f"{', '.join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}, or set 'format: csv' or "
        "'format: parquet' in the source spec",
        source=label,
        path=str(path),
    )


def _read_parquet(path: Path, label: str) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"is not a readable Parquet file (corrupted or truncated?): {exc}",
            source=label,
            path=str(path),
        ) from None
    return _arrow_to_pandas(table)


def _read_csv(
    path: Path, label: str, *, encoding: str, delimiter: str, text_columns: Collection[str] = ()
) -> pd.DataFrame:
    if len(delimiter) != 1:
        raise SourceError(
            f"the delimiter must be a single character; got {delimiter!r}",
            source=label,
            path=str(path),
        )
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise SourceError(
            f"unknown encoding {encoding!r} in the source spec",
            source=label,
            path=str(path),
        ) from None
    read = pacsv.ReadOptions(encoding=encoding)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    # Like pandas, an empty string or "NA" in a text column is a missing value.
    convert = pacsv.ConvertOptions(
        strings_can_be_null=True, column_types=dict.fromkeys(text_columns, pa.string())
    )
    try:
        table = pacsv.read_csv(
            path, read_options=read, parse_options=parse, convert_options=convert
        )
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, label, encoding, column=None) from exc
    except pa.ArrowInvalid as exc:
        text = str(exc)
        if "Empty CSV file" in text:
            raise SourceError("is empty (no header line)", source=label, path=str(path)) from None
        if _find_bad_byte(path, encoding) is not None:
            # Undecodable bytes (a binary or UTF-16 file) also break the rows;
            # the encoding is the problem to report, and the ragged-row pass
            # below would choke on the same bytes.
            raise _encoding_error(path, label, encoding, column=None) from None
        ragged = _RAGGED.search(text)
        if ragged is not None:
            line = _first_ragged_line(path, read, parse)
            where = f"line {line}" if line is not None else "a line"
            raise SourceError(
                f"{where} has {ragged.group(2)} fields but the header has {ragged.group(1)} "
                "(truncated file or a stray delimiter?)",
                source=label,
                path=str(path),
                line=line,
            ) from None
        if "UTF8" in text or "utf-8" in text.lower():
            raise _encoding_error(path, label, encoding, column=None) from None
        raise SourceError(
            f"cannot be parsed as CSV: {text}", source=label, path=str(path)
        ) from None
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot be read: {exc}", source=label, path=str(path)) from None
    # Arrow keeps undecodable text as binary, and undecodable column names as
    # they are, rather than failing.
    try:
        names = table.column_names
    except UnicodeDecodeError:
        raise _encoding_error(path, label, encoding, column=None) from None
    binary = [n for n, f in zip(names, table.schema, strict=True) if pa.types.is_binary(f.type)]
    if binary:
        raise _encoding_error(path, label, encoding, column=binary[0])
    return _arrow_to_pandas(table)


def _first_ragged_line(
    path: Path, read: pacsv.ReadOptions, parse: pacsv.ParseOptions
) -> int | None:
    # Arrow only knows a bad row's line number when reading on one thread, so
    # the slower single-threaded pass runs only once we know the file is bad.
    lines: list[int] = []

    def handler(row: Any) -> str:
        if row.number is not None:
            lines.append(int(row.number))
        return "error"

    read_one = pacsv.ReadOptions(encoding=read.encoding, use_threads=False)
    parse_one = pacsv.ParseOptions(delimiter=parse.delimiter, invalid_row_handler=handler)
    with contextlib.suppress(pa.ArrowException, UnicodeDecodeError):
        pacsv.read_csv(path, read_options=read_one, parse_options=parse_one)
    return min(lines) if lines else None


def _encoding_error(path: Path, label: str, encoding: str, *, column: str | None) -> SourceError:
    found = _find_bad_byte(path, encoding)
    where = f" in column {column!r}" if column else ""
    with path.open("rb") as handle:
        head = handle.read(2)
    bom = next((enc for mark, enc in _BOMS.items() if head.startswith(mark)), None)
    if bom is not None and not encoding.lower().replace("_", "-").startswith(bom):
        return SourceError(
            f"starts with a {bom} byte-order mark but is read as {encoding}; set "
            f"'encoding: {bom}' in the source spec, or save the file as UTF-8",
            source=label,
            path=str(path),
        )
    if found is None:
        return SourceError(
            f"holds bytes that are not valid {encoding} text{where}; set 'encoding:' in the "
            "source spec (for example 'encoding: latin-1')",
            source=label,
            path=str(path),
        )
    offset, line, byte = found
    return SourceError(
        f"is not valid {encoding}: byte 0x{byte:02x} at offset {offset} (line {line}){where}; "
        "set 'encoding:' in the source spec (for example 'encoding: latin-1' or "
        "'encoding: cp1252')",
        source=label,
        path=str(path),
        line=line,
        offset=offset,
    )


def _find_bad_byte(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """Return (offset, line, byte) of the first byte ``encoding`` cannot decode."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    newlines = 0
    with pa.input_stream(str(path), compression="detect") as stream:
        while chunk := stream.read(_CHUNK):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=False)
            except UnicodeDecodeError as exc:
                data = bytes(exc.object)
                start = offset - pending + exc.start
                line = newlines - data[:pending].count(b"\n") + data[: exc.start].count(b"\n") + 1
                return start, line, data[exc.start]
            offset += len(chunk)
            newlines += chunk.count(b"\n")
    return None


def _arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas(date_as_object=False)
    if len(set(table.column_names)) != table.num_columns:
        return _default_index(frame)  # _finish reports the duplicates
    for field in table.schema:
        # Arrow turns nullable booleans into object columns of True/False/None
        # and all-null columns into None objects; pandas' own readers give
        # "boolean" and float64 NaN, which the rest of setpoint expects.
        if pa.types.is_boolean(field.type) and table.column(field.name).null_count:
            frame[field.name] = frame[field.name].astype("boolean")
        elif pa.types.is_null(field.type):
            frame[field.name] = frame[field.name].astype("float64")
    return _default_index(frame)


def _default_index(frame: pd.DataFrame) -> pd.DataFrame:
    # A named index (pandas writes one into Parquet) is data: keep it as
    # columns. An unnamed one is only row numbers.
    index = frame.index
    default = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    if default and index.name is None:
        return frame
    names = list(index.names)
    keep = all(n is not None for n in names) and not any(n in frame.columns for n in names)
    return frame.reset_index(drop=not keep)


def _finish(frame: pd.DataFrame, *, label: str, what: str) -> pd.DataFrame:
    frame = _default_index(frame)
    if not all(isinstance(c, str) for c in frame.columns):
        frame.columns = pd.Index([str(c) for c in frame.columns], dtype=object)
    blank = [not c.strip() for c in frame.columns]
    if any(blank):
        # A delimiter at the end of every line makes an unnamed, empty column:
        # dropping it loses nothing. An unnamed column with values is an error.
        empty = frame.isna().all().to_numpy(dtype=bool)
        frame = frame.loc[:, ~(np.array(blank) & empty)]
    unnamed = [i + 1 for i, c in enumerate(frame.columns) if not c.strip()]
    if unnamed:
        # Typically a pandas index written by to_csv() without index=False.
        raise SchemaError(
            f"{label}: column(s) at position(s) {', '.join(map(str, unnamed))} have no name; "
            "give every column a header (a pandas index saved with to_csv? use index=False)",
            column="",
            source=label,
            positions=unnamed,
        )
    counts = Counter(frame.columns)
    duplicated = [c for c, n in counts.items() if n > 1]
    if duplicated:
        positions = {c: [i + 1 for i, x in enumerate(frame.columns) if x == c] for c in duplicated}
        listed = "; ".join(
            f"{c!r} at positions {', '.join(map(str, p))}" for c, p in positions.items()
        )
        raise SchemaError(
            f"{label}: duplicate column names: {listed}; rename them so each is unique",
            column=duplicated[0],
            source=label,
            duplicates=positions,
        )
    if len(frame) == 0:
        raise SourceError(what, source=label)
    _check_cells(frame, label)
    return frame


def _check_cells(frame: pd.DataFrame, label: str) -> None:
    """Refuse columns whose values no schema kind can hold: containers, complex numbers."""
    for position, name in enumerate(frame.columns):
        series = frame.iloc[:, position]
        if pd.api.types.is_complex_dtype(series.dtype):
            raise SchemaError(
                f"{label}: column {name!r} holds complex numbers; store the real and "
                "imaginary parts as two numeric columns",
                column=name,
                source=label,
            )
        if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) != "mixed":
            continue
        nested = series.map(lambda v: isinstance(v, _CONTAINERS)).to_numpy(dtype=bool)
        if nested.any():
            row = int(np.argmax(nested))
            kind = type(series.iloc[row]).__name__
            raise SchemaError(
                f"{label}: column {name!r} holds {kind} values (first at row {row}); a column "
                "must hold numbers, text, booleans or date-times; flatten or serialize it",
                column=name,
                source=label,
                row=row,
            )
