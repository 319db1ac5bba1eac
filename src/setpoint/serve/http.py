"""The HTTP edge: reading JSON bodies within limits, and the one error shape.

Every error, whatever raised it, leaves the server as::

    {"error": {"status": 422, "kind": "invalid_request", "message": "...",
               "request_id": "...", "errors": [...]}}

Handlers raise ``ApiError`` (``setpoint.errors``) for what they refuse
themselves, or let any other ``SetpointError`` through; ``error_response``
renders either, its status and kind from ``http_status`` and ``http_kind``, the
same mapping the dashboard uses. A test checks every status the server can send
against the shape.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from setpoint.errors import ApiError, InvalidRequestError, SetpointError, http_kind, http_status

__all__ = [
    "MAX_JSON_DEPTH",
    "JSONResponse",
    "client_request_id",
    "error_response",
    "read_json",
    "request_id",
]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_JSON_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (422): no schema needs more, and
the log's JSON encoder refuses 255 levels, which would fail the request only as it is logged."""
# the tokens that give a JSON text its structure: strings (whose brackets do not count)
# and the punctuation
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


class JSONResponse(Response):
    """orjson rendering: several times faster than ``json`` on prediction payloads."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(error: BaseException, *, request_id: str | None = None) -> JSONResponse:
    """The one error shape for ``error``; an exception setpoint did not raise on purpose
    answers 500 without its text, which may hold anything (the server log has it)."""
    status = http_status(error)
    message = (
        str(error)
        if isinstance(error, SetpointError)
        else "An unexpected error; it is in the server log."
    )
    body: dict[str, Any] = {
        "status": status,
        "kind": http_kind(error),
        "message": message,
        "request_id": request_id,
    }
    if isinstance(error, ApiError | InvalidRequestError) and error.errors is not None:
        body["errors"] = error.errors
    headers = dict(error.headers) if isinstance(error, ApiError) else {}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def request_id() -> str:
    """A new request id: 128 random bits, so unique across workers and restarts.

    The server always names a request itself: a client's ``X-Request-ID`` is reused on
    every retry (and may be reused by mistake), so feedback by request id would be
    ambiguous if the client's id named the prediction.
    """
    return os.urandom(16).hex()  # as uuid4 without its object's cost


def client_request_id(request: Request) -> str | None:
    """The client's ``X-Request-ID``, kept for tracing as the client's id, if well formed."""
    given = request.headers.get("x-request-id")
    if given is None:
        return None
    if not _REQUEST_ID.match(given):
        raise ApiError(
            400,
            "invalid_request",
            "The X-Request-ID header must be 1 to 64 characters of A-Z a-z 0-9 . _ -; "
            f"got {given[:80]!r}.",
        )
    return given


async def read_json(request: Request, *, max_bytes: int) -> Any:
    """The body as JSON: 415 for another content type, 413 over ``max_bytes``, 400 if malformed."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send the body as application/json; got {media or 'no content type'!r}.",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # chunked bodies have no length to check up front
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        path = _scan_depth(body, MAX_JSON_DEPTH)
        if path is not None:  # orjson stops at 1024 levels: deeper than ours, and refused
            raise _too_deep(path) from None
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from None
    # a flat body has fewer brackets than the bound, which is the common case: counting
    # them is cheaper than walking the value
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:
        path = _walk_depth(value, 1)
        if path is not None:
            raise _too_deep(path[::-1])
    return value


def _walk_depth(value: Any, depth: int) -> list[str | int] | None:
    """The keys (innermost first) down to a container deeper than ``MAX_JSON_DEPTH``."""
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    if depth > MAX_JSON_DEPTH:
        return []
    for key, item in items:
        if isinstance(item, dict | list):
            path = _walk_depth(item, depth + 1)
            if path is not None:
                path.append(key)
                return path
    return None


def _scan_depth(body: bytes, limit: int) -> list[str | int] | None:
    """The keys down to the first container of ``body`` deeper than ``limit``, from its text.

    For bodies orjson refuses: it only reports that its own, larger, bound was hit.
    """
    stack: list[list[Any]] = []  # per open container: its bracket and the current key
    last = b'""'
    for match in _TOKEN.finditer(body):
        token = match.group()
        first = token[:1]
        if first == b'"':
            last = token
        elif first in (b"{", b"["):
            if len(stack) >= limit:
                return [key for _, key in stack]
            stack.append([first, 0 if first == b"[" else ""])
        elif first in (b"}", b"]"):
            if stack:
                stack.pop()
        elif not stack:
            continue
        elif first == b":":
            try:
                stack[-1][1] = orjson.loads(last)
            except orjson.JSONDecodeError:
                stack[-1][1] = "?"
        elif stack[-1][0] == b"[":  # a comma between items of an array
            stack[-1][1] += 1
    return None


def _where(path: list[str | int]) -> str:
    parts = [f"[{key}]" if isinstance(key, int) else f".{key}" for key in path]
    if len(parts) > 6:
        parts = [*parts[:6], f"... ({len(parts) - 6} levels more)"]
    return "".join(parts).lstrip(".") or "the body"


def _too_deep(path: list[str | int]) -> ApiError:
    where = _where(path)
    record = path[1] if len(path) > 1 and path[0] == "records" else None
    field = path[2] if len(path) > 2 and record is not None else None
    return ApiError(
        422,
        "invalid_request",
        f"The body nests objects and arrays deeper than {MAX_JSON_DEPTH} levels at {where}; "
        f"at most {MAX_JSON_DEPTH} are accepted.",
        errors=[
            {
                "record": record,
                "field": field,
                "kind": "too_deep",
                "detail": f"more than {MAX_JSON_DEPTH} levels of nesting at {where}",
            }
        ],
    )


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"The body is larger than {limit} bytes (serving.max_body_bytes); {size} seen.",
    )
