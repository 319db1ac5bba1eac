"""A durable job queue in the metadata store: jobs are rows, taken under leases.

``claim`` takes the oldest claimable job of a project for a worker in one write
transaction whose UPDATE is conditional on the job still being claimable (on
PostgreSQL the candidate row is also locked ``FOR UPDATE SKIP LOCKED``; on
SQLite the write lock serializes claims), so two workers never both get a job.
The claim is a lease: the job is the worker's until ``lease_expires``, which the
worker pushes forward with ``heartbeat`` while it works.

Why leases: a worker killed with ``kill -9`` cannot say that it died. It stops
heartbeating instead, its lease runs out, and the next ``claim`` takes the job.
The job's ``stage`` (the last step a worker recorded with ``advance``) and its
``state`` (the results of the steps done) tell the new owner where to resume;
recording a step with ``advance(conn=...)`` in the transaction that has its
effect makes the two happen together or not at all.

Every attempt counts, whether it ended in ``fail`` or in a dead worker. ``fail``
puts the job back with an exponential backoff (``not_before``), a dead worker's
job waits for its lease to run out, and a job whose attempts reached
``max_attempts`` is ``dead`` instead of claimed again: a crash loop stops.

To hold a job is to be its ``owner`` while it is ``running``. A lease that ran
out but that no one took yet is still held (a heartbeat and a claim of one row
serialize on that row, so the one that comes second sees the other's write).
``owner`` must be unique per process, such as ``host:pid:random``. ``advance``,
``complete`` and ``fail`` by a worker that lost its job raise ``ConflictError``
and change nothing; ``cancel`` makes the holder lose it.

Statuses: queued -> running -> done, queued again (retry) or dead; a queued or
running job can be cancelled. Every change of status writes an event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from setpoint._json import jsonable
from setpoint.errors import ConflictError, InvalidParameterError, NotFoundError
from setpoint.registry.events import record_event
from setpoint.store.db import Database
from setpoint.store.tables import jobs, utcnow

__all__ = [
    "ACTIVE",
    "STATUSES",
    "Job",
    "active_job",
    "advance",
    "cancel",
    "claim",
    "complete",
    "enqueue",
    "fail",
    "get_job",
    "heartbeat",
    "list_jobs",
    "postpone",
]

STATUSES = ("queued", "running", "done", "dead", "cancelled")
ACTIVE = ("queued", "running")
_MAX_SECONDS = 366 * 86_400  # a longer lease or backoff is a unit mistake
_MAX_ATTEMPTS = 1_000
_c = jobs.c


@dataclass(frozen=True, slots=True)
class Job:
    """One job. Times are timezone-aware UTC."""

    id: int
    project: str
    kind: str
    key: str
    status: str
    stage: str | None
    payload: dict[str, Any]
    state: dict[str, Any]
    attempts: int
    max_attempts: int
    owner: str | None
    lease_expires: datetime | None
    not_before: datetime
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the job runs under a lease that ran out before ``now``."""
        lease = self.lease_expires
        return self.status == "running" and lease is not None and lease < (now or utcnow())


def _bad(owner: str, parameter: str, expected: str, got: Any) -> InvalidParameterError:
    return InvalidParameterError(owner=owner, parameter=parameter, expected=expected, got=got)


def _text(owner: str, parameter: str, value: Any, limit: int) -> str:
    # PostgreSQL refuses NUL in text, and no backend takes a lone surrogate
    if not isinstance(value, str) or not 1 <= len(value) <= limit or "\x00" in value:
        raise _bad(owner, parameter, f"a text of 1 to {limit} characters", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(owner, parameter, "valid Unicode text", value) from None
    return value


def _free_text(owner: str, parameter: str, value: Any) -> str:
    """An error message or reason, made storable: it must never be what fails."""
    if not isinstance(value, str):
        raise _bad(owner, parameter, "a str", value)
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _seconds(owner: str, parameter: str, value: Any, *, zero: bool) -> timedelta:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if zero else value > 0) or value > _MAX_SECONDS:
        interval = f"{'[' if zero else '('}0, {_MAX_SECONDS}]"
        raise _bad(owner, parameter, f"a number of seconds in {interval}", value)
    return timedelta(seconds=value)


def _now(owner: str, now: Any) -> datetime:
    if now is None:
        return utcnow()
    if not isinstance(now, datetime) or now.tzinfo is None:
        # a naive time would be read as UTC, which it may not be
        raise _bad(owner, "now", "a timezone-aware datetime or None", now)
    return now


def _id(owner: str, job: Any) -> int:
    if isinstance(job, Job):
        return job.id
    if isinstance(job, bool) or not isinstance(job, int):
        raise _bad(owner, "job_id", "a job id (an int) or a Job", job)
    return job


def _document(owner: str, parameter: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(owner, parameter, "a JSON object (a dict)", value)
    return dict(jsonable(value))


def _row(row: Any) -> Job:
    return Job(**row._mapping)


def _read(conn: Connection, job_id: int, *, lock: bool = False) -> Job:
    query = sa.select(jobs).where(_c.id == job_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(kind="job", name=str(job_id))
    return _row(row)


def _update(conn: Connection, where: sa.ColumnElement[bool], values: dict[str, Any]) -> Job | None:
    """The job after the change, or None when ``where`` no longer holds (no change)."""
    row = conn.execute(jobs.update().where(where).values(values).returning(*jobs.c)).first()
    return None if row is None else _row(row)


def _event(conn: Connection, job: Job, kind: str, **details: Any) -> None:
    payload = {"job": job.id, "kind": job.kind, "key": job.key, "status": job.status}
    payload.update(stage=job.stage, attempts=job.attempts, error=job.error, **details)
    record_event(conn, project=job.project, kind=kind, payload=payload)


def enqueue(
    db: Database,
    *,
    project: str,
    kind: str,
    key: str,
    payload: dict[str, Any],
    max_attempts: int = 3,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """A new queued job and True; or the project's job of that ``key``, whatever it is, and False.

    The key makes a repeated call a no-op (the stored payload is kept), so a
    caller names what the job is for (``"retrain:dataset-7"``) and can enqueue it
    again after a crash without looking first.
    """
    row: dict[str, Any] = {
        "project": _text("enqueue", "project", project, 64),
        "kind": _text("enqueue", "kind", kind, 32),
        "key": _text("enqueue", "key", key, 200),
        "payload": _document("enqueue", "payload", payload),
    }
    valid = isinstance(max_attempts, int) and not isinstance(max_attempts, bool)
    if not valid or not 1 <= max_attempts <= _MAX_ATTEMPTS:
        raise _bad("enqueue", "max_attempts", f"an int in [1, {_MAX_ATTEMPTS}]", max_attempts)
    now = _now("enqueue", now)
    row.update(status="queued", state={}, attempts=0, max_attempts=max_attempts)
    row.update(not_before=now, created_at=now, updated_at=now)
    by_key = sa.select(jobs).where(_c.project == project, _c.key == key)
    try:
        with db.write() as conn:
            existing = conn.execute(by_key).first()
            if existing is not None:
                return _row(existing), False
            job = _row(conn.execute(jobs.insert().values(row).returning(*jobs.c)).one())
            # The payload says why the job exists (e.g. the trips of a trigger).
            _event(conn, job, "job_enqueued", payload=job.payload)
            return job, True
    except IntegrityError:
        # a concurrent enqueue of the key committed first (PostgreSQL; SQLite's write lock
        # serializes whole calls): its job is the one asked for
        with db.read() as conn:
            existing = conn.execute(by_key).first()
        if existing is None:
            raise
        return _row(existing), False


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(_c.status == "queued", _c.not_before <= now),
        sa.and_(_c.status == "running", _c.lease_expires < now),
    )


def claim(
    db: Database,
    *,
    project: str,
    owner: str,
    lease_s: float,
    now: datetime | None = None,
    kinds: Collection[str] | None = None,
    crash_backoff_s: float = 0.0,
    max_backoff_s: float = 3600.0,
) -> Job | None:
    """The oldest claimable job of ``project`` (of ``kinds``), now running for ``owner``; or None.

    Claimable: queued and due (``not_before <= now``), or running under a lease
    that ran out (its owner died). A claimable job that used up its attempts is
    made ``dead`` instead, and the next one is looked at. With ``crash_backoff_s``,
    a job whose owner died waits that long after its lease ran out, doubled for
    each attempt it has had (at most ``max_backoff_s``), before it is retried: a
    job that kills its worker each time is not retried at full speed.
    """
    _text("claim", "project", project, 64)
    _text("claim", "owner", owner, 128)
    lease = _seconds("claim", "lease_s", lease_s, zero=False)
    _seconds("claim", "crash_backoff_s", crash_backoff_s, zero=True)
    _seconds("claim", "max_backoff_s", max_backoff_s, zero=True)
    now = _now("claim", now)
    if kinds is not None and (isinstance(kinds, str) or not kinds):
        raise _bad("claim", "kinds", "None or a non-empty collection of kinds", kinds)
    query = sa.select(jobs).where(_c.project == project, _claimable(now))
    if kinds is not None:
        query = query.where(_c.kind.in_([_text("claim", "kinds", k, 32) for k in kinds]))
    with db.write() as conn:
        if conn.dialect.name == "postgresql":
            # a job another claimer has locked is skipped rather than waited for
            query = query.with_for_update(skip_locked=True)
        while (row := conn.execute(query.order_by(_c.id).limit(1)).first()) is not None:
            found = _row(row)
            error = found.error
            if found.status == "running" and found.lease_expires is not None:
                error = f"the lease of {found.owner!r} expired at {found.lease_expires.isoformat()}"
            values: dict[str, Any] = {"lease_expires": None, "updated_at": now}
            due = _crash_due(found, crash_backoff_s, max_backoff_s)
            if found.attempts < found.max_attempts and due is not None and due > now:
                values.update(status="queued", owner=None, not_before=due, error=error)
                waiting = _update(conn, sa.and_(_c.id == found.id, _claimable(now)), values)
                if waiting is not None:
                    _event(conn, waiting, "job_retry")
                query = query.where(_c.id != found.id)
                continue
            if found.attempts >= found.max_attempts:
                gave_up = f"gave up after {found.attempts} attempts: {error or 'no error recorded'}"
                values.update(status="dead", finished_at=now, error=gave_up)
            else:
                values.update(status="running", owner=owner, lease_expires=now + lease)
                values.update(attempts=_c.attempts + 1, error=error)
            # conditional, so that a claim that lost a race changes nothing (SQLite's write
            # lock and PostgreSQL's row lock make that impossible; this keeps it so)
            job = _update(conn, sa.and_(_c.id == found.id, _claimable(now)), values)
            if job is None:
                query = query.where(_c.id != found.id)
            elif job.status == "dead":
                _event(conn, job, "job_dead")
            else:
                _event(conn, job, "job_claimed", owner=owner)
                return job
    return None


def _crash_due(job: Job, backoff_s: float, max_backoff_s: float) -> datetime | None:
    """When a job whose owner died may run again, or None if it was not a crash."""
    if job.status != "running" or job.lease_expires is None or backoff_s <= 0:
        return None
    delay = min(float(max_backoff_s), backoff_s * 2.0 ** min(job.attempts - 1, 1000))
    return job.lease_expires + timedelta(seconds=delay)


def _held(job_id: int, owner: str) -> sa.ColumnElement[bool]:
    return sa.and_(_c.id == job_id, _c.status == "running", _c.owner == owner)


def heartbeat(
    db: Database, job: Job | int, *, owner: str, lease_s: float, now: datetime | None = None
) -> bool:
    """Extend ``owner``'s lease to ``now + lease_s``; False (and nothing changed) if it lost it."""
    job_id = _id("heartbeat", job)
    lease = _seconds("heartbeat", "lease_s", lease_s, zero=False)
    now = _now("heartbeat", now)
    with db.write() as conn:
        values = {"lease_expires": now + lease, "updated_at": now}
        return _update(conn, _held(job_id, owner), values) is not None


def _by_holder(
    db: Database,
    conn: Connection | None,
    job_id: int,
    owner: str,
    action: str,
    change: Callable[[Job], dict[str, Any]],
) -> Job:
    """Apply ``change(job)`` if ``owner`` holds the job; else ``ConflictError``, nothing changed."""

    def body(conn: Connection) -> Job:
        # locked, so that ``change`` sees the row that it replaces (SQLite: the write lock)
        job = _read(conn, job_id, lock=True)
        changed = _update(conn, _held(job_id, owner), change(job))
        if changed is None:
            holder = f" by {job.owner!r}" if job.status == "running" else ""
            raise ConflictError(
                f"Cannot {action} job {job_id}: {owner!r} does not hold it "
                f"(it is {job.status}{holder}).",
                job=job_id,
                owner=owner,
                status=job.status,
                holder=job.owner,
            )
        retried = "job_retry" if changed.status == "queued" else "job_dead"
        kinds = {"advance": "job_stage", "complete": "job_done", "postpone": "job_waiting"}
        kind = kinds.get(action, retried)
        _event(conn, changed, kind, owner=owner)
        return changed

    if conn is not None:
        return body(conn)
    with db.write() as own:
        return body(own)


def advance(
    db: Database,
    job_id: Job | int,
    *,
    owner: str,
    stage: str,
    state: dict[str, Any],
    now: datetime | None = None,
    conn: Connection | None = None,
) -> Job:
    """Record that ``stage`` is done and merge ``state`` (its top-level keys) into the job's.

    With ``conn`` (of ``db.write()``) this is part of the caller's transaction, so
    the ``ConflictError`` of a lost job also undoes what the caller wrote in it.
    """
    _text("advance", "stage", stage, 32)
    document = _document("advance", "state", state)
    now = _now("advance", now)

    def change(job: Job) -> dict[str, Any]:
        return {"stage": stage, "state": {**job.state, **document}, "updated_at": now}

    return _by_holder(db, conn, _id("advance", job_id), owner, "advance", change)


def complete(
    db: Database,
    job_id: Job | int,
    *,
    owner: str,
    state: dict[str, Any] | None = None,
    now: datetime | None = None,
    conn: Connection | None = None,
) -> Job:
    """Mark the job done, merging ``state`` if given; ``ConflictError`` if ``owner`` lost it."""
    document = {} if state is None else _document("complete", "state", state)
    now = _now("complete", now)
    done = {"status": "done", "lease_expires": None, "finished_at": now, "updated_at": now}

    def change(job: Job) -> dict[str, Any]:
        return {**done, "state": {**job.state, **document}}

    return _by_holder(db, conn, _id("complete", job_id), owner, "complete", change)


def postpone(
    db: Database,
    job_id: Job | int,
    *,
    owner: str,
    until: datetime,
    stage: str | None = None,
    state: dict[str, Any] | None = None,
    now: datetime | None = None,
    conn: Connection | None = None,
) -> Job:
    """Give the job back until ``until``, recording ``stage`` and ``state`` if given.

    For a job that waits on the world (a shadow period, a watch) rather than one
    that failed: the claim that is handed back does not count as an attempt.
    """
    document = {} if state is None else _document("postpone", "state", state)
    if stage is not None:
        _text("postpone", "stage", stage, 32)
    until = _now("postpone", until)
    now = _now("postpone", now)

    def change(job: Job) -> dict[str, Any]:
        return {
            "status": "queued",
            "owner": None,
            "lease_expires": None,
            "not_before": until,
            "attempts": max(job.attempts - 1, 0),
            "stage": job.stage if stage is None else stage,
            "state": {**job.state, **document},
            "updated_at": now,
        }

    return _by_holder(db, conn, _id("postpone", job_id), owner, "postpone", change)


def fail(
    db: Database,
    job_id: Job | int,
    *,
    owner: str,
    error: str,
    now: datetime | None = None,
    backoff_s: float = 30.0,
    max_backoff_s: float = 3600.0,
) -> Job:
    """Record ``error``; queue the job again after a backoff, or make it dead after its last try.

    The backoff doubles with each attempt: ``min(max_backoff_s, backoff_s * 2**(attempts-1))``.
    """
    error = _free_text("fail", "error", error)
    _seconds("fail", "backoff_s", backoff_s, zero=True)
    _seconds("fail", "max_backoff_s", max_backoff_s, zero=True)
    now = _now("fail", now)

    def change(job: Job) -> dict[str, Any]:
        values: dict[str, Any] = {"error": error, "lease_expires": None, "updated_at": now}
        if job.attempts >= job.max_attempts:
            return {**values, "status": "dead", "finished_at": now}
        # in floats, which overflow to inf rather than raise (as a timedelta would)
        delay = min(float(max_backoff_s), backoff_s * 2.0 ** min(job.attempts - 1, 1000))
        not_before = now + timedelta(seconds=delay)
        return {**values, "status": "queued", "owner": None, "not_before": not_before}

    return _by_holder(db, None, _id("fail", job_id), owner, "fail", change)


def cancel(db: Database, job_id: Job | int, *, reason: str, now: datetime | None = None) -> Job:
    """Cancel a queued or running job, keeping ``reason`` as its ``error``.

    A job already cancelled is returned as it is; ``ConflictError`` for one done or dead.
    """
    job_id = _id("cancel", job_id)
    reason = _free_text("cancel", "reason", reason)
    now = _now("cancel", now)
    with db.write() as conn:
        job = _read(conn, job_id, lock=True)
        if job.status == "cancelled":
            return job
        if job.status not in ACTIVE:
            raise ConflictError(
                f"Job {job_id} is already {job.status}; only a queued or running job can be "
                "cancelled.",
                job=job_id,
                status=job.status,
            )
        values = {"status": "cancelled", "error": reason, "lease_expires": None}
        changed = _update(conn, _c.id == job_id, {**values, "finished_at": now, "updated_at": now})
        if changed is None:  # cannot be: the row (PostgreSQL) or the store (SQLite) is locked
            raise ConflictError(f"Job {job_id} changed while being cancelled.", job=job_id)
        _event(conn, changed, "job_cancelled")
        return changed


def get_job(db: Database, *, project: str, job_id: int) -> Job:
    """The project's job ``job_id``; ``NotFoundError`` if it has none."""
    with db.read() as conn:
        row = conn.execute(sa.select(jobs).where(_c.id == job_id, _c.project == project)).first()
    if row is None:
        raise NotFoundError(kind="job", name=f"{project}#{job_id}")
    return _row(row)


def list_jobs(
    db: Database, *, project: str, status: str | None = None, limit: int = 50
) -> list[Job]:
    """The project's jobs (of ``status``), newest first."""
    if status is not None and status not in STATUSES:
        raise _bad("list_jobs", "status", f"None or one of {list(STATUSES)}", status)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise _bad("list_jobs", "limit", "an int >= 1", limit)
    query = sa.select(jobs).where(_c.project == project)
    if status is not None:
        query = query.where(_c.status == status)
    with db.read() as conn:
        rows = conn.execute(query.order_by(_c.id.desc()).limit(limit)).all()
    return [_row(row) for row in rows]


def active_job(db: Database, *, project: str, kind: str) -> Job | None:
    """The oldest queued or running job of ``kind``, or None."""
    query = sa.select(jobs).where(_c.project == project, _c.kind == kind, _c.status.in_(ACTIVE))
    with db.read() as conn:
        row = conn.execute(query.order_by(_c.id).limit(1)).first()
    return None if row is None else _row(row)
