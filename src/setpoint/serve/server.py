"""The ASGI application of ``setpoint serve``: routes, lifespan and error mapping.

One ``Server`` per worker process holds the project, the model router, the
prediction log and the metrics. Handlers raise ``ApiError`` or let another
``SetpointError`` through; ``_endpoint`` turns any exception into the one error
shape (its status from ``setpoint.errors.http_status``), counts the request and
never lets an exception become a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from setpoint import __version__
from setpoint.errors import (
    ApiError,
    InvalidParameterError,
    InvalidRequestError,
    MissingExtraError,
    SetpointError,
    StoreError,
    http_kind,
    http_status,
)
from setpoint.project import Project
from setpoint.serve import admin
from setpoint.serve.counters import Metrics
from setpoint.serve.gate_process import close_gate_process
from setpoint.serve.gauges import MonitorGauges
from setpoint.serve.http import (
    JSONResponse,
    client_request_id,
    error_response,
    read_json,
    request_id,
)
from setpoint.serve.openapi import openapi_document
from setpoint.serve.router import ModelRouter
from setpoint.serve.scorer import INLINE_RECORDS, Scored, Scorer
from setpoint.traffic.local_log import LocalPredictionLog
from setpoint.traffic.log import PredictionLog, open_log

__all__ = ["Server", "create_app"]

log = logging.getLogger("setpoint.serve")

Handler = Callable[["Server", Request], Awaitable[Response]]
_MAX_SLOTS = 256
_SEAL_EVERY_S = 30.0
# The kind a request cut off by its client is counted as in setpoint_errors_total, and
# the status its (never sent) answer is counted with: nginx's "client closed request".
_DISCONNECTED = "client_disconnected"
_DISCONNECTED_STATUS = 499


class Server:
    """Everything one worker needs to answer."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.serving = project.spec.serving
        self.router = ModelRouter(project)
        self.metrics = Metrics()
        self.gauges = MonitorGauges(project.store.db, project=project.name)
        self.plog: PredictionLog | None = None  # opened at startup
        self.slot = -1
        self._slot_fd = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self._openapi: tuple[int, dict[str, Any]] | None = None

    # -- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        run_dir = self.project.store.home / "run" / self.project.name
        run_dir.mkdir(parents=True, exist_ok=True)
        self.slot, self._slot_fd = _claim_slot(run_dir)
        self.metrics.snapshot_path = run_dir / f"metrics-w{self.slot}.json"
        self.plog = await asyncio.to_thread(self._open_log)
        versions = await self.router.refresh()
        if versions["champion"] is None:
            log.warning("no champion to serve yet: /readyz answers 503 until one is promoted")
        # Everything loaded so far (libraries, the model) lives as long as the process: keep
        # it out of the collector's full passes, which otherwise stall requests for tens of ms.
        gc.freeze()
        self._spawn(self.router.run())
        self._spawn(self._publish_metrics())
        self._spawn(self._seal_segments())

    def _open_log(self) -> PredictionLog:
        return open_log(self.project.store, project=self.project.name, worker=self.slot)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.router.close()
        close_gate_process()
        if self.plog is not None:
            await asyncio.to_thread(self.plog.close)
        self.metrics.write_snapshot()
        if self._slot_fd >= 0:
            os.close(self._slot_fd)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_metrics(self) -> None:
        while True:
            self.metrics.set(
                "setpoint_prediction_log_backlog", (), 0 if self.plog is None else self.plog.backlog
            )
            for role, scorer in self.router.scorers.items():
                version = None if scorer is None else float(scorer.version)
                self.metrics.set("setpoint_model_version", (("role", role),), version)
            with contextlib.suppress(OSError):
                self.metrics.write_snapshot()
            await asyncio.sleep(1.0)

    async def _seal_segments(self) -> None:
        # Full raw segments become Parquet in a child process, off the serving GIL; the
        # PostgreSQL log has nothing to seal.
        plog = self.plog
        if not isinstance(plog, LocalPredictionLog):
            return
        folder = plog.directory
        while True:
            await asyncio.sleep(_SEAL_EVERY_S)
            below = plog.active_segment
            try:
                if not any(int(p.stem[4:]) < below for p in folder.glob("seg-*.log")):
                    continue
                child = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "setpoint.traffic.seal", str(folder), str(below)
                )
                failed = await child.wait() != 0
            except OSError as exc:  # out of descriptors or processes: this pass only
                log.error("sealing prediction log segments in %s failed: %s", folder, exc)
                continue
            if failed:  # the raw segments stay readable; retried next time
                log.error("sealing prediction log segments in %s failed", folder)

    # -- predictions --------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        rid = request.state.request_id
        if self.serving.predict_auth == "key":
            await admin.check_key(self, request)
        explain = _flag(request, "explain")
        body = await read_json(request, max_bytes=self.serving.max_body_bytes)
        records = _field(body, "records", list)
        entity = self.project.spec.entity
        first = records[0] if records and isinstance(records[0], dict) else {}
        key = first.get(entity) if entity else None
        scorer, role = self.router.route(rid if key is None else str(key))
        if scorer is None:
            raise ApiError(503, "not_ready", "No champion is loaded yet; promote a model first.")
        top = self.serving.explain_top if explain else 0
        started = time.perf_counter()
        try:
            scored = await _score(scorer, records, top)
        except InvalidRequestError:
            raise
        except Exception as exc:  # a canary that cannot score falls back to the champion
            if role != "canary":
                raise
            log.error("canary version %d failed: %r", scorer.version, exc)
            self.router.observe_canary(version=scorer.version, ok=False, latency_ms=0.0)
            champion = self.router.champion
            if champion is None:
                raise
            scorer, role = champion, "champion"
            scored = await _score(scorer, records, top)
        latency_ms = (time.perf_counter() - started) * 1000
        if role == "canary":
            self.router.observe_canary(version=scorer.version, ok=True, latency_ms=latency_ms)
        client_rid = request.state.client_request_id
        await self._log(rid, client_rid, records, scorer, role, scored, latency_ms)
        self._count(scorer, role, scored)
        shadow = self.router.scorers["shadow"]
        if shadow is not None and shadow.version != scorer.version:
            self._spawn(self._shadow(shadow, rid, client_rid, records))
        return JSONResponse(
            {"request_id": rid, "model_version": scorer.version, "predictions": scored.predictions},
            headers={"X-Request-ID": rid, "X-Model-Version": str(scorer.version)},
        )

    async def _log(
        self,
        rid: str,
        client_rid: str | None,
        records: list[dict[str, Any]],
        scorer: Scorer,
        role: str,
        scored: Scored,
        latency_ms: float,
    ) -> None:
        plog = self.plog
        if plog is None:  # opened at startup, before the first request is taken
            raise StoreError("The prediction log is not open yet.", project=self.project.name)
        entity = self.project.spec.entity
        version = str(scorer.version)
        try:
            # one unit: a record that cannot be encoded leaves none of its request logged
            future = plog.append_batch(
                [
                    {
                        "request_id": rid,
                        "client_request_id": client_rid,
                        "index": i,
                        "entity_id": record.get(entity) if entity else None,
                        "model_version": version,
                        "role": role,
                        "inputs": record,
                        "output": output,
                        "latency_ms": latency_ms,
                    }
                    for i, (record, output) in enumerate(zip(records, scored.outputs, strict=True))
                ]
            )
        except InvalidParameterError as exc:
            raise InvalidRequestError(
                f"The request cannot be logged, so it is not answered: {exc}",
                errors=[{"record": None, "field": None, "kind": "unloggable", "detail": str(exc)}],
            ) from None
        await asyncio.wrap_future(future)

    def _count(self, scorer: Scorer, role: str, scored: Scored) -> None:
        version = str(scorer.version)
        for prediction in scored.predictions:
            label = str(prediction.get("label", ""))
            labels = (("role", role), ("version", version), ("label", label))
            self.metrics.inc("setpoint_predictions_total", labels)

    async def _shadow(
        self, shadow: Scorer, rid: str, client_rid: str | None, records: list[dict[str, Any]]
    ) -> None:
        started = time.perf_counter()
        try:
            scored = await _score(shadow, records, 0)
            latency_ms = (time.perf_counter() - started) * 1000
            await self._log(rid, client_rid, records, shadow, "shadow", scored, latency_ms)
            self._count(shadow, "shadow", scored)
        except Exception as exc:  # the shadow never affects an answer, only its own count
            log.warning("shadow version %d failed: %r", shadow.version, exc)
            self.metrics.inc("setpoint_errors_total", (("kind", "shadow_failed"),))

    async def feedback(self, request: Request) -> Response:
        from setpoint.registry.feedback import LabelRule, record_feedback

        if self.serving.feedback_keyed:
            await admin.check_key(self, request, scope="feedback")
        body = await read_json(request, max_bytes=self.serving.max_body_bytes)
        items = _field(body, "feedback", list)
        # Labels are judged against the champion's target, the model monitoring judges;
        # with none loaded yet, only the form of each item is checked.
        champion = self.router.champion
        rule = None if champion is None else LabelRule.of(champion.model)
        result = await asyncio.to_thread(
            record_feedback,
            self.project.store.db,
            project=self.project.name,
            items=items,
            rule=rule,
        )
        return JSONResponse(result.to_dict())

    # -- reading ------------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        versions = await asyncio.to_thread(self.project.versions)
        serving = {
            role: None if s is None else s.describe() for role, s in self.router.scorers.items()
        }
        guard = self.router.guard
        return JSONResponse(
            {
                "project": self.project.name,
                "serving": serving,
                "canary_guard": None if guard is None else guard.numbers(),
                "versions": [
                    {
                        "version": v.version,
                        "created_at": v.created_at.isoformat(),
                        "metrics": v.metrics,
                    }
                    for v in versions
                ],
            }
        )

    async def readyz(self, request: Request) -> Response:
        champion = self.router.champion
        if champion is None:
            raise ApiError(503, "not_ready", "No champion is loaded yet; promote a model first.")
        trouble = None if self.plog is None else self.plog.unavailable()
        if trouble is not None:  # every prediction would be refused: take no traffic
            raise ApiError(503, "log_unavailable", str(trouble))
        return JSONResponse({"status": "ready", "champion": champion.version})

    async def metrics_text(self, request: Request) -> Response:
        self.metrics.set(
            "setpoint_prediction_log_backlog", (), 0 if self.plog is None else self.plog.backlog
        )
        text = self.metrics.render()
        # The monitoring gauges come from the shared store, not from this worker's counts,
        # so they are appended here rather than summed with the other workers' snapshots.
        text += await self.gauges.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        champion = self.router.champion
        if champion is None:
            raise ApiError(503, "not_ready", "The document is made from the champion's schema.")
        if self._openapi is None or self._openapi[0] != champion.version:
            doc = openapi_document(
                project=self.project.name,
                scorer=champion,
                serving=self.serving,
                version=__version__,
            )
            self._openapi = (champion.version, doc)
        return JSONResponse(self._openapi[1])


async def _score(scorer: Scorer, records: list[dict[str, Any]], top: int) -> Scored:
    if len(records) <= INLINE_RECORDS:
        return scorer.score(records, explain=top)
    return await asyncio.to_thread(scorer.score, records, explain=top)


def _field(body: Any, name: str, kind: type) -> Any:
    if not isinstance(body, dict) or name not in body:
        raise ApiError(400, "invalid_request", f"The body must be a JSON object with {name!r}.")
    extra = sorted(set(body) - {name})
    if extra:
        raise ApiError(
            400, "invalid_request", f"Unknown key(s) in the body: {extra}; only {name!r}."
        )
    value = body[name]
    if not isinstance(value, kind):
        got = type(value).__name__ if value is not None else "null"
        raise ApiError(400, "invalid_request", f"{name!r} must be a list; got {got}.")
    return value


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise ApiError(
        400,
        "invalid_request",
        f"The {name!r} query parameter must be true or false; got {raw[:40]!r}.",
    )


def _claim_slot(run_dir: Path) -> tuple[int, int]:
    """The first free worker number: its lock file is held for the process's lifetime."""
    for slot in range(_MAX_SLOTS):
        fd = os.open(run_dir / f"worker-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    raise StoreError(f"{run_dir}: all {_MAX_SLOTS} worker slots are taken.")


def _endpoint(
    server: Server, name: str, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        rid = request.state.request_id = request_id()
        client_rid: str | None = None
        kind = ""
        try:
            client_rid = request.state.client_request_id = client_request_id(request)
            response = await handler(server, request)
        except ClientDisconnect:
            # Nothing to answer and nothing wrong with the server: counted, not logged.
            kind = _DISCONNECTED
            response = Response(status_code=_DISCONNECTED_STATUS)
        except Exception as exc:
            kind = http_kind(exc)
            if not isinstance(exc, SetpointError):  # not raised on purpose: a bug, answered 500
                # Once per interval for each kind of bug (serve/logs.py), not once per request.
                log.exception("unexpected error in %s", name)
            elif http_status(exc) >= 500:
                log.error("%s answered %d %s: %s", name, http_status(exc), kind, exc)
            response = error_response(exc, request_id=rid)
        if client_rid is not None:
            response.headers["X-Client-Request-ID"] = client_rid
        status = response.status_code
        if kind:
            server.metrics.inc("setpoint_errors_total", (("kind", kind),))
        server.metrics.inc("setpoint_requests_total", (("endpoint", name), ("status", str(status))))
        server.metrics.observe(
            "setpoint_request_duration_seconds",
            (("endpoint", name),),
            time.perf_counter() - started,
        )
        return response

    return endpoint


def create_app(root: Path | str, *, spec_path: Path | str | None = None) -> Starlette:
    """The application for the project in ``root``; the store opens at startup."""
    project = Project.open(root, spec_path=spec_path)
    server = Server(project)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    async def health(server: Server, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        ("/v1/predict", "predict", ["POST"], Server.predict),
        ("/v1/feedback", "feedback", ["POST"], Server.feedback),
        ("/v1/models", "models", ["GET"], Server.models),
        ("/v1/admin/promote", "promote", ["POST"], admin.promote),
        ("/v1/admin/rollback", "rollback", ["POST"], admin.rollback),
        ("/v1/admin/reload", "reload", ["POST"], admin.reload),
        ("/healthz", "healthz", ["GET"], health),
        ("/readyz", "readyz", ["GET"], Server.readyz),
        ("/metrics", "metrics", ["GET"], Server.metrics_text),
        ("/openapi.json", "openapi", ["GET"], Server.openapi),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request")
        message = {404: f"No endpoint at {request.url.path!r}; see /openapi.json."}.get(
            status, str(getattr(exc, "detail", "")) or "Bad request."
        )
        headers = dict(getattr(exc, "headers", None) or {})
        return error_response(ApiError(status, kind, message, headers=headers))

    app = Starlette(
        routes=[
            *(
                Route(path, _endpoint(server, name, handler), methods=methods)
                for path, name, methods, handler in routes
            ),
            _dashboard(project),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.server = server
    return app


def _dashboard(project: Project) -> BaseRoute:
    """``/ui``: the dashboard, or, without the ``ui`` extra, an error that names it."""
    try:
        from setpoint.ui.site import create_ui
    except MissingExtraError as exc:
        missing = exc

        async def absent(request: Request) -> Response:
            return error_response(missing)

        return Route("/ui{rest:path}", absent)
    return Mount("/ui", app=create_ui(project))
