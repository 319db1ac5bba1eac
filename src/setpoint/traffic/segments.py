"""The local prediction log's files: the record schema, frames, and reading and sealing segments.

A raw segment is a run of frames, ``<len u32><crc32 u32><json>\\n``; a sealed one
is the same records as Parquet. ``local_log.py`` writes raw segments; this module
holds what a writer and any reader (monitoring, the sealing process) share.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from setpoint._json import dumps, loads
from setpoint.errors import InvalidParameterError, PredictionLogCorruptError

__all__ = [
    "MAX_RECORD",
    "SCHEMA",
    "encode",
    "frame",
    "fsync_dir",
    "micros",
    "read_log",
    "read_logs",
    "scan",
    "seal_segments",
    "to_table",
]

_OWNER = "LocalPredictionLog"

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("index", pa.int32()),  # the record's position in its request
        ("entity_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model_version", pa.string()),
        ("role", pa.string()),  # champion, canary or shadow
        ("inputs", pa.string()),  # JSON text: inputs differ by model, a fixed schema would not fit
        ("output", pa.string()),
        ("latency_ms", pa.float64()),
        # the client's X-Request-ID, for tracing: the server names every request itself
        ("client_request_id", pa.string()),
    ]
)

_HEADER = struct.Struct("<II")
MAX_RECORD = 16 * 2**20  # a length above this is a torn header, not a record


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload + b"\n"


def scan(data: bytes) -> tuple[list[bytes], int]:
    """The payloads of the valid frames at the start of ``data`` and where they end."""
    payloads: list[bytes] = []
    pos, size = 0, len(data)
    while size - pos >= _HEADER.size:
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        # length 0 is refused: a zero-filled tail (crash after the size grew, before the
        # data blocks were written) would otherwise pass, since crc32(b"") == 0
        if not 0 < length <= MAX_RECORD or end >= size or data[end] != 0x0A:
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        pos = end + 1
    return payloads, pos


def fsync_dir(path: Path) -> None:
    # a created, renamed or deleted file is durable only once its directory is fsynced
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def micros(value: object, parameter: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # naive times are taken as UTC, as the server logs in UTC
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1_000_000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * 1_000_000)
    raise InvalidParameterError(
        owner=_OWNER, parameter=parameter, expected="a datetime or epoch seconds", got=value
    )


def _json(value: Any, parameter: str) -> str:
    try:
        return dumps(value).decode()
    except (TypeError, ValueError) as exc:  # orjson refuses nesting deeper than 254 levels
        raise InvalidParameterError(
            owner=_OWNER, parameter=f"record[{parameter!r}]", expected="JSON", got=str(exc)
        ) from None


def encode(record: Mapping[str, Any]) -> bytes:
    """One frame; runs in the caller's thread so encoding is parallel and errors are local."""
    for key in ("request_id", "model_version", "inputs", "output", "latency_ms"):
        if key not in record:
            raise InvalidParameterError(
                owner=_OWNER, parameter="record", expected=f"a mapping with {key!r}", got=record
            )
    entity = record.get("entity_id")
    when = record.get("time")
    client = record.get("client_request_id")
    row = {
        "request_id": str(record["request_id"]),
        "index": int(record.get("index", 0)),
        "entity_id": None if entity is None else str(entity),
        "time": time.time_ns() // 1000 if when is None else micros(when, "record['time']"),
        "model_version": str(record["model_version"]),
        "role": str(record.get("role", "champion")),
        "inputs": _json(record["inputs"], "inputs"),
        "output": _json(record["output"], "output"),
        "latency_ms": float(record["latency_ms"]),
        "client_request_id": None if client is None else str(client),
    }
    payload = dumps(row)
    if len(payload) > MAX_RECORD:
        raise InvalidParameterError(
            owner=_OWNER, parameter="record", expected="at most 16 MiB as JSON", got=len(payload)
        )
    return frame(payload)


def to_table(payloads: list[bytes]) -> pa.Table:
    rows = [loads(p) for p in payloads]
    # ``get``: frames written before a column was added lack it
    return pa.table(
        {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in SCHEMA}, SCHEMA
    )


def read_log(directory: Path) -> pa.Table:
    """Every record of the log in ``directory``, read without taking it over.

    For readers (monitoring) beside a live server: sealed Parquet segments plus
    the valid frames of the raw ones. The writer may be mid-batch in its live
    segment, so a bad frame at the end of the newest raw segment is the
    unacknowledged tail and is skipped; a bad frame anywhere else is corruption.
    """
    directory = Path(directory)
    sealed = {int(p.stem[4:]): p for p in directory.glob("seg-*.parquet")}
    raw = {int(p.stem[4:]): p for p in directory.glob("seg-*.log")}
    newest = max(raw, default=-1)
    tables: list[pa.Table] = []
    for number in sorted(sealed.keys() | raw.keys()):
        if number in sealed:  # a sealed segment wins over its raw leftover
            tables.append(pq.read_table(sealed[number], schema=SCHEMA))
            continue
        try:
            data = raw[number].read_bytes()
        except FileNotFoundError:  # sealed and removed since the listing
            tables.append(pq.read_table(_sealed_path(raw[number]), schema=SCHEMA))
            continue
        payloads, end = scan(data)
        if end != len(data) and number != newest:
            raise PredictionLogCorruptError("bad length or CRC", path=str(raw[number]), offset=end)
        tables.append(to_table(payloads))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def read_logs(root: Path) -> pa.Table:
    """The logs of every worker under ``root`` (``<home>/predictions/<project>``), by time."""
    root = Path(root)
    folders = sorted(p for p in root.glob("w*") if p.is_dir()) if root.is_dir() else []
    tables = [read_log(folder) for folder in folders]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.sort_by("time") if table.num_rows else table


def seal_segments(directory: Path, *, below: int) -> list[Path]:
    """Seal the raw segments numbered below ``below`` into Parquet; return the new files.

    A segment the writer has moved past is never written again, so this may run
    in another process than the writer's (the server does so, so that decoding a
    64 MiB segment never holds the serving process's GIL). Each Parquet file is
    durable before its raw segment is removed; an interrupted seal is finished by
    ``LocalPredictionLog``'s recovery.
    """
    directory = Path(directory)
    sealed: list[Path] = []
    for path in sorted(directory.glob("seg-*.log")):
        number = int(path.stem[4:])
        if number >= below:
            continue
        data = path.read_bytes()
        payloads, end = scan(data)
        if end != len(data):
            raise PredictionLogCorruptError("bad length or CRC", path=str(path), offset=end)
        if payloads:
            target = _sealed_path(path)
            tmp = target.with_suffix(".parquet.tmp")
            with tmp.open("wb") as f:
                pq.write_table(to_table(payloads), f)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(target)
            fsync_dir(directory)  # the Parquet is durable before the raw goes
            sealed.append(target)
        path.unlink()
        fsync_dir(directory)
    return sealed


def _sealed_path(raw: Path) -> Path:
    return raw.with_suffix(".parquet")
