"""Replay a plan of records as live traffic: pacing, feedback timing and the send loop.

::

    from datetime import timedelta

    from setpoint import Client
    from setpoint.traffic.records import ReplayColumns, plan_replay
    from setpoint.traffic.replay import replay

    plan = plan_replay("held-back.parquet", columns=ReplayColumns(time="at", label="y"))
    with Client("http://127.0.0.1:8000") as client:
        stats = replay(client, plan, rate=200, label_delay=timedelta(hours=6))

The client is anything with ``predict`` and ``feedback`` as ``setpoint.Client``
has them (:class:`ReplayClient`), so this layer does not depend on the HTTP
client. The pacing (:class:`TokenBucket`) and the feedback timing
(:class:`FeedbackQueue`) take their clocks as arguments, so they are tested
without a server or a wait.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from setpoint.errors import InvalidParameterError, ServerError

if TYPE_CHECKING:
    # Only for the annotation: the command line imports this module before it needs pandas.
    from setpoint.traffic.records import ReplayPlan

__all__ = [
    "FEEDBACK_CHUNK",
    "Answered",
    "FeedbackQueue",
    "ReplayClient",
    "ReplayStats",
    "TokenBucket",
    "replay",
]

FEEDBACK_CHUNK = 500  # outcomes per POST /v1/feedback
MAX_CONCURRENCY = 64


class Answered(Protocol):
    """What a replay reads of a predict's answer: the server's name for the request."""

    @property
    def request_id(self) -> str: ...


class ReplayClient(Protocol):
    """What a replay needs of a client; ``setpoint.Client`` is one.

    ``predict`` raises :class:`ServerError` when the server refuses (``status``
    set) or cannot be reached (``status`` None); ``feedback`` answers
    ``{"stored": n, "duplicates": m}``.
    """

    def predict(
        self, records: Sequence[Mapping[str, Any]], *, client_request_id: str | None = None
    ) -> Answered: ...

    def feedback(self, items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]: ...


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up; a rate of 0 never waits.

    >>> now = [0.0]
    >>> def sleep(seconds: float) -> None:
    ...     now[0] += seconds
    >>> bucket = TokenBucket(2.0, capacity=1, clock=lambda: now[0], sleep=sleep)
    >>> [bucket.take(1) for _ in range(3)]  # one saved up, then one each half second
    [0.0, 0.5, 0.5]
    """

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
        """A quantile of the predict latency in ms (nearest rank), None before any answer.

        >>> ReplayStats(latencies_ms=[4.0, 1.0, 3.0, 2.0]).latency(0.5)
        2.0
        """
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))]


def replay(
    client: ReplayClient,
    plan: ReplayPlan,
    *,
    rate: float = 50.0,
    feedback_rate: float = 0.0,
    batch: int = 1,
    concurrency: int = 4,
    label_delay: timedelta = timedelta(hours=6),
    feedback: bool = True,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayStats:
    """Send ``plan.records`` in time order as live traffic; post their outcomes as they come due.

    ``rate`` is records a second and ``feedback_rate`` outcomes a second (0: as
    fast as the server answers); ``batch`` records go in each predict request,
    ``concurrency`` of them in flight at once. An outcome is held until the
    replay clock (the time of the records being sent) reaches its record's time
    plus ``label_delay``, then posted, by one poster so that the outcomes go in
    order and never hold up a predict; what is still held at the end is flushed.
    ``feedback=False`` (or a plan without labels) posts none. ``on_progress``
    gets the number of records answered so far. Stops early, with ``aborted``
    set, when the server can no longer be reached. ``clock`` and ``sleep`` pace
    both rates, so that a pace can be checked without waiting for it.
    """
    _check_options(rate, feedback_rate, batch, concurrency, label_delay)
    labels = plan.labels if feedback else None
    times = plan.times
    stats = ReplayStats(records=len(plan.records))
    queue = FeedbackQueue(label_delay)
    bucket = TokenBucket(rate, capacity=batch, clock=clock, sleep=sleep)
    # Paced outcomes go in small posts, so that the pace is kept within a second.
    chunk = (
        FEEDBACK_CHUNK if feedback_rate <= 0 else max(1, min(FEEDBACK_CHUNK, int(feedback_rate)))
    )
    feedback_bucket = TokenBucket(feedback_rate, capacity=chunk, clock=clock, sleep=sleep)
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency * 2)  # requests queued or in flight
    progress = on_progress or (lambda done: None)

    def send(start: int, records: list[dict[str, Any]]) -> None:
        began = time.perf_counter()
        try:
            # one client id for every retry; feedback names the request by the server's id
            answer = client.predict(records, client_request_id=uuid.uuid4().hex)
        except ServerError as exc:
            with lock:
                stats.errors[exc.kind] += len(records)
                stats.examples.setdefault(exc.kind, str(exc))
                if exc.status is None and stats.aborted is None:
                    stats.aborted = exc
        else:
            with lock:
                stats.ok += len(records)
                stats.latencies_ms.append((time.perf_counter() - began) * 1000)
            for index in range(len(records)):
                label = None if labels is None else labels[start + index]
                if label is not None:
                    at = times[start + index]
                    item = {"request_id": answer.request_id, "index": index, "label": label}
                    queue.add(at=at, item={**item, "time": (at + label_delay).isoformat()})
        finally:
            slots.release()
            with lock:
                stats.sent += len(records)
                progress(stats.sent)

    def post(items: list[dict[str, Any]]) -> None:
        for offset in range(0, len(items), chunk):
            part = items[offset : offset + chunk]
            feedback_bucket.take(len(part))
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

    futures: list[Future[None]] = []
    began = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-feedback") as poster,
    ):
        for start in range(0, len(plan.records), batch):
            if stats.aborted is not None:
                break
            records = plan.records[start : start + batch]
            bucket.take(len(records))
            due = queue.pop_due(times[start])
            if due:
                futures.append(poster.submit(post, due))
            slots.acquire()
            futures.append(pool.submit(send, start, records))
        for future in futures:
            future.result()  # a bug in a worker surfaces here, not silently
    stats.seconds = time.perf_counter() - began
    if stats.aborted is None:
        post(queue.drain())
    return stats


def _check_options(
    rate: float, feedback_rate: float, batch: int, concurrency: int, label_delay: timedelta
) -> None:
    def wrong(parameter: str, expected: str, got: object) -> InvalidParameterError:
        return InvalidParameterError(
            owner="replay", parameter=parameter, expected=expected, got=got
        )

    for name, value in (("rate", rate), ("feedback_rate", feedback_rate)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise wrong(name, "a number >= 0 a second (0: no limit)", value)
        if not math.isfinite(value):
            raise wrong(name, "a finite number (0: no limit)", value)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise wrong("batch", "an int >= 1", batch)
    ok = not isinstance(concurrency, bool) and isinstance(concurrency, int)
    if not (ok and 1 <= concurrency <= MAX_CONCURRENCY):
        raise wrong("concurrency", f"an int from 1 to {MAX_CONCURRENCY}", concurrency)
    if not isinstance(label_delay, timedelta) or label_delay < timedelta(0):
        raise wrong("label_delay", "a timedelta >= 0", label_delay)
