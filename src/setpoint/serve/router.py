"""Which model answers: the aliases followed, hot swap, canary routing and its guard.

Each worker polls the aliases every ``serving.reload_interval`` seconds. A
moved alias is loaded and warmed in a thread, then swapped in by replacing one
reference, so a request in flight finishes on the scorer it started with. A
version that fails to load (corrupted artifact, wrong kind) is refused once,
recorded as a ``model_load_refused`` event, and the old scorer keeps serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from setpoint.config.spec import CanaryPolicy
from setpoint.errors import SetpointError
from setpoint.project import Project
from setpoint.registry import aliases as alias_ops
from setpoint.registry.events import record_event
from setpoint.serve.scorer import Scorer, load_scorer

__all__ = ["ROLES", "CanaryGuard", "ModelRouter", "Role", "bucket"]

log = logging.getLogger(__name__)

Role = Literal["champion", "shadow", "canary"]
ROLES: tuple[Role, ...] = ("champion", "shadow", "canary")
_LATENCY_WINDOW = 1000  # the canary's p99 is judged over its latest requests


def bucket(key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same entity always gets the same one.

    >>> bucket("2013-08-01-UA-1545") == bucket("2013-08-01-UA-1545")
    True
    >>> 0 <= bucket("x") < 1
    True
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) / 2**32


@dataclass(slots=True)
class CanaryGuard:
    """Counts one canary version's requests and says when it breaks ``policy``."""

    version: int
    policy: CanaryPolicy
    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))
    tripped: bool = False

    def observe(self, *, ok: bool, latency_ms: float) -> str | None:
        """Record one request; the reason the canary must go, once, when it must."""
        self.requests += 1
        self.errors += not ok
        if ok:
            self.latencies.append(latency_ms)
        if self.tripped or self.requests < self.policy.min_requests:
            return None
        rate = self.errors / self.requests
        p99 = self.p99()
        reason = None
        if rate > self.policy.max_error_rate:
            reason = f"error rate {rate:.3f} > {self.policy.max_error_rate}"
        elif p99 > self.policy.max_p99_ms:
            reason = f"p99 latency {p99:.1f} ms > {self.policy.max_p99_ms} ms"
        self.tripped = reason is not None
        return reason

    def p99(self) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    def numbers(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "p99_ms": self.p99(),
            "policy": self.policy.model_dump(),
        }


class ModelRouter:
    """The scorers of one worker, kept in step with the project's aliases."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.serving = project.spec.serving
        self.scorers: dict[Role, Scorer | None] = dict.fromkeys(ROLES)
        self.guard: CanaryGuard | None = None
        self._refused: set[tuple[str, int]] = set()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def champion(self) -> Scorer | None:
        return self.scorers["champion"]

    def route(self, key: str) -> tuple[Scorer | None, Role]:
        """The scorer for a request keyed by ``key`` (entity id or request id)."""
        canary = self.scorers["canary"]
        if canary is not None and bucket(key) < self.serving.canary.share:
            return canary, "canary"
        return self.scorers["champion"], "champion"

    # -- following the aliases ----------------------------------------------------------------

    async def run(self) -> None:
        """Poll the aliases until cancelled."""
        while True:
            try:
                await self.refresh()
            except SetpointError as exc:  # the store is down: keep serving what is loaded
                log.warning("cannot read the aliases: %s", exc)
            await asyncio.sleep(self.serving.reload_interval)

    async def refresh(self) -> dict[Role, int | None]:
        """Load every alias that moved; return the version each role now serves."""
        async with self._lock:
            wanted = await asyncio.to_thread(
                alias_ops.list_aliases, self.project.store.db, project=self.project.name
            )
            for role in ROLES:
                await self._follow(role, wanted.get(role))
        return {role: s.version if s else None for role, s in self.scorers.items()}

    async def _follow(self, role: Role, version: int | None) -> None:
        current = self.scorers[role]
        if version is None:
            self.scorers[role] = None
        elif current is None or current.version != version:
            if (role, version) in self._refused:
                return
            scorer = next((s for s in self.scorers.values() if s and s.version == version), None)
            if scorer is None:
                try:
                    scorer = await asyncio.to_thread(
                        load_scorer,
                        self.project,
                        version,
                        on_invalid=self.serving.on_invalid,
                        unseen_category=self.serving.unseen_category,
                        max_batch=self.serving.max_batch,
                    )
                except SetpointError as exc:
                    self._refused.add((role, version))
                    log.error("refusing %s version %d: %s", role, version, exc)
                    await asyncio.to_thread(
                        self._event,
                        "model_load_refused",
                        {"role": role, "version": version, "error": str(exc)},
                    )
                    return
            self.scorers[role] = scorer
            gc.freeze()  # the new model lives until the next swap: keep it out of full GC passes
            log.info("%s is now version %d", role, version)
        if role == "canary":
            canary = self.scorers["canary"]
            if canary is None:
                self.guard = None
            elif self.guard is None or self.guard.version != canary.version:
                self.guard = CanaryGuard(canary.version, self.serving.canary)

    # -- the canary's guard -------------------------------------------------------------------

    def observe_canary(self, *, version: int, ok: bool, latency_ms: float) -> None:
        guard = self.guard
        if guard is None or guard.version != version:
            return
        reason = guard.observe(ok=ok, latency_ms=latency_ms)
        if reason is not None:
            # Stop routing to it at once; the alias is removed off the request path.
            self.scorers["canary"] = None
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._pull_canary, guard.numbers(), reason)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _pull_canary(self, numbers: dict[str, Any], reason: str) -> None:
        name, version = self.project.name, numbers["version"]
        with self.project.store.db.write() as conn:
            # Another worker may have pulled it, or someone moved the alias meanwhile.
            if alias_ops.get_alias_in(conn, project=name, alias="canary") != version:
                return
            alias_ops.set_alias(
                conn,
                project=name,
                alias="canary",
                version=None,
                kind=alias_ops.AliasKind.CANARY_PULLED,
                reason=reason,
                actor="server",
            )
            record_event(
                conn, project=name, kind="canary_rollback", payload={**numbers, "reason": reason}
            )
        log.warning("canary version %d pulled: %s", version, reason)

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        with self.project.store.db.write() as conn:
            record_event(conn, project=self.project.name, kind=kind, payload=payload)

    async def close(self) -> None:
        for task in list(self._tasks):
            await task
