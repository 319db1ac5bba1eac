"""Admin endpoints (promote, rollback, reload) and the API-key check they need.

Keys are stored hashed (``registry.api_keys``), each with its scope; a valid key
is remembered for a few seconds by its sha256 so that keyed predict and feedback
traffic does not query the store on every request. A revoked key stops working
within that time. These endpoints need an ``admin`` key: a ``feedback`` key is
answered 403.

A promote's gate runs in a child process of the worker (``serve/gate_process.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from setpoint.errors import (
    ApiError,
)
from setpoint.serve.gate_process import promote_in_child
from setpoint.serve.http import JSONResponse, read_json

if TYPE_CHECKING:
    from setpoint.serve.server import Server

__all__ = ["check_key", "promote", "reload", "rollback"]

log = logging.getLogger(__name__)

_CACHE_S = 5.0
_INT64 = (-(2**63), 2**63 - 1)
_valid: dict[str, tuple[float, str, str]] = {}  # sha256 of a key -> (valid until, name, scope)


async def check_key(server: Server, request: Request, *, scope: str = "admin") -> None:
    """Raise 401 without a bearer key and 403 with one that is not valid for ``scope``.

    An ``admin`` key is valid for every scope; a ``feedback`` key for feedback only.
    """
    from setpoint.registry.api_keys import key_scope, may_act

    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "unauthorized",
            "This endpoint needs an API key: send 'Authorization: Bearer <key>' "
            "(make one with 'setpoint keys create').",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hashlib.sha256(key.strip().encode("utf-8", "surrogatepass")).hexdigest()
    now = time.monotonic()
    cached = _valid.get(digest)
    if cached is not None and cached[0] > now:
        name, has = cached[1], cached[2]
    else:
        found = await asyncio.to_thread(key_scope, server.project.store.db, key.strip())
        if found is None:
            raise ApiError(403, "forbidden", "The API key is not valid or was revoked.")
        name, has = found
        _valid[digest] = (now + _CACHE_S, name, has)
    if not may_act(has, scope):
        raise ApiError(
            403,
            "forbidden",
            f"The API key {name!r} is a {has} key: this endpoint needs a key of scope "
            f"{scope!r} or 'admin' (make one with 'setpoint keys create --scope {scope} NAME').",
        )


def _options(body: Any, allowed: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(
            400, "invalid_request", f"Unknown key(s) {unknown}; expected some of {sorted(allowed)}."
        )
    options: dict[str, Any] = dict(body)
    for name, kind in allowed.items():
        value = options.get(name)
        if kind is int and isinstance(value, float) and value.is_integer():
            # JSON has one number type: 2.0 is the integer 2 (JSON Schema says so too).
            value = options[name] = int(value)
        if value is not None and (
            (isinstance(value, bool) and kind is int) or not isinstance(value, kind)
        ):
            raise ApiError(
                400,
                "invalid_request",
                f"{name!r} must be {getattr(kind, '__name__', kind)}; got {value!r:.80}.",
            )
        # What the store cannot hold is refused here, not as a database error (a 500).
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not _INT64[0] <= value <= _INT64[1]
        ):
            raise ApiError(
                400, "invalid_request", f"{name!r} must be a version number; got {value!r:.80}."
            )
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, "invalid_request", f"{name!r} must not contain a NUL character.")
    return options


async def _body(server: Server, request: Request) -> Any:
    # No body: none sent, or an empty one (most clients send "Content-Length: 0" on a
    # bare POST) without a content type.
    length = request.headers.get("content-length", "").strip()
    if length in ("", "0") and "content-type" not in request.headers:
        return None
    return await read_json(request, max_bytes=server.serving.max_body_bytes)


async def promote(server: Server, request: Request) -> Response:
    await check_key(server, request)
    body = _options(await _body(server, request), {"version": int, "reason": str, "force": bool})
    if body.get("version") is None:
        raise ApiError(400, "invalid_request", "'version' is required: the version to promote.")
    force = bool(body.get("force"))
    decision = await promote_in_child(
        server.project,
        version=body["version"],
        reason=body.get("reason") or "promoted over HTTP",
        force=force,
    )
    serving = await server.router.refresh()
    # A forced promote moves the champion past a failed gate (Project._record): it promoted.
    forced = force and not decision["passed"]
    return JSONResponse(
        {
            "promoted": decision["passed"] or forced,
            "forced": forced,
            "decision": decision,
            "serving": serving,
        }
    )


async def rollback(server: Server, request: Request) -> Response:
    await check_key(server, request)
    body = _options(await _body(server, request), {"reason": str})
    champion = await asyncio.to_thread(
        server.project.rollback, reason=body.get("reason") or "rolled back over HTTP"
    )
    serving = await server.router.refresh()
    return JSONResponse({"champion": champion, "serving": serving})


async def reload(server: Server, request: Request) -> Response:
    await check_key(server, request)
    return JSONResponse({"serving": await server.router.refresh()})
