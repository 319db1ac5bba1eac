"""The engine behind ``setpoint replay``: pacing, feedback timing and the send loop.

The pacing (:class:`TokenBucket`) and the feedback timing (:class:`FeedbackQueue`)
take their clocks as arguments, so they are tested without a server or a wait.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from setpoint.client import Client, new_request_id
from setpoint.errors import ServerError

__all__ = ["FeedbackQueue", "ReplayStats", "TokenBucket", "replay"]

FEEDBACK_CHUNK = 500  # outcomes per POST /v1/feedback


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up; a rate of 0 never waits."""

    def __init__(
        self,
        rate: float,
        *,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._last = clock()

    def take(self, n: int) -> float:
        """Wait until ``n`` tokens are there and spend them; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate) - n
        self._last = now
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        self._sleep(wait)
        self._tokens, self._last = 0.0, now + wait
        return wait


class FeedbackQueue:
    """Outcomes waiting until the replay clock reaches their record's time plus the delay."""

    def __init__(self, delay: timedelta) -> None:
        self.delay = delay
        self._heap: list[tuple[datetime, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def add(self, *, at: datetime, item: dict[str, Any]) -> None:
        """Hold ``item`` (a feedback item) for the record whose time is ``at``."""
        with self._lock:
            heapq.heappush(self._heap, (at + self.delay, next(self._seq), item))

    def pop_due(self, clock: datetime) -> list[dict[str, Any]]:
        """Every held item due at ``clock`` (record time + delay <= clock), oldest first."""
        due = []
        with self._lock:
            while self._heap and self._heap[0][0] <= clock:
                due.append(heapq.heappop(self._heap)[2])
        return due

    def drain(self) -> list[dict[str, Any]]:
        """Everything still held, oldest first: the flush at the end of a replay."""
        with self._lock:
            items = [entry[2] for entry in sorted(self._heap)]
            self._heap.clear()
        return items

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class ReplayStats:
    """What a replay did; ``errors`` counts records (or outcomes) by the server's error kind."""

    records: int = 0
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # the first message of each kind
    stored: int = 0
    duplicates: int = 0
    feedback_errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    aborted: ServerError | None = None

    @property
    def rate(self) -> float:
        """Records answered (well or not) per second of sending."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def latency(self, quantile: float) -> float | None:
        """A quantile of the predict latency in ms (nearest rank), None before any answer."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))]


def replay(
    client: Client,
    records: Sequence[dict[str, Any]],
    *,
    times: Sequence[datetime],
    labels: Sequence[Any] | None,
    rate: float,
    batch: int,
    concurrency: int,
    label_delay: timedelta,
    on_progress: Callable[[int], None] = lambda done: None,
) -> ReplayStats:
    """Send ``records`` (in time order) as live traffic; post ``labels`` as they come due.

    ``labels[i]`` is the true outcome of ``records[i]``, None when unknown (not
    posted); ``labels=None`` posts no feedback. An outcome is held until the
    replay clock (the time of the records being sent) reaches its record's time
    plus ``label_delay``; what is still held at the end is flushed. Stops early,
    with ``aborted`` set, when the server can no longer be reached.
    """
    stats = ReplayStats(records=len(records))
    queue = FeedbackQueue(label_delay)
    bucket = TokenBucket(rate, capacity=batch)
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency * 2)  # requests queued or in flight
    futures: list[Future[None]] = []

    def send(start: int, chunk: list[dict[str, Any]]) -> None:
        request_id = new_request_id()
        began = time.perf_counter()
        try:
            client.predict(chunk, request_id=request_id)
        except ServerError as exc:
            with lock:
                stats.errors[exc.kind] += len(chunk)
                stats.examples.setdefault(exc.kind, str(exc))
                if exc.status is None and stats.aborted is None:
                    stats.aborted = exc
        else:
            with lock:
                stats.ok += len(chunk)
                stats.latencies_ms.append((time.perf_counter() - began) * 1000)
            for index in range(len(chunk)):
                label = None if labels is None else labels[start + index]
                if label is not None:
                    at = times[start + index]
                    item = {"request_id": request_id, "index": index, "label": label}
                    queue.add(at=at, item={**item, "time": (at + label_delay).isoformat()})
        finally:
            slots.release()
            with lock:
                stats.sent += len(chunk)
                on_progress(stats.sent)

    def post(items: list[dict[str, Any]]) -> None:
        for offset in range(0, len(items), FEEDBACK_CHUNK):
            part = items[offset : offset + FEEDBACK_CHUNK]
            try:
                answer = client.feedback(part)
            except ServerError as exc:
                with lock:
                    stats.feedback_errors[exc.kind] += len(part)
                    stats.examples.setdefault(f"feedback {exc.kind}", str(exc))
                continue
            with lock:
                stats.stored += int(answer.get("stored", 0))
                stats.duplicates += int(answer.get("duplicates", 0))

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool:
        for start in range(0, len(records), batch):
            if stats.aborted is not None:
                break
            chunk = list(records[start : start + batch])
            bucket.take(len(chunk))
            due = queue.pop_due(times[start])
            if due:
                futures.append(pool.submit(post, due))
            slots.acquire()
            futures.append(pool.submit(send, start, chunk))
        for future in futures:
            future.result()  # a bug in a worker surfaces here, not silently
    stats.seconds = time.perf_counter() - began
    if stats.aborted is None:
        post(queue.drain())
    return stats
