"""What the disk or the database refused, as one ``StoreFaultError`` a user can act on.

A full disk, a read-only mount or a missing permission is no bug: the user must
free space, remount or move the store. Each fault is turned into an error here,
where it happens, so the message can name the very file or database and the
setting that moves it, and no caller has to catch ``OSError`` wholesale.
"""

from __future__ import annotations

import errno
import os

from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from setpoint.errors import StoreFaultError

__all__ = ["database_fault", "disk_fault"]

# errno -> (the cause in a few words, what to do about it)
_SPACE = "free space there (or raise the quota)"
_READ_ONLY = "remount it read-write"
_DENIED = "give this user write access to it"
_ADVICE = {
    errno.ENOSPC: ("no space left on device", _SPACE),
    errno.EDQUOT: ("disk quota exceeded", _SPACE),
    errno.EROFS: ("read-only file system", _READ_ONLY),
    errno.EACCES: ("permission denied", _DENIED),
    errno.EPERM: ("operation not permitted", _DENIED),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "point it at a folder"),
    errno.EEXIST: ("a file is in the way of a folder", "point it at a folder"),
}

# SQLite's own words for the same faults (sqlite3.OperationalError carries no errno).
_SQLITE = (
    ("database or disk is full", "no space left on device", _SPACE),
    ("readonly database", "read-only database", _READ_ONLY + " or " + _DENIED),
    ("unable to open database file", "cannot open the database file", _DENIED),
    ("disk i/o error", "disk I/O error", "check the disk"),
)


def disk_fault(
    exc: OSError, *, path: str, what: str, setting: str, doing: str = "write"
) -> StoreFaultError:
    """``exc``, met while ``doing`` ("write", "read") ``path`` of ``what`` (e.g. "the
    artifact store"), as a user error.

    ``setting`` names the variable that puts that part of the store elsewhere.
    """
    where = str(exc.filename) if exc.filename else path
    cause, advice = _ADVICE.get(
        exc.errno or 0, ((exc.strerror or str(exc)).lower(), "check the disk")
    )
    return StoreFaultError(
        f"Cannot {doing} {what} at {where}: {cause}. To go on, {advice}, or move it with "
        f"{setting}; then run the command again.",
        path=where,
        cause=cause,
    )


def database_fault(exc: DBAPIError, *, url: str, doing: str) -> StoreFaultError:
    """A driver's operational error on the metadata database ``url``, met while ``doing``
    ("open", "read", "write to") it, as a user error."""
    orig = exc.orig if exc.orig is not None else exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    where = _database_path(url)
    lowered = detail.lower()
    known = next(((c, a) for words, c, a in _SQLITE if words in lowered), None)
    mounted = _mount_fault(where) if known is not None else None
    if mounted is not None:
        # SQLite says "unable to open" for a read-only disk too: the disk says which.
        cause, advice = mounted
    elif known is not None:
        cause, advice = known
    elif "no space left" in lowered or "could not extend file" in lowered:
        cause, advice = "no space left on device", _SPACE
    elif "read-only" in lowered or "read only" in lowered:
        cause, advice = "read-only database", _READ_ONLY
    else:
        cause, advice = detail, "check that the database is up and reachable"
    return StoreFaultError(
        f"Cannot {doing} the metadata store {where}: {cause} ({detail}). To go on, {advice}, or "
        "move it with SETPOINT_DB_URL (or SETPOINT_HOME); then run the command again.",
        path=where,
        cause=cause,
    )


def _mount_fault(path: str) -> tuple[str, str] | None:
    """A read-only or full filesystem under the SQLite file ``path``, if it is one."""
    folder = os.path.dirname(path) or "."
    try:
        disk = os.statvfs(folder)
    except OSError:
        return None
    if disk.f_flag & os.ST_RDONLY:
        return _ADVICE[errno.EROFS]
    if disk.f_bavail == 0:
        return _ADVICE[errno.ENOSPC]
    return None


def _database_path(url: str) -> str:
    """The SQLite file of ``url``, or the URL with its password hidden."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)
