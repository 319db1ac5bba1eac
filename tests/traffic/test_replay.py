"""The replay engine from Python: pacing, feedback timing and the send loop.

The pacing and the feedback timing are pure, tested with a fake clock; the
send loop runs against an in-process client that records what it is sent (the
same loop against a real ``setpoint serve`` is in tests/serve/test_replayed.py).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from setpoint.errors import InvalidParameterError, ServerError
from setpoint.traffic.records import ReplayPlan
from setpoint.traffic.replay import FeedbackQueue, TokenBucket, replay

T0 = datetime(2013, 8, 1, 4, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A client that answers every call and keeps, in order, what it was sent."""

    def __init__(self, *, fail: dict[int, ServerError] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail or {}  # predict call number -> the error it raises
        self._lock = threading.Lock()
        self._predicts = 0

    def predict(
        self, records: Sequence[Mapping[str, Any]], *, client_request_id: str | None = None
    ) -> SimpleNamespace:
        # as the server, the recorder names each request itself: feedback must use that name
        request_id = uuid.uuid4().hex
        with self._lock:
            number = self._predicts
            self._predicts += 1
            self.calls.append(("predict", (request_id, [dict(r) for r in records])))
        if number in self.fail:
            raise self.fail[number]
        return SimpleNamespace(request_id=request_id, client_request_id=client_request_id)

    def feedback(self, items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        with self._lock:
            self.calls.append(("feedback", [dict(i) for i in items]))
        return {"stored": len(items), "duplicates": 0}

    def sent(self) -> list[dict[str, Any]]:
        return [r for _, (_, batch) in self.predicts() for r in batch]

    def predicts(self) -> list[tuple[str, Any]]:
        return [(kind, body) for kind, body in self.calls if kind == "predict"]

    def outcomes(self) -> list[dict[str, Any]]:
        return [item for kind, body in self.calls if kind == "feedback" for item in body]


def hourly_plan(n: int, *, labels: bool = True) -> ReplayPlan:
    return ReplayPlan(
        records=[{"n": i} for i in range(n)],
        times=[T0 + timedelta(hours=i) for i in range(n)],
        labels=[i % 2 == 0 for i in range(n)] if labels else None,
    )


def unreachable() -> ServerError:
    return ServerError("gone", url="http://x", status=None, kind="unreachable")


# Pacing and feedback timing --------------------------------------------------------


def test_feedback_waits_for_the_replay_clock() -> None:
    queue = FeedbackQueue(timedelta(hours=6))
    for hour in (5, 0, 3):
        queue.add(at=T0 + timedelta(hours=hour), item={"label": hour})
    assert queue.pop_due(T0 + timedelta(hours=5, minutes=59)) == []
    assert queue.pop_due(T0 + timedelta(hours=6)) == [{"label": 0}]  # due exactly at +6h
    assert queue.pop_due(T0 + timedelta(hours=10)) == [{"label": 3}]
    assert len(queue) == 1
    assert queue.drain() == [{"label": 5}]
    assert queue.drain() == []


def test_feedback_without_delay_is_due_at_its_own_time() -> None:
    queue = FeedbackQueue(timedelta(0))
    queue.add(at=T0, item={"label": True})
    assert queue.pop_due(T0 - timedelta(seconds=1)) == []
    assert queue.pop_due(T0) == [{"label": True}]


def test_token_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, capacity=1, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        bucket.take(1)
    # The first token is in the bucket; each of the other 99 costs 0.1 s.
    assert clock.now == pytest.approx(9.9)


def test_token_bucket_counts_records_not_requests() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, capacity=10, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        bucket.take(10)
    assert clock.now == pytest.approx(1.9)  # 200 records at 100/s, the first 10 free


def test_token_bucket_with_rate_zero_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.0, capacity=1, clock=clock, sleep=clock.sleep)
    assert sum(bucket.take(1000) for _ in range(10)) == 0
    assert clock.now == 0


# The send loop ---------------------------------------------------------------------


def test_replay_sends_in_order_in_batches_and_posts_each_outcome_once() -> None:
    client = Recorder()
    plan = hourly_plan(10)
    stats = replay(client, plan, rate=0, batch=3, concurrency=1, label_delay=timedelta(0))
    predicts = client.predicts()
    assert [len(batch) for _, (_, batch) in predicts] == [3, 3, 3, 1]
    assert client.sent() == plan.records
    ids = [request_id for _, (request_id, _) in predicts]
    assert len(set(ids)) == 4
    assert all(len(i) == 32 for i in ids)
    # Each outcome names its prediction by request id and index in its batch.
    outcomes = sorted(client.outcomes(), key=lambda o: (ids.index(o["request_id"]), o["index"]))
    assert [(ids.index(o["request_id"]) * 3 + o["index"]) for o in outcomes] == list(range(10))
    assert [o["label"] for o in outcomes] == plan.labels
    assert outcomes[4]["time"] == (T0 + timedelta(hours=4)).isoformat()
    assert (stats.records, stats.sent, stats.ok, stats.stored) == (10, 10, 10, 10)
    assert len(stats.latencies_ms) == 4
    assert stats.latency(0.5) is not None


def test_outcomes_are_held_until_the_replay_clock_passes_their_delay() -> None:
    client = Recorder()
    replay(client, hourly_plan(10), rate=0, concurrency=1, label_delay=timedelta(hours=3))
    record_of = {request_id: batch[0]["n"] for _, (request_id, batch) in client.predicts()}
    posts = [
        [record_of[o["request_id"]] for o in body] for k, body in client.calls if k == "feedback"
    ]
    assert sorted(n for post in posts for n in post) == list(range(10))
    # The outcome of the record at hour 0 is due when the one at hour 3 goes out: it is
    # posted during the replay; those of hours 7 to 9 never come due, so they wait for
    # the flush at the end, after the last prediction.
    assert len(posts) >= 2
    assert {7, 8, 9} <= set(posts[-1])
    assert not {7, 8, 9} & {n for post in posts[:-1] for n in post}
    kinds = [kind for kind, _ in client.calls]
    assert kinds[-1] == "feedback"
    assert client.outcomes()[0]["time"] == (T0 + timedelta(hours=3)).isoformat()


def test_no_feedback_and_unknown_outcomes_post_nothing() -> None:
    client = Recorder()
    stats = replay(client, hourly_plan(4), rate=0, feedback=False, label_delay=timedelta(0))
    assert client.outcomes() == []
    assert stats.stored == 0
    unknown = ReplayPlan(records=[{}, {}], times=[T0, T0], labels=[None, True])
    replay(client, unknown, rate=0, label_delay=timedelta(0))
    assert [o["label"] for o in client.outcomes()] == [True]


def test_errors_are_counted_by_kind_and_unreachable_stops_the_replay() -> None:
    refused = ServerError("no", url="http://x", status=422, kind="invalid_request")
    client = Recorder(fail={0: refused, 2: unreachable()})
    stats = replay(client, hourly_plan(50), rate=0, concurrency=1, label_delay=timedelta(0))
    assert stats.errors == {"invalid_request": 1, "unreachable": 1}
    assert stats.examples["invalid_request"] == "no"
    assert stats.aborted is not None
    assert stats.aborted.kind == "unreachable"
    assert stats.sent < 50  # stopped early: the server is gone
    assert stats.ok == stats.sent - 2


def test_feedback_is_paced_in_posts_of_one_second() -> None:
    client = Recorder()
    replay(client, hourly_plan(60), rate=0, feedback_rate=100, label_delay=timedelta(days=9))
    # 60 outcomes (all in the final flush) at 100 a second, in posts of at most 100
    assert [len(b) for k, b in client.calls if k == "feedback"] == [60]
    client = Recorder()
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    replay(
        client,
        hourly_plan(60),
        rate=0,
        feedback_rate=40,
        label_delay=timedelta(days=9),
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert [len(b) for k, b in client.calls if k == "feedback"] == [40, 20]
    assert waits == [pytest.approx(0.5)]  # the 20 after the first 40 wait half a second


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"rate": -1}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"feedback_rate": float("inf")}, "feedback_rate"),
        ({"batch": 0}, "batch"),
        ({"concurrency": 65}, "concurrency"),
        ({"label_delay": timedelta(hours=-1)}, "label_delay"),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(
    options: dict[str, Any], parameter: str
) -> None:
    client = Recorder()
    with pytest.raises(InvalidParameterError) as caught:
        replay(client, hourly_plan(2), **options)
    assert caught.value.parameter == parameter
    assert client.calls == []
