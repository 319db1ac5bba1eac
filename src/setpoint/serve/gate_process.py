"""The gate of ``POST /v1/admin/promote``, run in a child process of the serving worker.

A promote runs the gate (the champion scored on the held-out rows, a paired
bootstrap): seconds of pandas and numpy work that hold the GIL in long stretches.
In the serving process that would stall every request of the worker, so the
gate runs in a child process of the worker, made at the first promote and kept
for the next ones while they come, that calls the same ``Project.promote``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from setpoint.errors import ApiError, InvalidRequestError, SetpointError, http_kind, http_status

if TYPE_CHECKING:
    from setpoint.project import Project

__all__ = ["close_gate_process", "promote_in_child"]

log = logging.getLogger(__name__)

_GATE_IDLE_S = 120.0  # how long the gate's process outlives its latest promote


class _GateProcess:
    """The worker's one process for gates: made at the first promote, reused by the
    next ones while they come, and closed when idle, so that an idle worker does not
    hold a second interpreter's memory."""

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        self.idle: asyncio.TimerHandle | None = None

    async def run(self, order: dict[str, Any]) -> dict[str, Any]:
        if self.idle is not None:
            self.idle.cancel()
        if self.pool is None:
            # spawn, not fork: a forked copy of a serving worker would inherit its
            # threads' locks, its sockets and its open prediction log.
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_follow_parent,
                initargs=(os.getpid(),),
            )
        pool = self.pool
        loop = asyncio.get_running_loop()
        try:
            answer: dict[str, Any] = await loop.run_in_executor(pool, _promote_job, order)
        except BrokenProcessPool:
            self.pool = None  # it died (killed, out of memory): the next promote makes another
            raise
        finally:
            self.idle = loop.call_later(_GATE_IDLE_S, self.close, pool)
        return answer

    def close(self, pool: ProcessPoolExecutor) -> None:
        if self.pool is pool:
            self.pool = None
        pool.shutdown(wait=False)


_gate = _GateProcess()


async def promote_in_child(
    project: Project, *, version: int, reason: str, force: bool
) -> dict[str, Any]:
    """``project.promote(version, ...)`` in the gate's process: the decision as a dict.

    The process gets the spec this server was started with (not the file as it is
    now) and opens the same store. Its error comes back as the same error: same
    status, kind and message.
    """
    order = {
        "root": str(project.root),
        "spec": project.spec.model_dump(mode="json"),
        "version": version,
        "reason": reason,
        "force": force,
    }
    try:
        answer = await _gate.run(order)
    except BrokenProcessPool:
        # Killed or out of memory: nothing was promoted (the alias moves in one
        # transaction), and the next promote starts another process.
        log.error("the process of the gate of version %d died", version)
        raise ApiError(
            503,
            "unavailable",
            f"The gate's process for version {version} died before it decided (out of "
            "memory?); nothing was promoted. Try again.",
        ) from None
    if "error" in answer:
        error = answer["error"]
        raise ApiError(error["status"], error["kind"], error["message"], errors=error["errors"])
    decision: dict[str, Any] = answer["decision"]
    return decision


def _follow_parent(parent: int) -> None:
    """In the gate's process: end with the worker that made it.

    A worker can end without the pool's exit hook running (it does when
    ``setpoint serve`` is stopped by SIGTERM; a SIGKILL runs nothing), which would
    leave this process behind, holding the server's pipes and a second
    interpreter's memory.
    A promote cut off here is one transaction: the champion moved or it did not.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _promote_job(order: dict[str, Any]) -> dict[str, Any]:
    """In the gate's process: ``Project.promote`` as ``order`` says; its decision or error."""
    from setpoint.config.spec import ProjectSpec
    from setpoint.project import Project
    from setpoint.store.workspace import Store

    try:
        root = Path(order["root"])
        project = Project(ProjectSpec.model_validate(order["spec"]), Store.open(root), root=root)
        try:
            decision = project.promote(
                order["version"], reason=order["reason"], force=order["force"]
            )
        finally:
            project.store.db.dispose()
    except SetpointError as exc:
        errors = exc.errors if isinstance(exc, ApiError | InvalidRequestError) else None
        return {
            "error": {
                "status": http_status(exc),
                "kind": http_kind(exc),
                "message": str(exc),
                "errors": errors,
            }
        }
    return {"decision": decision.to_dict()}


def close_gate_process() -> None:
    """End the worker's gate process, if it has one (at the server's shutdown)."""
    pool = _gate.pool
    if pool is not None:
        _gate.close(pool)
