"""The prediction log in the predictions table, on SQLite and PostgreSQL: group commit, durability,
concurrency, failure."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from setpoint.errors import InvalidParameterError, StoreError
from setpoint.store.db import Database
from setpoint.store.tables import predictions
from setpoint.traffic.db_log import DatabasePredictionLog
from setpoint.traffic.segments import SCHEMA

EXPECTED = pa.schema(
    [
        ("request_id", pa.string()),
        ("index", pa.int32()),
        ("entity_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model_version", pa.string()),
        ("role", pa.string()),
        ("inputs", pa.string()),
        ("output", pa.string()),
        ("latency_ms", pa.float64()),
        ("client_request_id", pa.string()),
    ]
)


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "model_version": "7",
        "inputs": {"x": i, "name": "é"},
        "output": {"p": i / 10},
        "latency_ms": 1.5,
        **extra,
    }


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


def count_rows(url: str, project: str = "p") -> int:
    """Rows committed, as a new connection (another process, in effect) sees them."""
    fresh = Database(url)
    try:
        with fresh.read() as conn:
            query = sa.select(sa.func.count()).where(predictions.c.project == project)
            return int(conn.execute(query).scalar_one())
    finally:
        fresh.dispose()


def test_round_trip_has_the_file_log_schema(db: Database) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with DatabasePredictionLog(db, project="p") as plog:
        plog.append_many(
            [record(0, time=when, role="shadow", entity_id=7, index=3), record(1, time=None)]
        )
        plog.append(record(2, time=when.timestamp() + 10)).result()
        asyncio.run(plog.aappend(record(3, time=datetime(2026, 1, 2, 3, 4, 6))))  # naive: UTC
        table = plog.read()
    assert table.schema.equals(EXPECTED)
    assert SCHEMA.equals(EXPECTED)
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert rows[0]["time"] == when
    assert (rows[0]["role"], rows[0]["entity_id"], rows[0]["index"]) == ("shadow", "7", 3)
    assert (rows[1]["role"], rows[1]["entity_id"], rows[1]["index"]) == ("champion", None, 0)
    assert abs(rows[1]["time"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert rows[2]["time"] == when + timedelta(seconds=10)
    assert rows[3]["time"] == datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    assert json.loads(rows[0]["inputs"]) == {"x": 0, "name": "é"}
    assert json.loads(rows[0]["output"]) == {"p": 0.0}
    assert rows[0]["latency_ms"] == 1.5
    assert rows[0]["model_version"] == "7"


def test_read_since_and_per_project(db: Database) -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    with (
        DatabasePredictionLog(db, project="p") as plog,
        DatabasePredictionLog(db, project="q") as other,
    ):
        plog.append_many([record(i, time=when + timedelta(hours=i)) for i in range(5)])
        other.append_many([record(9, time=when)])
        since = plog.read(since=when + timedelta(hours=3)).column("request_id").to_pylist()
        epoch = plog.read(since=(when + timedelta(hours=4)).timestamp())
        assert since == ["r3", "r4"]
        assert epoch.column("request_id").to_pylist() == ["r4"]
        assert plog.read().num_rows == 5
        assert other.read().column("request_id").to_pylist() == ["r9"]
        empty = plog.read(since=when + timedelta(days=1))
        assert empty.num_rows == 0
        assert empty.schema.equals(EXPECTED)


def test_rows_are_committed_when_append_many_returns(db: Database, db_url: str) -> None:
    plog = DatabasePredictionLog(db, project="p")
    try:
        plog.append_many([record(i) for i in range(100)])
        assert count_rows(db_url) == 100  # while the log is still open
        plog.append(record(100)).result()
        assert count_rows(db_url) == 101
    finally:
        plog.close()


def test_concurrent_appends_land_exactly_once_in_shared_commits(db: Database) -> None:
    commits = 0

    def on_commit(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    per_thread = 150
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(thread: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                plog.append(record(thread * 1000 + i)).result()
        except BaseException as exc:
            failures.append(exc)

    with DatabasePredictionLog(db, project="p", max_delay_ms=5) as plog:
        sa.event.listen(db.engine, "commit", on_commit)
        try:
            threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sa.event.remove(db.engine, "commit", on_commit)
        found = plog.read().column("request_id").to_pylist()
    assert failures == []
    expected = [f"r{t * 1000 + i}" for t in range(8) for i in range(per_thread)]
    assert sorted(found) == sorted(expected)  # every record once: none lost, none twice
    # group commit: the callers waiting meanwhile share one transaction
    assert commits < len(expected) / 2, commits


def test_asyncio_callers(db: Database) -> None:
    async def main(plog: DatabasePredictionLog) -> None:
        await asyncio.gather(*(plog.aappend(record(i)) for i in range(50)))

    with DatabasePredictionLog(db, project="p") as plog:
        asyncio.run(main(plog))
        assert sorted(plog.read().column("request_id").to_pylist()) == sorted(
            f"r{i}" for i in range(50)
        )


def test_close_writes_what_is_queued_then_refuses(db: Database, db_url: str) -> None:
    plog = DatabasePredictionLog(db, project="p", max_delay_ms=1000)
    futures = [plog.append(record(i)) for i in range(20)]
    plog.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert count_rows(db_url) == 20
    with pytest.raises(StoreError, match="closed"):
        plog.append(record(99))
    plog.close()  # twice is fine


@pytest.mark.hostile
def test_a_failed_write_refuses_appends_until_the_table_answers_again(db: Database) -> None:
    plog = DatabasePredictionLog(db, project="p", retry_s=0.05)
    try:
        plog.append_many([record(0)])
        with db.write() as conn:  # the table disappears under the writer
            conn.execute(sa.text("DROP TABLE predictions"))
        futures: list[Future[None]] = [plog.append(record(i)) for i in range(1, 11)]
        errors = [f.exception(timeout=30) for f in futures]
        assert all(isinstance(e, StoreError) for e in errors), errors
        assert all("predictions" in str(e) for e in errors), errors  # the driver's message
        assert all(e is not None and e.__cause__ is not None for e in errors)
        with pytest.raises(StoreError, match=r"cannot be written.*refused until it can") as info:
            plog.append(record(11))
        assert info.value.__cause__ is not None
        assert "predictions" in str(info.value.__cause__)
        assert plog.unavailable() is not None
        with db.write() as conn:
            predictions.create(conn)
        deadline = time.monotonic() + 30
        while plog.unavailable() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert plog.unavailable() is None
        plog.append_many([record(12)])
        assert plog.read().column("request_id").to_pylist() == ["r12"]
    finally:
        plog.close()


@pytest.mark.hostile
def test_a_request_is_committed_whole_or_not_at_all(db: Database) -> None:
    with DatabasePredictionLog(db, project="p") as plog:
        bad = [record(0), record(1), record(2, latency_ms=float("nan")), record(3)]
        with pytest.raises(InvalidParameterError, match="latency_ms"):
            plog.append_batch(bad)
        plog.append_batch([record(4), record(5)]).result(timeout=30)
        assert plog.read().column("request_id").to_pylist() == ["r4", "r5"]


@pytest.mark.hostile
def test_a_bad_record_fails_only_its_caller(db: Database) -> None:
    with DatabasePredictionLog(db, project="p") as plog:
        bad: list[dict[str, Any]] = [
            {k: v for k, v in record(0).items() if k != "output"},
            record(0, time="yesterday"),
            record(0, time=float("inf")),
            record(0, index=-1),
            record(0, index=2**31),
            record(0, latency_ms=float("nan")),
            record(0, latency_ms="fast"),
            record(0, index=1.0),
            record(0, index=True),
            record(0, inputs={"x": "\udcff"}),  # a lone surrogate is not UTF-8
        ]
        for item in bad:
            with pytest.raises(InvalidParameterError, match="DatabasePredictionLog"):
                plog.append(item)
        plog.append_many([record(1, index=np.int64(4), inputs={"x": {1, 2}})])
        (row,) = plog.read().to_pylist()
    assert (row["request_id"], row["index"]) == ("r1", 4)
    assert json.loads(row["inputs"]) == {"x": [1, 2]}  # made JSON as LocalPredictionLog makes it


@pytest.mark.hostile
def test_text_the_database_cannot_hold_is_replaced(db: Database) -> None:
    with DatabasePredictionLog(db, project="p") as plog:
        plog.append_many(
            [
                record(
                    0,
                    entity_id="e\x00",
                    inputs={"nul": "a\x00b", "literal": "\\u0000", "key\x00": 1},
                    output="\x00",
                )
            ]
        )
        (row,) = plog.read().to_pylist()
    assert row["entity_id"] == "e\ufffd"
    assert json.loads(row["inputs"]) == {"nul": "a\ufffdb", "literal": "\\u0000", "key\ufffd": 1}
    assert json.loads(row["output"]) == "\ufffd"


def test_options_are_checked(db: Database) -> None:
    with pytest.raises(InvalidParameterError, match="max_delay_ms"):
        DatabasePredictionLog(db, project="p", max_delay_ms=-1)
    with pytest.raises(InvalidParameterError, match="project"):
        DatabasePredictionLog(db, project="")
    with DatabasePredictionLog(db, project="p") as plog:
        assert plog.roll() == []
