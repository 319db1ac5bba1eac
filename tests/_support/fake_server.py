"""A tiny real HTTP server that speaks the contract of docs/serving.md.

It stands in for ``setpoint serve`` ONLY in client-contract tests (the Python
client, ``setpoint predict`` and ``setpoint replay``): it scores with a fixed
formula instead of a model, keeps feedback in memory, and records every request
it receives so that a test can check exactly what a client sent. End-to-end
tests run against the real server.

It runs in-process, with uvicorn on a free loopback port, in a thread::

    with running(FakeServer(api_key="k")) as server:
        Client(server.url, api_key="k").predict({"distance": 100.0})
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeServer", "Received", "dead_url", "running"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KINDS = {404: "not_found", 405: "method_not_allowed"}


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any


class _RefusedError(Exception):
    def __init__(
        self, status: int, kind: str, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.errors = status, kind, message, errors


@dataclass
class FakeServer:
    """The server's state; a test reads and sets it while the server runs."""

    api_key: str | None = None
    predict_needs_key: bool = False
    max_batch: int = 100
    ready: bool = True
    unavailable: int = 0  # the next N requests under /v1 answer 503 not_ready
    champion: int = 1
    versions: tuple[int, ...] = (1, 2)
    url: str = ""
    received: list[Received] = field(default_factory=list)
    predictions: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[tuple[str, ...], Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def scored_records(self) -> list[dict[str, Any]]:
        """Every record of every answered predict request, in the order they arrived."""
        return list(self.predictions.values())

    def calls(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def app(self) -> Starlette:
        routes = [
            Route(
                "/v1/predict",
                self._wrap(self._predict, key=self.predict_needs_key),
                methods=["POST"],
            ),
            Route(
                "/v1/feedback",
                self._wrap(self._feedback, key=self.predict_needs_key),
                methods=["POST"],
            ),
            Route("/v1/models", self._wrap(self._models, key=False), methods=["GET"]),
            Route("/v1/admin/promote", self._wrap(self._promote, key=True), methods=["POST"]),
            Route("/v1/admin/rollback", self._wrap(self._rollback, key=True), methods=["POST"]),
            Route("/v1/admin/reload", self._wrap(self._reload, key=True), methods=["POST"]),
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    # Plumbing ------------------------------------------------------------------
    def _wrap(self, handler: Any, *, key: bool) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with self.lock:
                self.received.append(
                    Received(
                        request.method,
                        request.url.path,
                        {k.lower(): v for k, v in request.headers.items()},
                        dict(request.query_params),
                        body,
                    )
                )
            try:
                if self.unavailable > 0:
                    self.unavailable -= 1
                    raise _RefusedError(503, "not_ready", "no champion is loaded yet")
                if key:
                    self._check_key(request)
                if request.method == "POST":
                    if not request.headers.get("content-type", "").startswith("application/json"):
                        raise _RefusedError(415, "unsupported_media_type", "send application/json")
                    if isinstance(body, str):
                        raise _RefusedError(400, "malformed_json", "the body is not JSON")
                    if not isinstance(body, dict):
                        raise _RefusedError(
                            400, "invalid_request", "the body must be a JSON object"
                        )
                with self.lock:
                    return handler(request, body)
            except _RefusedError as exc:
                return self._error(exc.status, exc.kind, exc.message, exc.errors)

        return endpoint

    def _check_key(self, request: Request) -> None:
        sent = request.headers.get("authorization", "")
        if not sent:
            raise _RefusedError(401, "unauthorized", "this endpoint needs a key")
        if self.api_key is None or sent != f"Bearer {self.api_key}":
            raise _RefusedError(403, "forbidden", "the key is not valid")

    def _error(
        self,
        status: int,
        kind: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
    ) -> JSONResponse:
        shape: dict[str, Any] = {
            "status": status,
            "kind": kind,
            "message": message,
            "request_id": request_id or uuid.uuid4().hex,
        }
        if errors:
            shape["errors"] = errors
        headers = {"Retry-After": "0"} if status == 503 else None
        return JSONResponse({"error": shape}, status_code=status, headers=headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return self._error(status, _KINDS.get(status, "error"), f"{request.url.path}: {exc}")

    # Endpoints -----------------------------------------------------------------
    def _predict(self, request: Request, body: dict[str, Any]) -> Response:
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise _RefusedError(400, "invalid_request", "'records' must be a non-empty list")
        if len(records) > self.max_batch:
            raise _RefusedError(413, "too_large", f"at most {self.max_batch} records per request")
        client_rid = request.headers.get("x-request-id")
        if client_rid is not None and not _REQUEST_ID.fullmatch(client_rid):
            raise _RefusedError(400, "invalid_request", "bad X-Request-ID")
        rid = uuid.uuid4().hex  # as the real server: it names every request itself
        errors = [
            {"record": i, "field": "distance", "kind": "wrong_type", "detail": "not a number"}
            for i, r in enumerate(records)
            if isinstance(r, dict) and isinstance(r.get("distance"), str)
        ]
        if errors:
            raise _RefusedError(422, "invalid_request", "records break the schema", errors)
        explain = request.query_params.get("explain") == "true"
        predictions = []
        for i, record in enumerate(records):
            score = (len(json.dumps(record, sort_keys=True)) % 100) / 100
            prediction: dict[str, Any] = {"label": score >= 0.5, "score": score}
            if explain:
                prediction["contributions"] = [{"feature": "distance", "value": score - 0.5}]
            predictions.append(prediction)
            self.predictions[(rid, i)] = record
        answer = {"request_id": rid, "model_version": self.champion, "predictions": predictions}
        headers = {"X-Request-ID": rid}
        if client_rid is not None:
            headers["X-Client-Request-ID"] = client_rid
        return JSONResponse(answer, headers=headers)

    def _feedback(self, request: Request, body: dict[str, Any]) -> Response:
        items = body.get("feedback")
        if not isinstance(items, list) or not items:
            raise _RefusedError(400, "invalid_request", "'feedback' must be a non-empty list")
        keyed: list[tuple[tuple[str, ...], Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "label" not in item:
                raise _RefusedError(400, "invalid_request", f"feedback[{i}] needs a label")
            if "request_id" in item:
                index = int(item.get("index", 0))
                if (item["request_id"], index) not in self.predictions:
                    errors = [{"record": i, "field": "request_id", "kind": "unknown_prediction"}]
                    raise _RefusedError(422, "invalid_request", "no such prediction", errors)
                key: tuple[str, ...] = ("request", str(item["request_id"]), str(index))
            else:
                key = ("entity", str(item["entity_id"]))
            if key in self.outcomes and self.outcomes[key]["label"] != item["label"]:
                raise _RefusedError(409, "conflict", f"feedback[{i}] contradicts stored feedback")
            keyed.append((key, item))
        fresh = [(k, item) for k, item in keyed if k not in self.outcomes]
        self.outcomes.update(fresh)
        return JSONResponse({"stored": len(fresh), "duplicates": len(keyed) - len(fresh)})

    def _models(self, request: Request, body: Any) -> Response:
        versions = [{"version": v} for v in self.versions]
        return JSONResponse({"champion": self.champion, "challenger": None, "versions": versions})

    def _promote(self, request: Request, body: dict[str, Any]) -> Response:
        version = body.get("version")
        if version not in self.versions:
            raise _RefusedError(404, "not_found", f"no model version {version}")
        previous, self.champion = self.champion, int(version)
        return JSONResponse({"passed": True, "champion": self.champion, "previous": previous})

    def _rollback(self, request: Request, body: dict[str, Any]) -> Response:
        self.champion = max(1, self.champion - 1)
        return JSONResponse({"champion": self.champion, "reason": body.get("reason")})

    def _reload(self, request: Request, body: dict[str, Any]) -> Response:
        return JSONResponse({"champion": self.champion})

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, request: Request) -> Response:
        if self.ready:
            return JSONResponse({"status": "ready", "model_version": self.champion})
        return self._error(503, "not_ready", "no champion is loaded yet")


@contextmanager
def running(server: FakeServer) -> Iterator[FakeServer]:
    """Serve ``server`` on a free loopback port until the block ends; sets ``server.url``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        server.app(), log_level="warning", lifespan="off", ws="none", access_log=False
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake server did not start")
        time.sleep(0.01)
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def dead_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
