"""Server logs that no client can inflate: repeats of one kind of record are held back.

A client sending a thousand bad requests must not make the server write a
thousand lines, let alone a thousand tracebacks. ``Throttle`` lets the first
record of each kind through per interval and counts the others; the next one
of that kind let through says how many were held back. A record's kind is its
logger, level and message and, for a record with an exception, the exception's
type and the line that raised it: a bug on one endpoint is logged with its
traceback once a minute, however often a client triggers it.

``throttle_logs`` puts one throttle on everything a worker of ``setpoint serve``
logs: uvicorn's own records (a malformed request, an exception that escaped the
application), asyncio's (a failed ``accept``) and setpoint's.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

__all__ = ["INTERVAL_S", "Throttle", "throttle_logs"]

INTERVAL_S = 60.0
_MOST_KINDS = 1024  # a bound on memory, whatever messages a client makes the server write
_OTHER_LOGGERS = ("uvicorn.error", "asyncio")

Kind = tuple[str, int, str, str, str]


class Throttle(logging.Filter):
    """Let one record of each kind through per ``interval`` seconds; count the rest."""

    def __init__(
        self, *, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._kinds: dict[Kind, list[float]] = {}  # kind -> [let through until, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        kind = _kind(record)
        now = self._clock()
        seen = self._kinds.get(kind)
        if seen is not None and now < seen[0]:
            seen[1] += 1
            return False
        held = 0 if seen is None else int(seen[1])
        self._kinds.pop(kind, None)
        if len(self._kinds) >= _MOST_KINDS:
            del self._kinds[next(iter(self._kinds))]  # the kind let through longest ago
        self._kinds[kind] = [now + self.interval, 0]
        if held:
            record.msg = (
                f"{record.getMessage()} (and {held} more like this in the last "
                f"{self.interval:g} s, not logged)"
            )
            record.args = None
        return True


def _kind(record: logging.LogRecord) -> Kind:
    error, where = "", ""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        error = type(exc).__qualname__
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
    return (record.name, record.levelno, record.getMessage()[:200], error, where)


def throttle_logs(*, interval: float = INTERVAL_S) -> Throttle:
    """Throttle this process's server logs (idempotent); the one ``Throttle`` used."""
    package = logging.getLogger("setpoint")
    for handler in package.handlers:
        for found in handler.filters:
            if isinstance(found, Throttle):
                return found
    throttle = Throttle(interval=interval)
    # setpoint's loggers had no handler (Python's last resort printed them): one on the
    # package's logger, filtered, reaches every module's records.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:    %(name)s: %(message)s"))
    handler.addFilter(throttle)
    package.addHandler(handler)
    package.propagate = False
    for name in _OTHER_LOGGERS:
        # A logger's filter sees only the records made at it: these loggers make their own.
        logging.getLogger(name).addFilter(throttle)
    return throttle
