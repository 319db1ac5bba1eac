"""The leased job queue on SQLite and PostgreSQL: claims, leases, retries, crashes and races."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from setpoint.errors import ConflictError, InvalidParameterError, NotFoundError
from setpoint.registry.events import list_events, record_event
from setpoint.registry.jobs import (
    Job,
    active_job,
    advance,
    cancel,
    claim,
    complete,
    enqueue,
    fail,
    get_job,
    heartbeat,
    list_jobs,
    postpone,
)
from setpoint.store.db import Database
from setpoint.store.tables import events, jobs
from setpoint.store.workspace import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = 60.0
SECOND = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def add(store: Store, key: str, **options: Any) -> Job:
    options.setdefault("now", T0)
    job, created = enqueue(
        store.db,
        project=options.pop("project", "p"),
        kind=options.pop("kind", "retrain"),
        key=key,
        payload=options.pop("payload", {"key": key}),
        **options,
    )
    assert created
    return job


def take(store: Store, owner: str, seconds: float = 0.0, **options: Any) -> Job | None:
    return claim(store.db, project="p", owner=owner, lease_s=LEASE, now=at(seconds), **options)


def taken(store: Store, owner: str, seconds: float = 0.0, **options: Any) -> Job:
    job = take(store, owner, seconds, **options)
    assert job is not None, f"{owner} claimed nothing at T0+{seconds}s"
    return job


def test_enqueue_is_idempotent_by_project_and_key(store: Store) -> None:
    first = add(store, "retrain:7", payload={"dataset": 7}, max_attempts=5)
    assert (first.status, first.attempts, first.max_attempts) == ("queued", 0, 5)
    assert (first.payload, first.state, first.stage, first.owner) == (
        {"dataset": 7},
        {},
        None,
        None,
    )
    assert first.created_at == first.not_before == T0

    again, created = enqueue(
        store.db, project="p", kind="retrain", key="retrain:7", payload={"dataset": 8}
    )
    assert not created
    assert again == first  # the stored payload is kept, not replaced

    other_project = add(store, "retrain:7", project="q")
    other_key = add(store, "retrain:8")
    assert len({first.id, other_project.id, other_key.id}) == 3
    assert [j.id for j in list_jobs(store.db, project="p")] == [other_key.id, first.id]


def test_concurrent_enqueues_of_one_key_make_one_job(store: Store) -> None:
    assert store.db.engine is not None  # migrated once, before the threads race
    barrier = threading.Barrier(6)
    results: list[tuple[Job, bool]] = []

    def enqueue_one() -> None:
        db = Database(store.db.url)  # a connection pool of its own, as another process has
        try:
            barrier.wait()
            results.append(enqueue(db, project="p", kind="retrain", key="same", payload={"n": 1}))
        finally:
            db.dispose()

    threads = [threading.Thread(target=enqueue_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert len({job.id for job, _ in results}) == 1
    assert len(list_jobs(store.db, project="p")) == 1


def test_claim_takes_the_oldest_and_never_a_job_under_a_live_lease(store: Store) -> None:
    a, b = add(store, "a"), add(store, "b")
    first = taken(store, "w1")
    assert first.id == a.id
    assert (first.status, first.owner, first.attempts) == ("running", "w1", 1)
    assert first.lease_expires == at(LEASE)
    assert not first.expired(at(LEASE))
    assert first.expired(at(LEASE + 1))
    assert taken(store, "w2").id == b.id
    assert take(store, "w3") is None
    assert take(store, "w3", LEASE) is None  # the lease holds until it is past
    assert get_job(store.db, project="p", job_id=a.id).owner == "w1"


def test_a_job_not_yet_due_is_not_claimed(store: Store) -> None:
    add(store, "later", now=at(100))
    assert take(store, "w1", 99) is None
    assert taken(store, "w1", 100).key == "later"


def test_claim_filters_by_kind(store: Store) -> None:
    add(store, "r", kind="retrain")
    score = add(store, "s", kind="score")
    assert taken(store, "w1", kinds=["score"]).id == score.id
    assert take(store, "w1", kinds=("score",)) is None
    assert taken(store, "w1", kinds={"retrain", "score"}).key == "r"


def test_an_expired_lease_goes_to_the_next_claimer_and_the_old_owner_is_locked_out(
    store: Store,
) -> None:
    job = add(store, "j")
    taken(store, "w1")
    advance(store.db, job.id, owner="w1", stage="data", state={"dataset": 3}, now=at(10))

    again = taken(store, "w2", LEASE + 1)
    assert again.id == job.id
    assert (again.owner, again.attempts, again.lease_expires) == ("w2", 2, at(2 * LEASE + 1))
    assert (again.stage, again.state) == ("data", {"dataset": 3})  # where to resume
    assert again.error is not None
    assert "'w1'" in again.error
    assert "expired" in again.error

    assert not heartbeat(store.db, job, owner="w1", lease_s=LEASE, now=at(LEASE + 2))
    with pytest.raises(ConflictError, match="does not hold it") as caught:
        advance(store.db, job.id, owner="w1", stage="train", state={"model": 9})
    assert caught.value.context["holder"] == "w2"
    with pytest.raises(ConflictError):
        complete(store.db, job.id, owner="w1", state={"model": 9})
    with pytest.raises(ConflictError):
        fail(store.db, job.id, owner="w1", error="late")
    assert get_job(store.db, project="p", job_id=job.id) == again  # nothing changed

    done = complete(store.db, job, owner="w2", state={"model": 4}, now=at(LEASE + 30))
    assert (done.status, done.finished_at, done.lease_expires) == ("done", at(LEASE + 30), None)
    assert done.state == {"dataset": 3, "model": 4}
    assert take(store, "w3", 10 * LEASE) is None


def test_heartbeat_extends_the_lease_while_the_owner_holds_it(store: Store) -> None:
    job = add(store, "j")
    taken(store, "w1")
    assert heartbeat(store.db, job.id, owner="w1", lease_s=LEASE, now=at(50))
    assert take(store, "w2", LEASE + 1) is None  # the lease now runs to T0+110s
    assert not heartbeat(store.db, job.id, owner="w2", lease_s=LEASE, now=at(60))
    assert get_job(store.db, project="p", job_id=job.id).lease_expires == at(110)
    # expired but not taken: still the owner's, so a late heartbeat keeps it
    assert heartbeat(store.db, job.id, owner="w1", lease_s=LEASE, now=at(200))
    assert take(store, "w2", 201) is None


def test_advance_merges_state_and_keeps_the_last_stage(store: Store) -> None:
    job = add(store, "j")
    taken(store, "w1")
    advance(store.db, job, owner="w1", stage="data", state={"dataset": 3, "rows": 10})
    after = advance(store.db, job, owner="w1", stage="train", state={"model": 7, "rows": 12})
    assert after.stage == "train"
    assert after.state == {"dataset": 3, "rows": 12, "model": 7}
    assert after.status == "running"


def register(store: Store, job: Job, *, owner: str, version: int, crash: bool = False) -> None:
    """Register a model version and record the stage in one transaction, as the loop does."""
    with store.db.write() as conn:
        record_event(conn, project="p", kind="model_registered", payload={"version": version})
        state = {"model": version}
        advance(store.db, job.id, owner=owner, stage="train", state=state, conn=conn)
        if crash:
            raise RuntimeError("the registration failed after the stage was recorded")


def test_advance_in_the_callers_transaction_commits_or_rolls_back_with_it(store: Store) -> None:
    job = add(store, "j")
    taken(store, "w1")
    with pytest.raises(RuntimeError):
        register(store, job, owner="w1", version=1, crash=True)
    assert get_job(store.db, project="p", job_id=job.id).stage is None

    register(store, job, owner="w1", version=2)
    assert get_job(store.db, project="p", job_id=job.id).state == {"model": 2}

    taken(store, "w2", LEASE + 1)  # w1 loses the job: its next registration must not land
    with pytest.raises(ConflictError):
        register(store, job, owner="w1", version=3)
    registered = list_events(store.db, project="p", kind="model_registered")
    assert [e.payload["version"] for e in registered] == [2]
    assert get_job(store.db, project="p", job_id=job.id).state == {"model": 2}


def test_fail_backs_off_and_makes_the_job_dead_at_max_attempts(store: Store) -> None:
    job = add(store, "j", max_attempts=3)
    backoff = {"backoff_s": 10.0, "max_backoff_s": 15.0}

    taken(store, "w1")
    retry = fail(store.db, job.id, owner="w1", error="boom 1", now=at(1), **backoff)
    assert (retry.status, retry.owner, retry.lease_expires) == ("queued", None, None)
    assert (retry.not_before, retry.error) == (at(11), "boom 1")
    assert take(store, "w1", 10.9) is None
    assert taken(store, "w2", 11).attempts == 2

    retry = fail(store.db, job.id, owner="w2", error="boom 2", now=at(12), **backoff)
    assert retry.not_before == at(27)  # 20s doubled, capped at 15s
    assert take(store, "w1", 26) is None
    assert taken(store, "w3", 27).attempts == 3

    dead = fail(store.db, job.id, owner="w3", error="boom\x00 3", now=at(30), **backoff)
    assert (dead.status, dead.finished_at, dead.attempts) == ("dead", at(30), 3)
    assert dead.error == "boom\\x00 3"  # kept, made storable
    assert take(store, "w1", 10_000) is None
    assert active_job(store.db, project="p", kind="retrain") is None


def test_a_crash_backs_off_doubling_with_each_attempt(store: Store) -> None:
    job = add(store, "crash", max_attempts=4)
    backoff = {"crash_backoff_s": 30.0, "max_backoff_s": 3600.0}
    assert claim(store.db, project="p", owner="w1", lease_s=LEASE, now=at(0), **backoff)
    # w1 died. Once its lease ran out the job waits 30 s more; after the next death, 60.
    expires = at(LEASE)
    for waited in (30, 60):
        assert (
            claim(store.db, project="p", owner="w", lease_s=LEASE, now=expires + SECOND, **backoff)
            is None
        )
        queued = get_job(store.db, project="p", job_id=job.id)
        assert queued.status == "queued"
        assert queued.not_before == expires + timedelta(seconds=waited)
        again = claim(
            store.db,
            project="p",
            owner="w",
            lease_s=LEASE,
            now=expires + timedelta(seconds=waited),
            **backoff,
        )
        assert again is not None
        assert again.id == job.id
        expires = again.lease_expires
        assert expires is not None
    assert get_job(store.db, project="p", job_id=job.id).attempts == 3
    retries = list_events(store.db, project="p", kind="job_retry")
    assert len(retries) == 2


def test_a_crash_loop_stops_at_max_attempts_and_the_next_job_is_claimed(store: Store) -> None:
    crashing = add(store, "crash", max_attempts=2)
    behind = add(store, "behind")
    assert taken(store, "w1").id == crashing.id
    taken(store, "w2")  # the next job; then w2 dies too
    assert taken(store, "w3", LEASE + 1).id == crashing.id  # w1 died: attempt 2

    got = taken(store, "w4", 3 * LEASE)  # w3 died: no attempt 3, and w2's job is next
    assert got.id == behind.id
    dead = get_job(store.db, project="p", job_id=crashing.id)
    assert (dead.status, dead.attempts, dead.finished_at) == ("dead", 2, at(3 * LEASE))
    assert dead.error is not None
    assert dead.error.startswith("gave up after 2 attempts: the lease of 'w3' expired")
    kinds = [e.kind for e in list_events(store.db, project="p", kind="job_dead")]
    assert kinds == ["job_dead"]


def test_claim_takes_only_the_projects_jobs(store: Store) -> None:
    add(store, "elsewhere", project="q")
    assert take(store, "w1") is None
    assert claim(store.db, project="q", owner="w1", lease_s=LEASE, now=T0) is not None


def test_a_crashed_job_waiting_out_its_backoff_does_not_hold_up_the_next(store: Store) -> None:
    crashed, behind = add(store, "crash"), add(store, "behind")
    backoff = {"crash_backoff_s": 1.0}
    assert taken(store, "w1", **backoff).id == crashed.id
    # w1 died; half a second after its lease ran out the job still waits, the next one runs
    assert taken(store, "w2", LEASE + 0.5, **backoff).id == behind.id
    waiting = get_job(store.db, project="p", job_id=crashed.id)
    assert (waiting.status, waiting.owner, waiting.not_before) == ("queued", None, at(LEASE + 1))
    assert waiting.error is not None
    assert "the lease of 'w1' expired" in waiting.error
    assert taken(store, "w3", LEASE + 1, **backoff).id == crashed.id


def test_a_crash_at_the_last_attempt_is_dead_at_once_under_a_backoff(store: Store) -> None:
    job = add(store, "crash", max_attempts=1)
    taken(store, "w1")
    assert take(store, "w2", LEASE + 1, crash_backoff_s=30.0) is None
    dead = get_job(store.db, project="p", job_id=job.id)
    assert (dead.status, dead.finished_at) == ("dead", at(LEASE + 1))
    assert not list_events(store.db, project="p", kind="job_retry")


def test_the_backoff_of_fail_doubles_with_each_attempt(store: Store) -> None:
    job = add(store, "j", max_attempts=4)
    for attempt, seconds in enumerate((10, 20, 40)):
        start = attempt * 100
        taken(store, "w1", start)
        retry = fail(store.db, job, owner="w1", error="boom", now=at(start), backoff_s=10.0)
        assert retry.not_before == at(start + seconds)


def test_a_worker_holding_two_jobs_changes_only_the_one_it_names(store: Store) -> None:
    a, b = add(store, "a"), add(store, "b")
    taken(store, "w1")
    taken(store, "w1")
    assert heartbeat(store.db, a, owner="w1", lease_s=LEASE, now=at(30))
    assert get_job(store.db, project="p", job_id=b.id).lease_expires == at(LEASE)
    complete(store.db, a, owner="w1", now=at(31))
    still = get_job(store.db, project="p", job_id=b.id)
    assert (still.status, still.owner) == ("running", "w1")


def test_postpone_hands_the_job_back_without_spending_an_attempt(store: Store) -> None:
    job = add(store, "watch", max_attempts=1)
    taken(store, "w1")
    advance(store.db, job, owner="w1", stage="gate", state={"version": 3})
    waiting = postpone(
        store.db, job, owner="w1", until=at(100), stage="shadow", state={"since": 1}, now=at(5)
    )
    assert (waiting.status, waiting.owner, waiting.lease_expires) == ("queued", None, None)
    assert (waiting.not_before, waiting.updated_at, waiting.attempts) == (at(100), at(5), 0)
    assert (waiting.stage, waiting.state) == ("shadow", {"version": 3, "since": 1})
    assert list_events(store.db, project="p")[0].kind == "job_waiting"  # newest first
    with pytest.raises(ConflictError, match="Cannot postpone job"):
        postpone(store.db, job, owner="w1", until=at(200))
    assert take(store, "w2", 99) is None
    # a single attempt allowed, and the postponed claim did not use it up
    again = taken(store, "w2", 100)
    assert (again.attempts, again.stage) == (1, "shadow")
    kept = postpone(store.db, again, owner="w2", until=at(300), now=at(101))
    assert (kept.stage, kept.state, kept.attempts) == ("shadow", {"version": 3, "since": 1}, 0)
    complete(store.db, taken(store, "w3", 300), owner="w3")

    retried = add(store, "retried")
    fail(store.db, taken(store, "w4", 400), owner="w4", error="boom", now=at(400), backoff_s=0)
    assert taken(store, "w4", 401).attempts == 2
    # only the claim handed back is given back, not the failed attempt before it
    assert postpone(store.db, retried, owner="w4", until=at(500)).attempts == 1


def test_cancel(store: Store) -> None:
    queued, running, finished = add(store, "q"), add(store, "r"), add(store, "f")
    cancelled = cancel(store.db, queued.id, reason="superseded", now=at(5))
    assert (cancelled.status, cancelled.error, cancelled.finished_at) == (
        "cancelled",
        "superseded",
        at(5),
    )
    assert cancel(store.db, queued.id, reason="again") == cancelled

    assert taken(store, "w1").id == running.id
    cancel(store.db, running, reason="operator")
    assert not heartbeat(store.db, running, owner="w1", lease_s=LEASE, now=at(1))
    with pytest.raises(ConflictError, match="cancelled"):
        complete(store.db, running, owner="w1")

    complete(store.db, taken(store, "w1"), owner="w1")
    with pytest.raises(ConflictError, match="already done"):
        cancel(store.db, finished, reason="late")
    assert get_job(store.db, project="p", job_id=finished.id).status == "done"
    assert take(store, "w1", 10_000) is None


def test_list_jobs_active_job_and_get_job(store: Store) -> None:
    a, b, c = add(store, "a"), add(store, "b", kind="score"), add(store, "c")
    assert active_job(store.db, project="p", kind="retrain") == a
    complete(store.db, taken(store, "w1"), owner="w1")
    assert active_job(store.db, project="p", kind="retrain") == get_job(
        store.db, project="p", job_id=c.id
    )
    assert active_job(store.db, project="q", kind="retrain") is None

    assert [j.id for j in list_jobs(store.db, project="p")] == [c.id, b.id, a.id]
    assert [j.id for j in list_jobs(store.db, project="p", status="done")] == [a.id]
    assert [j.id for j in list_jobs(store.db, project="p", limit=1)] == [c.id]
    with pytest.raises(NotFoundError):
        get_job(store.db, project="q", job_id=a.id)
    with pytest.raises(NotFoundError):
        cancel(store.db, 10_000, reason="nothing")


def test_every_change_of_status_is_an_event(store: Store) -> None:
    job = add(store, "j")
    taken(store, "w1")
    advance(store.db, job, owner="w1", stage="data", state={})
    fail(store.db, job, owner="w1", error="boom", now=at(1), backoff_s=0)
    complete(store.db, taken(store, "w2", 2), owner="w2")
    logged = list_events(store.db, project="p")[::-1]
    assert [e.kind for e in logged] == [
        "job_enqueued",
        "job_claimed",
        "job_stage",
        "job_retry",
        "job_claimed",
        "job_done",
    ]
    assert {e.payload["job"] for e in logged} == {job.id}


CALLS: dict[str, tuple[Any, dict[str, Any]]] = {
    "claim": (claim, {"project": "p", "owner": "w", "lease_s": 1}),
    "enqueue": (enqueue, {"project": "p", "kind": "k", "key": "k", "payload": {}}),
    "fail": (fail, {"job_id": 1, "owner": "w", "error": "e"}),
    "list_jobs": (list_jobs, {"project": "p"}),
}


@pytest.mark.parametrize(
    ("function", "bad"),
    [
        ("claim", {"lease_s": 0}),
        ("claim", {"lease_s": math.nan}),
        ("claim", {"lease_s": True}),
        ("claim", {"lease_s": 10**9}),
        ("claim", {"owner": ""}),
        ("claim", {"project": "p" * 65}),
        ("claim", {"kinds": "retrain"}),
        ("claim", {"kinds": []}),
        ("claim", {"now": T0.replace(tzinfo=None)}),
        ("enqueue", {"max_attempts": 0}),
        ("enqueue", {"key": "k" * 201}),
        ("enqueue", {"kind": "bad\x00kind"}),
        ("enqueue", {"payload": [1]}),
        ("fail", {"backoff_s": -1}),
        ("list_jobs", {"status": "failed"}),
        ("list_jobs", {"limit": 0}),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_written(
    store: Store, function: str, bad: dict[str, Any]
) -> None:
    call, good = CALLS[function]
    (parameter,) = bad
    with pytest.raises(InvalidParameterError, match=f"The '{parameter}' parameter of {function}"):
        call(store.db, **{**good, **bad})
    with store.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 0


CLAIMER = textwrap.dedent(
    """
    import json, sys, time
    from setpoint.registry.jobs import claim, complete
    from setpoint.store.workspace import Store

    store = Store.open(sys.argv[1])
    owner = sys.argv[2]
    store.db.engine  # connected (and migrated) before the race starts
    print("ready", flush=True)
    sys.stdin.readline()
    claimed = []
    while (job := claim(store.db, project="race", owner=owner, lease_s=600)) is not None:
        claimed.append(job.id)
        time.sleep(0.005)  # the work, outside any transaction: the other claimer gets its turn
        if job.id % 2:  # half stay running under their lease, half are done
            complete(store.db, job, owner=owner)
    print(json.dumps(claimed), flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_racing_never_claim_one_job_twice(
    store: Store, store_env: dict[str, str], tmp_path: Path
) -> None:
    ids = {
        enqueue(store.db, project="race", kind="k", key=f"job-{i}", payload={})[0].id
        for i in range(40)
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(tmp_path), owner],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=store_env,
            text=True,
        )
        for owner in ("a", "b")
    ]
    try:
        for child in children:  # a barrier: both are connected before either claims
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        claimed = [json.loads(child.communicate(timeout=60)[0]) for child in children]
    finally:
        for child in children:
            child.kill()
    assert all(child.returncode == 0 for child in children)
    every = claimed[0] + claimed[1]
    assert claimed[0], "process b took every job: there was no race"
    assert claimed[1], "process a took every job: there was no race"
    assert sorted(every) == sorted(ids), "a job was claimed twice, or never"
    owners = {j.id: j.owner for j in list_jobs(store.db, project="race", limit=100)}
    assert all(owners[i] == "a" for i in claimed[0])
    assert all(owners[i] == "b" for i in claimed[1])


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from setpoint.registry.jobs import advance, claim
    from setpoint.store.workspace import Store

    store = Store.open(sys.argv[1])
    job = claim(store.db, project="p", owner="doomed", lease_s=60)
    advance(store.db, job, owner="doomed", stage="train", state={"model": 7})
    os.kill(os.getpid(), signal.SIGKILL)  # mid-job: the next stage never starts
    """
)


@pytest.mark.slow
def test_a_job_of_a_killed_worker_is_resumed_from_its_stage(
    store: Store, store_env: dict[str, str], tmp_path: Path
) -> None:
    job, _ = enqueue(store.db, project="p", kind="retrain", key="j", payload={"dataset": 1})
    child = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path)], env=store_env, timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL
    left = get_job(store.db, project="p", job_id=job.id)
    assert (left.status, left.owner, left.stage) == ("running", "doomed", "train")
    assert claim(store.db, project="p", owner="heir", lease_s=60) is None  # lease still live

    assert left.lease_expires is not None
    resumed = claim(
        store.db,
        project="p",
        owner="heir",
        lease_s=60,
        now=left.lease_expires + timedelta(seconds=1),
    )
    assert resumed is not None
    assert resumed.id == job.id
    assert (resumed.attempts, resumed.stage, resumed.state) == (2, "train", {"model": 7})
