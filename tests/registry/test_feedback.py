"""Feedback on SQLite and PostgreSQL: idempotent retries, conflicts, every bad item named."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from setpoint.errors import ConflictError, InvalidRequestError
from setpoint.registry.feedback import (
    FeedbackResult,
    LabelRule,
    list_feedback,
    record_feedback,
)
from setpoint.store.db import Database
from setpoint.store.tables import feedback
from setpoint.store.workspace import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def keys_and_labels(db: Database, project: str = "p") -> dict[str, Any]:
    return {f.key: f.label for f in list_feedback(db, project=project)}


def count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one())


def test_items_are_stored_by_key_and_listed_by_event_time(store: Store) -> None:
    db = store.db
    before = datetime.now(UTC)
    result = record_feedback(
        db,
        project="p",
        items=[
            {"request_id": "r-1", "index": 2, "label": True, "time": "2026-03-01T14:00:00Z"},
            {"request_id": "r.2", "label": 12.5, "time": T0},
            {"entity_id": "2013-08-01-UA-1545", "label": 0, "time": "2026-03-01T13:00:00+02:00"},
            {"entity_id": 1545, "label": "x"},  # a numeric id is kept as text; time is now
        ],
    )
    assert result == FeedbackResult(stored=4, duplicates=0)
    rows = list_feedback(db, project="p")
    assert [r.key for r in rows] == [
        "ent:2013-08-01-UA-1545",  # 11:00 UTC
        "req:r.2:0",  # 12:00
        "req:r-1:2",  # 14:00
        "ent:1545",  # now
    ]
    first, second, third, fourth = rows
    assert (first.entity_id, first.request_id, first.index) == ("2013-08-01-UA-1545", None, None)
    assert first.event_time == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert (second.request_id, second.index, second.label) == ("r.2", 0, 12.5)
    assert third.label is True
    assert fourth.entity_id == "1545"
    assert fourth.event_time >= before
    assert all(r.received_at >= before for r in rows)
    assert list_feedback(db, project="other") == []

    window = list_feedback(db, project="p", since=T0, until=T0 + timedelta(hours=2))
    assert [r.key for r in window] == ["req:r.2:0"]  # since is inclusive, until exclusive


def test_a_retry_is_all_duplicates_and_changes_nothing(store: Store) -> None:
    items: list[dict[str, Any]] = [
        {"request_id": f"req{i}", "index": i % 3, "label": i % 2 == 0, "time": T0}
        for i in range(20)
    ]
    assert record_feedback(store.db, project="p", items=items) == FeedbackResult(20, 0)
    stored = list_feedback(store.db, project="p")
    assert record_feedback(store.db, project="p", items=items) == FeedbackResult(0, 20)
    # a retry that adds one new item stores just that one
    more = [*items, {"entity_id": "e1", "label": 1}]
    assert record_feedback(store.db, project="p", items=more) == FeedbackResult(1, 20)
    assert list_feedback(store.db, project="p")[:20] == stored


@pytest.mark.hostile
def test_a_label_is_one_value(store: Store) -> None:
    # a class label or a measured value; a list or an object joins to no prediction
    with pytest.raises(InvalidRequestError) as caught:
        record_feedback(
            store.db,
            project="p",
            items=[{"request_id": "a", "label": [1]}, {"request_id": "b", "label": {"x": 1}}],
        )
    assert [(e["record"], e["field"], e["kind"]) for e in caught.value.errors] == [
        (0, "label", "type_mismatch"),
        (1, "label", "type_mismatch"),
    ]
    assert list_feedback(store.db, project="p") == []


def test_labels_compare_as_json_values(store: Store) -> None:
    db = store.db
    items: list[dict[str, Any]] = [
        {"request_id": "a", "label": 1},
        {"request_id": "b", "label": "x"},
        {"request_id": "d", "label": 1e20},
    ]
    assert record_feedback(db, project="p", items=items) == FeedbackResult(3, 0)
    same: list[dict[str, Any]] = [
        {"request_id": "a", "label": 1.0},  # one JSON number
        {"request_id": "b", "label": "x"},
        {"request_id": "d", "label": 10**20},
    ]
    assert record_feedback(db, project="p", items=same) == FeedbackResult(0, 3)
    with pytest.raises(ConflictError):  # true is not 1 in JSON, whatever Python says
        record_feedback(db, project="p", items=[{"request_id": "a", "label": True}])


@pytest.mark.hostile
def test_a_conflict_is_named_and_the_other_items_are_stored(store: Store) -> None:
    db = store.db
    record_feedback(db, project="p", items=[{"request_id": "r1", "label": "on_time"}])
    call: list[dict[str, Any]] = [
        {"request_id": "r2", "label": "late"},
        {"entity_id": "e9", "label": "late"},
        {"request_id": "r1", "index": 0, "label": "late"},
    ]
    result = record_feedback(db, project="p", items=call)
    assert (result.stored, result.duplicates, result.rejected) == (2, 0, ())
    assert result.conflicts == (
        {"record": 2, "key": "req:r1:0", "stored": "on_time", "sent": "late"},
    )
    assert keys_and_labels(db) == {"req:r1:0": "on_time", "req:r2:0": "late", "ent:e9": "late"}
    # a call that takes nothing but conflicts is refused whole, naming them
    with pytest.raises(ConflictError, match="req:r1:0") as info:
        record_feedback(db, project="p", items=call[2:])
    assert info.value.context["keys"] == ["req:r1:0"]
    # the same key in another project is another outcome
    assert record_feedback(db, project="q", items=call) == FeedbackResult(3, 0)


@pytest.mark.hostile
def test_contradicting_labels_for_one_key_in_one_call_keep_the_first(store: Store) -> None:
    db = store.db
    twice = [{"entity_id": "e1", "label": 3}, {"entity_id": "e1", "label": 3}]
    assert record_feedback(db, project="p", items=twice) == FeedbackResult(1, 1)
    contradicting: list[dict[str, Any]] = [
        {"entity_id": "e2", "label": 1},
        {"request_id": "r", "label": 1},
        {"entity_id": "e2", "label": 2},  # the first label given for e2 counts
        {"entity_id": "e1", "label": 4},
        {"entity_id": "e1", "label": 4},  # as its twin fares: a conflict with the store
    ]
    result = record_feedback(db, project="p", items=contradicting)
    assert (result.stored, result.duplicates) == (2, 0)
    assert [(c["record"], c["key"], c["stored"], c["sent"]) for c in result.conflicts] == [
        (2, "ent:e2", 1, 2),
        (3, "ent:e1", 3, 4),
        (4, "ent:e1", 3, 4),
    ]
    assert keys_and_labels(db) == {"ent:e1": 3, "ent:e2": 1, "req:r:0": 1}


BAD_ITEMS: list[Any] = [
    {"label": 1},  # 1
    {"request_id": "r", "entity_id": "e", "label": 1},  # 2
    {"request_id": "r", "index": "0", "label": 1},  # 3
    {"request_id": "r", "index": True, "label": 1},  # 4
    {"request_id": "r", "index": -1, "label": 1},  # 5
    {"request_id": "r", "label": 1, "time": "yesterday"},  # 6
    {"request_id": "r", "label": 1, "time": 1767225600},  # 7
    {"request_id": "r"},  # 8
    {"request_id": "r", "label": None},  # 9
    {"request_id": "has space", "label": 1},  # 10
    {"request_id": "x" * 65, "label": 1},  # 11
    {"request_id": "", "label": 1},  # 12
    {"entity_id": "e" * 257, "label": 1},  # 13
    {"entity_id": "", "label": 1},  # 14
    {"entity_id": ["e"], "label": 1},  # 15
    {"request_id": "r", "label": float("nan")},  # 16
    {"request_id": "r", "label": {"a": object()}},  # 17
    {"request_id": "r", "label": "a\x00b"},  # 18
    {"entity_id": "e", "index": 1, "label": 1},  # 19
    {"request_id": "r", "label": 1, "lable": 1},  # 20
    "not an object",  # 21
    {"request_id": "r\n", "label": 1},  # 22
    {"request_id": 7, "time": "2026-13-01"},  # 23: three problems at once
]
BAD_FIELDS = {
    (1, "request_id", "missing_key"),
    (2, "entity_id", "ambiguous_key"),
    (3, "index", "type_mismatch"),
    (4, "index", "type_mismatch"),
    (5, "index", "out_of_range"),
    (6, "time", "invalid_time"),
    (7, "time", "invalid_time"),
    (8, "label", "missing_label"),
    (9, "label", "null_not_allowed"),
    (10, "request_id", "invalid_id"),
    (11, "request_id", "invalid_id"),
    (12, "request_id", "invalid_id"),
    (13, "entity_id", "invalid_id"),
    (14, "entity_id", "invalid_id"),
    (15, "entity_id", "type_mismatch"),
    (16, "label", "non_finite"),
    (17, "label", "type_mismatch"),
    (18, "label", "invalid_text"),
    (19, "index", "unknown_field"),
    (20, "lable", "unknown_field"),
    (21, None, "not_an_object"),
    (22, "request_id", "invalid_id"),
    (23, "request_id", "type_mismatch"),
    (23, "label", "missing_label"),
    (23, "time", "invalid_time"),
}


@pytest.mark.hostile
def test_every_bad_item_is_named_and_the_good_one_is_stored(store: Store) -> None:
    items: list[Any] = [{"request_id": "ok", "label": 1}, *BAD_ITEMS]
    result = record_feedback(store.db, project="p", items=items)
    assert (result.stored, result.duplicates, result.conflicts) == (1, 0, ())
    found = {(r["record"], e["field"], e["kind"]) for r in result.rejected for e in r["errors"]}
    assert found == BAD_FIELDS
    assert [r["record"] for r in result.rejected] == list(range(1, 24))  # one entry an item
    assert all(
        isinstance(e["detail"], str) and e["detail"] for r in result.rejected for e in r["errors"]
    )
    assert keys_and_labels(store.db) == {"req:ok:0": 1}


@pytest.mark.hostile
def test_a_call_of_bad_items_only_is_refused_naming_each(store: Store) -> None:
    with pytest.raises(InvalidRequestError, match="in 24 item") as info:
        record_feedback(store.db, project="p", items=["not an object", *BAD_ITEMS])
    found = {(e["record"], e["field"], e["kind"]) for e in info.value.errors}
    assert found == {(0, None, "not_an_object"), *BAD_FIELDS}
    assert len(info.value.errors) == len(found)
    assert count(store.db) == 0


def test_items_must_be_a_list(store: Store) -> None:
    with pytest.raises(InvalidRequestError) as info:
        record_feedback(store.db, project="p", items={"request_id": "r", "label": 1})  # type: ignore[arg-type]
    assert info.value.kinds == {"not_a_list"}
    assert record_feedback(store.db, project="p", items=[]) == FeedbackResult(0, 0)


def test_a_batch_of_1000_is_one_select_and_one_insert(store: Store) -> None:
    db = store.db
    items: list[dict[str, Any]] = [
        {"request_id": f"req-{i:05d}", "index": i % 4, "label": i, "time": T0} for i in range(1000)
    ]
    statements: list[tuple[str, bool]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _p: Any, _c: Any, many: bool) -> None:
        if "feedback" in statement:
            statements.append((statement.split()[0].upper(), many))

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert record_feedback(db, project="p", items=items) == FeedbackResult(1000, 0)
        assert statements == [("SELECT", False), ("INSERT", True)]
        statements.clear()
        assert record_feedback(db, project="p", items=items) == FeedbackResult(0, 1000)
        assert statements == [("SELECT", False)]
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert count(db) == 1000


BINARY = LabelRule(target="late", task="binary", classes=(0, 1))


@pytest.mark.hostile
def test_labels_are_judged_against_the_target(store: Store) -> None:
    cases: list[tuple[LabelRule, list[Any], list[Any]]] = [
        # a yes/no outcome of classes 0 and 1 is often sent as a boolean
        (BINARY, [0, 1, 1.0, True, False], ["banana", "1", 2, -0.5]),
        # but a boolean is not the class 1 of classes 1, 2 and 3
        (LabelRule(target="grade", task="multiclass", classes=(1, 2, 3)), [1, 3.0], [True, 0]),
        (LabelRule(target="paid", task="binary", classes=(False, True)), [True, 0, 1], ["true"]),
        (LabelRule(target="kind", task="multiclass", classes=("a", "b", "c")), ["c"], [1, "d"]),
        # an outcome beyond the training range is still an outcome
        (LabelRule(target="delay", task="regression"), [3.5, -2, 10**9], ["3.5", True]),
    ]
    for n, (rule, good, bad) in enumerate(cases):
        items = [{"request_id": f"c{n}-{i}", "label": v} for i, v in enumerate([*good, *bad])]
        result = record_feedback(store.db, project="p", items=items, rule=rule)
        assert result.stored == len(good), rule
        assert [r["record"] for r in result.rejected] == list(range(len(good), len(items)))
        for rejected in result.rejected:
            (error,) = rejected["errors"]
            assert error["field"] == "label"
            assert error["kind"] in {"unknown_class", "not_a_number"}
            assert repr(rule.target) in error["detail"], error
    with pytest.raises(InvalidRequestError, match="item 0: label: unknown_class") as info:
        record_feedback(
            store.db, project="p", items=[{"entity_id": "victim-1", "label": "banana"}], rule=BINARY
        )
    assert "'banana' is not a class of 'late': expected one of [0, 1]" in str(info.value)
    assert "ent:victim-1" not in keys_and_labels(store.db)


@pytest.mark.hostile
def test_a_batch_of_1000_loses_only_its_bad_item(store: Store) -> None:
    db = store.db
    items: list[dict[str, Any]] = [
        {"entity_id": f"e{i:04d}", "label": i % 2, "time": T0} for i in range(1000)
    ]
    items[500]["label"] = "banana"
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _p: Any, _c: Any, _many: bool) -> None:
        if "feedback" in statement:
            statements.append(statement.split()[0].upper())

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        result = record_feedback(db, project="p", items=items, rule=BINARY)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert (result.stored, result.duplicates, result.conflicts) == (999, 0, ())
    assert [r["record"] for r in result.rejected] == [500]
    assert statements == ["SELECT", "INSERT"]  # still one transaction of two round trips
    # a future entity's fake label stored first makes one item of the real batch a conflict
    real = [{"entity_id": f"f{i:04d}", "label": 1, "time": T0} for i in range(1000)]
    record_feedback(db, project="p", items=[{"entity_id": "f0700", "label": 0}], rule=BINARY)
    result = record_feedback(db, project="p", items=real, rule=BINARY)
    assert (result.stored, result.duplicates, result.rejected) == (999, 0, ())
    assert [(c["record"], c["key"]) for c in result.conflicts] == [(700, "ent:f0700")]
    assert count(db) == 999 + 1 + 999


def test_concurrent_posts_of_the_same_items_store_each_once(store: Store) -> None:
    db = store.db
    items: list[dict[str, Any]] = [{"request_id": f"r{i}", "label": i} for i in range(50)]
    results: list[FeedbackResult] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        try:
            results.append(record_feedback(db, project="p", items=items))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(r.stored for r in results) == 50
    assert all(r.stored + r.duplicates == 50 for r in results)
    assert keys_and_labels(db) == {f"req:r{i}:0": i for i in range(50)}
