"""Bounds on what one connection may hold: the guard uvicorn's HTTP/1.1 protocol lacks.

uvicorn closes a keep-alive connection that stays idle after an answer
(``serving.keep_alive_timeout``) and nothing else: a client that connects and
sends nothing, half a request line, or headers without the body they announce
holds a socket and a file descriptor for as long as it likes, and a few
thousand such sockets starve every real request of descriptors.
``GuardedProtocol`` is uvicorn's httptools protocol with three more bounds:

- ``serving.header_timeout``: from the moment a connection opens (or a request
  on a kept-alive connection begins) until that request's headers are complete;
- ``serving.body_timeout``: from the end of the headers until the whole body is
  in;
- ``serving.max_connections``: open connections per worker; the next one is
  answered 503 in the one error shape and closed before anything is read.

A connection past a deadline is closed without an answer: it has not said what
it wants. Each worker also raises its soft limit of open files to the hard one
(``raise_open_files_limit``), so that the common 1,024 is not the ceiling.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from setpoint.config.spec import ServingSpec
from setpoint.errors import ApiError
from setpoint.serve.http import error_response

__all__ = ["PROTOCOL", "ConnectionLimits", "GuardedProtocol", "configure", "raise_open_files_limit"]

log = logging.getLogger(__name__)

# What ``uvicorn.run(http=...)`` is given: a path, since workers import it afresh.
PROTOCOL = "setpoint.serve.connections:GuardedProtocol"
_MOST_OPEN_FILES = 1 << 20  # a hard limit of "unlimited" still gets a finite soft one


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds every new connection of this worker gets."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 2048


_limits = ConnectionLimits()


def configure(serving: ServingSpec) -> ConnectionLimits:
    """Take this worker's bounds from the spec; called once, before the first connection."""
    global _limits
    _limits = ConnectionLimits(
        header_timeout=serving.header_timeout,
        body_timeout=serving.body_timeout,
        max_connections=serving.max_connections,
    )
    return _limits


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _MOST_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # some sandboxes refuse: serve with what there is
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
            return soft
        return target
    return soft


def _refusal() -> bytes:
    error = ApiError(
        503,
        "too_many_connections",
        f"This worker holds {_limits.max_connections} connections (serving.max_connections); "
        "retry shortly.",
    )
    response = error_response(error)
    head = [b"HTTP/1.1 503 Service Unavailable"]
    head += [name + b": " + value for name, value in response.raw_headers]
    head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + response.body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a connection cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_headers = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            log.warning(
                "refused a connection: %d open (serving.max_connections)", len(self.connections)
            )
            transport.write(_refusal())
            transport.close()
            return
        self._arm(self._limits.header_timeout, headers=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a new request on a kept-alive connection
            self._arm(self._limits.header_timeout, headers=True)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        # Cleared again by on_message_complete, which follows at once for a bodiless request.
        self._arm(self._limits.body_timeout, headers=False)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, *, headers: bool) -> None:
        self._disarm()
        self._reading_headers = headers
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if self._reading_headers and cycle is not None and not cycle.response_complete:
            # The next request began while the previous one is still being answered:
            # the client is waiting for that answer, not stalling.
            self._arm(self._limits.header_timeout, headers=True)
            return
        if not self.transport.is_closing():
            self.transport.close()
