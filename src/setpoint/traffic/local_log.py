"""The durable prediction log: every prediction is on disk before its response is sent.

Callers (threads or asyncio tasks) hand records to one writer thread, which
writes each batch with one synchronous ``write`` (group commit: the segment is
opened ``O_DSYNC``, so the write returns once the data and the file size are on
disk, as ``write`` then ``fdatasync`` would, in one system call) and only then
resolves the callers' futures. On disk::

    <dir>/LOCK                      flock: one process owns the log
    <dir>/seg-000000000001.log      raw segments: frames of <len u32><crc32 u32><json>\\n
    <dir>/seg-000000000001.parquet  sealed segments (``roll``)

Only the last raw segment can have a torn tail (the batch being written when the
process died, never acknowledged); ``LocalPredictionLog`` truncates it on open. A bad
frame anywhere else is corruption and raises ``PredictionLogCorruptError``.

A write that fails (a full disk, an I/O error) fails the callers of its batch,
and the log refuses appends until it can write again: the writer cuts the
segment back to its last acknowledged byte, so that neither a reader nor the
next write meets the half-written batch, then probes every ``retry_s`` seconds
for room and takes appends again once a probe succeeds. Retrying is sound here
because a batch is always rewritten from the writer's own memory into a file cut
back to bytes that were durable when they were acknowledged; nothing relies on
what the page cache kept of a failed write.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from setpoint.errors import InvalidParameterError, PredictionLogCorruptError, StoreError
from setpoint.traffic.segments import (
    SCHEMA,
    encode,
    fsync_dir,
    micros,
    scan,
    seal_segments,
    to_table,
)

__all__ = ["LocalPredictionLog"]

log = logging.getLogger(__name__)

_MAX_BATCH = 4096  # never wait for more than this many records
_OWNER = "LocalPredictionLog"
_PROBE_BYTES = 64 * 2**10  # room a probe must find before appends are taken again


def _open_segment(path: Path) -> int:
    # One system call per batch instead of write + fdatasync: each time the writer thread
    # blocks it must win the GIL back from the event loop, and that handoff is what a
    # batch costs the serving thread.
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_DSYNC)


class LocalPredictionLog:
    """An append-only, group-committed log of predictions in ``directory``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, LocalPredictionLog(Path(d)) as plog:
    ...     plog.append_many([{"request_id": "r1", "model_version": "3", "inputs": {"x": 1},
    ...                        "output": 0.5, "latency_ms": 1.2}])
    ...     plog.read().column("request_id").to_pylist()
    ['r1']
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 2**20,
        max_delay_ms: float = 2.0,
        retry_s: float = 0.5,
    ) -> None:
        if segment_bytes < 1:
            raise InvalidParameterError(
                owner=_OWNER, parameter="segment_bytes", expected="positive", got=segment_bytes
            )
        if not 0 <= max_delay_ms <= 1000:
            raise InvalidParameterError(
                owner=_OWNER, parameter="max_delay_ms", expected="in [0, 1000]", got=max_delay_ms
            )
        if not 0 < retry_s <= 60:
            raise InvalidParameterError(
                owner=_OWNER, parameter="retry_s", expected="in (0, 60]", got=retry_s
            )
        self.directory = Path(directory)
        self.retry_s = retry_s
        self.segment_bytes = segment_bytes
        self.max_delay = max_delay_ms / 1000
        self.directory.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.directory.parent)

        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(
                f"{self.directory}: the prediction log is open in another process",
                path=str(self.directory),
            ) from None

        self._files = threading.RLock()  # roll and read see the same set of files
        self._cond = threading.Condition()
        self._queue: list[tuple[bytes, Future[None]]] = []
        self._rotations: list[Future[None]] = []
        self._target = 1  # the batch size to wait for: the last batch's size
        self._asleep = False  # the writer waits for any append, not for a batch
        self._closing = False
        self._failed: BaseException | None = None  # a bug in the writer: for good
        self._trouble: OSError | None = None  # a write failed: refused until a probe succeeds
        self._cut = False  # the live segment may hold a failed write after ``_durable``

        self.truncated_bytes = self._recover()
        self._segment, self._durable = self._open_last()
        self._fd = _open_segment(self._path(self._segment, "log"))
        self._writer = threading.Thread(target=self._run, name="predlog-writer", daemon=True)
        self._writer.start()

    # -- files --------------------------------------------------------------------------------

    def _path(self, number: int, suffix: str) -> Path:
        return self.directory / f"seg-{number:012d}.{suffix}"

    def _numbers(self, suffix: str) -> list[int]:
        return sorted(int(p.stem[4:]) for p in self.directory.glob(f"seg-*.{suffix}"))

    def _recover(self) -> int:
        """Finish an interrupted ``roll`` and cut the torn tail of the last segment."""
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()  # a Parquet file that was never renamed into place
        sealed = set(self._numbers("parquet"))
        for number in self._numbers("log"):
            if number in sealed:  # the Parquet was durable before the raw segment's deletion
                self._path(number, "log").unlink()
        fsync_dir(self.directory)
        raw = self._numbers("log")
        if not raw:
            return 0
        path = self._path(raw[-1], "log")
        data = path.read_bytes()
        _, end = scan(data)
        if end == len(data):
            return 0
        # everything after ``end`` belongs to a batch whose fsync never returned, so no
        # caller was told it is stored
        log.warning("%s: truncating a torn tail of %d bytes", path, len(data) - end)
        with path.open("r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
        return len(data) - end

    def _open_last(self) -> tuple[int, int]:
        raw = self._numbers("log")
        if raw:
            size = self._path(raw[-1], "log").stat().st_size
            if size < self.segment_bytes:
                return raw[-1], size
        numbers = raw + self._numbers("parquet")
        return self._create(max(numbers, default=0) + 1), 0

    def _create(self, number: int) -> int:
        # not O_EXCL: a rotation that failed on a full disk may have left this (empty) file,
        # and no other process writes here (the flock)
        os.close(os.open(self._path(number, "log"), os.O_WRONLY | os.O_CREAT, 0o644))
        fsync_dir(self.directory)  # the segment must exist after a crash before it holds acks
        return number

    # -- writing ------------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> Future[None]:
        """Queue ``record``; the future resolves once it is fsynced (``asyncio.wrap_future``)."""
        return self.append_batch([record])

    def append_batch(self, records: Iterable[Mapping[str, Any]]) -> Future[None]:
        """Queue ``records`` as one unit: all are written by the same ``write``, or none.

        Every record is encoded before any is queued, so a record that cannot be
        encoded leaves nothing of its batch in the log.
        """
        data = b"".join(encode(record) for record in records)
        future: Future[None] = Future()
        if not data:
            future.set_result(None)
            return future
        with self._cond:
            self._check_open()
            self._queue.append((data, future))
            queued = len(self._queue)
            # a writer waiting for a batch is woken once, when the batch is complete
            if queued == self._target or (queued == 1 and self._asleep):
                self._cond.notify()
        return future

    @property
    def backlog(self) -> int:
        """Requests queued and not yet durable (for the server's metrics)."""
        return len(self._queue)

    def unavailable(self) -> StoreError | None:
        """The error appends raise while the log cannot write, or None when it can."""
        with self._cond:
            trouble = self._trouble
        return None if trouble is None else self._unavailable(trouble)

    def _unavailable(self, trouble: BaseException) -> StoreError:
        error = StoreError(
            f"The prediction log {self.directory} cannot be written: {trouble}; predictions "
            f"are refused until it can (it retries every {self.retry_s:g} s)",
            path=str(self.directory),
        )
        error.__cause__ = trouble
        return error

    async def aappend(self, record: Mapping[str, Any]) -> None:
        """``append`` for asyncio: returns once ``record`` is durable."""
        await asyncio.wrap_future(self.append(record))

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append ``records`` and return only after all of them are fsynced."""
        futures = [self.append(r) for r in records]
        for future in futures:
            future.result()

    def _check_open(self) -> None:
        if self._failed is not None:
            raise StoreError(
                f"{self.directory}: the prediction log failed: {self._failed}",
                path=str(self.directory),
            ) from self._failed
        if self._closing:
            raise StoreError(f"{self.directory}: the prediction log is closed")
        if self._trouble is not None:
            raise self._unavailable(self._trouble)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # not an I/O error the log waits out: fail for good
            with self._cond:
                self._failed = exc
                pending, self._queue = self._queue, []
                rotations, self._rotations = self._rotations, []
            for _, future in pending:
                future.set_exception(exc)
            for future in rotations:
                future.set_exception(exc)
            log.exception("%s: the prediction log's writer stopped", self.directory)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._trouble is not None:
                    # appends are refused meanwhile, so nothing waits in the queue
                    if not self._closing:
                        self._cond.wait(self.retry_s)
                    if self._closing:
                        return
                    batch: list[tuple[bytes, Future[None]]] = []
                    rotations: list[Future[None]] = []
                else:
                    # wait up to max_delay for as many requests as the last batch had, so
                    # that one synchronous write acknowledges all of them; appends wake the
                    # writer only when that many are queued, as every wake-up costs the
                    # serving thread a GIL handoff. A lone caller (target 1) never waits.
                    deadline = time.monotonic() + self.max_delay
                    while len(self._queue) < self._target and not (
                        self._rotations or self._closing
                    ):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    if not (self._queue or self._rotations or self._closing):
                        self._asleep = True  # a quiet spell: the next append wakes the writer
                        while not (self._queue or self._rotations or self._closing):
                            self._cond.wait()
                        self._asleep = False
                        continue  # then wait for the rest of a batch, from now
                    batch, self._queue = self._queue, []
                    if batch:
                        self._target = min(len(batch), _MAX_BATCH)
                    rotations, self._rotations = self._rotations, []
                    if not batch and not rotations and self._closing:
                        return
            if self._trouble is not None:
                self._probe()
                continue
            try:
                if batch:
                    self._write(b"".join(data for data, _ in batch))
            except OSError as exc:
                self._fail(exc, [f for _, f in batch] + rotations)
                continue
            try:
                if rotations or self._durable >= self.segment_bytes:
                    self._rotate()
            except OSError as exc:
                self._fail(exc, rotations)
                rotations = []
            finally:  # the batch is durable, whether or not a new segment could be made
                for _, future in batch:
                    future.set_result(None)
            for future in rotations:
                future.set_result(None)

    def _fail(self, exc: OSError, futures: list[Future[None]]) -> None:
        """Fail ``futures`` and refuse appends until a probe finds the log writable again."""
        log.error("%s: the prediction log cannot be written: %s", self.directory, exc)
        error = self._unavailable(exc)
        with self._cond:
            self._trouble = exc
            self._cut = True
            pending, self._queue = self._queue, []
            rotations, self._rotations = self._rotations, []
        for future in futures + [f for _, f in pending] + rotations:
            future.set_exception(error)

    def _probe(self) -> None:
        """Cut the half-written batch, then check there is room; clear the trouble if so."""
        try:
            if self._cut:
                # The failed write may have left part of its batch, perhaps whole frames,
                # after the last acknowledged byte: none of it was acknowledged, and the
                # next batch must not follow it.
                os.ftruncate(self._fd, self._durable)
                os.fsync(self._fd)
                self._cut = False
            probe = self.directory / "probe.tmp"  # removed on open if a crash leaves it
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DSYNC, 0o644)
            try:
                written = os.write(fd, bytes(_PROBE_BYTES))
            finally:
                os.close(fd)
                probe.unlink()
            if written < _PROBE_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if self._durable >= self.segment_bytes:
                self._rotate()
        except OSError as exc:
            with self._cond:
                self._trouble = exc
            return
        log.warning("%s: the prediction log can be written again", self.directory)
        with self._cond:
            self._trouble = None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]  # durable on return (O_DSYNC)
        with self._cond:
            self._durable += len(data)

    def _rotate(self) -> None:
        if self._durable == 0:
            return
        # no need for ``_files``: readers snapshot (segment, durable) and ignore later segments
        number = self._create(self._segment + 1)
        fd = _open_segment(self._path(number, "log"))  # before closing the old one: a failure
        with contextlib.suppress(OSError):  # here leaves the writer on a segment it can cut
            os.close(self._fd)
        self._fd = fd
        with self._cond:
            self._segment, self._durable = number, 0

    # -- sealing and reading ------------------------------------------------------------------

    def roll(self, *, include_active: bool = False) -> list[Path]:
        """Seal every full raw segment into Parquet; return the new Parquet files.

        With ``include_active`` the live segment is closed first and sealed too.
        """
        if include_active:
            future: Future[None] = Future()
            with self._cond:
                self._check_open()
                self._rotations.append(future)
                self._cond.notify()
            future.result()
        with self._files:
            with self._cond:
                active = self._segment
            return seal_segments(self.directory, below=active)

    @property
    def active_segment(self) -> int:
        """The number of the segment being written; every lower one is immutable."""
        with self._cond:
            return self._segment

    def _read_raw(self, path: Path, size: int) -> pa.Table:
        with path.open("rb") as f:
            data = f.read(size)
        payloads, end = scan(data)
        if end != len(data):
            raise PredictionLogCorruptError("bad length or CRC", path=str(path), offset=end)
        return to_table(payloads)

    def read(self, *, since: datetime | float | None = None) -> pa.Table:
        """Every durable record (sealed and live), oldest segment first; ``time >= since``."""
        with self._files:
            with self._cond:
                active, durable = self._segment, self._durable
            sealed = set(self._numbers("parquet"))
            tables = [
                pq.read_table(self._path(n, "parquet"), schema=SCHEMA) for n in sorted(sealed)
            ]
            for number in self._numbers("log"):
                # later segments were created after this snapshot; sealed ones are read above
                if number <= active and number not in sealed:
                    path = self._path(number, "log")
                    try:
                        size = durable if number == active else path.stat().st_size
                        tables.append(self._read_raw(path, size))
                    except FileNotFoundError:  # sealed by another process since the listing
                        tables.append(pq.read_table(self._path(number, "parquet"), schema=SCHEMA))
        table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        if since is not None:
            bound = pa.scalar(micros(since, "since"), SCHEMA.field("time").type)
            table = table.filter(pc.greater_equal(table["time"], bound))
        return table

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued, stop the writer and release the directory."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify()
        self._writer.join()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        os.close(self._lock_fd)  # closing the descriptor releases the flock

    def __enter__(self) -> LocalPredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
