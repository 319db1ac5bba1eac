"""Stored monitoring windows on SQLite and PostgreSQL: round trip, upsert, latest, atomicity."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from setpoint.errors import InvalidParameterError
from setpoint.registry.stored_windows import StoredWindow, latest_window, load_windows, save_windows
from setpoint.store.tables import monitor_windows
from setpoint.store.workspace import Store

DAY = timedelta(days=1)
T0 = datetime(2013, 8, 1, tzinfo=UTC)
COMPUTED = datetime(2013, 8, 9, 12, 30, 15, 123456, tzinfo=UTC)


def day(
    i: int,
    *,
    project: str = "flights",
    version: int = 1,
    window: str = "1d",
    clock: str = "event",
    **changes: Any,
) -> StoredWindow:
    stored = StoredWindow(
        project=project,
        version=version,
        window=window,
        clock=clock,
        start=T0 + i * DAY,
        end=T0 + (i + 1) * DAY,
        n=1000 + i,
        n_labelled=10 * i,
        fingerprint=f"fp-{i}",
        result={"n": 1000 + i, "drift": {"drift_share": i / 10, "drifted": i > 4}},
        computed_at=COMPUTED,
    )
    return dataclasses.replace(stored, **changes)


def save(store: Store, windows: list[StoredWindow], **key: Any) -> int:
    first = windows[0] if windows else day(0)
    names = {
        "project": first.project,
        "version": first.version,
        "window": first.window,
        "clock": first.clock,
    }
    return save_windows(store.db, **{**names, **key}, windows=windows)


def count(store: Store) -> int:
    with store.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(monitor_windows)).scalar())


def test_windows_round_trip_by_filter_and_the_latest_is_the_last_to_end(store: Store) -> None:
    week = [day(i) for i in range(7)]
    assert save(store, week) == 7
    save(store, [day(2, version=2), day(3, version=2)])
    save(store, [day(0, window="1w", end=T0 + 7 * DAY)])
    save(store, [day(1, clock="served")])
    save(store, [day(9, project="other")])

    assert load_windows(store.db, project="flights", version=1, window="1d", clock="event") == week
    everything = load_windows(store.db, project="flights")
    assert len(everything) == 7 + 2 + 1 + 1
    # ordered by version, window, clock, start
    assert [(w.version, w.window, w.clock) for w in everything[:3]] == [
        (1, "1d", "event"),
        (1, "1d", "event"),
        (1, "1d", "event"),
    ]
    assert [w.start for w in everything if w.version == 2] == [T0 + 2 * DAY, T0 + 3 * DAY]
    assert [w.clock for w in load_windows(store.db, project="flights", clock="served")] == [
        "served"
    ]
    assert [w.window for w in load_windows(store.db, project="flights", window="1w")] == ["1w"]
    assert load_windows(store.db, project="nobody") == []

    latest = latest_window(store.db, project="flights")
    assert latest == week[6]  # ends on the 8th, like the weekly one; computed at the same time
    assert latest is not None
    assert latest.end.tzinfo is not None
    assert latest.end.utcoffset() == timedelta(0)
    assert latest.result == {"n": 1006, "drift": {"drift_share": 0.6, "drifted": True}}
    assert latest_window(store.db, project="other") == day(9, project="other")
    assert latest_window(store.db, project="nobody") is None


def test_latest_breaks_a_tie_on_the_end_by_the_last_computed(store: Store) -> None:
    daily = day(6)
    weekly = day(0, window="1w", end=daily.end, computed_at=COMPUTED + timedelta(seconds=1))
    save(store, [daily])
    save(store, [weekly])
    assert latest_window(store.db, project="flights") == weekly
    recomputed = dataclasses.replace(daily, computed_at=COMPUTED + timedelta(minutes=5))
    save(store, [recomputed])
    assert latest_window(store.db, project="flights") == recomputed


def test_saving_a_window_again_replaces_it(store: Store) -> None:
    save(store, [day(0), day(1)])
    again = day(
        1,
        n=5000,
        n_labelled=4000,
        fingerprint="fp-new",
        result={"drift": {"drift_share": 0.9}},
        computed_at=COMPUTED + DAY,
    )
    assert save(store, [again, day(2)]) == 2
    assert load_windows(store.db, project="flights") == [day(0), again, day(2)]
    assert count(store) == 3


def test_times_in_any_zone_read_back_as_the_same_instants_in_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    given = day(0, start=T0.astimezone(paris), end=(T0 + DAY).astimezone(paris))
    save(store, [given])
    [stored] = load_windows(store.db, project="flights")
    assert stored == given
    assert stored.start.tzinfo == UTC
    assert stored.start == T0


def test_any_json_result_reads_back_unchanged(store: Store) -> None:
    result = {
        "nul": "a\x00b",
        "surrogate": "\ud800",
        "unicode": "délai ✈",
        "nested": [1, 2.5, None, True, {"x": []}],
        "big": 2**60,
    }
    save(store, [day(0, result=result), day(1, result={})])
    assert [w.result for w in load_windows(store.db, project="flights")] == [result, {}]


def test_an_empty_batch_stores_nothing(store: Store) -> None:
    assert save(store, []) == 0
    assert count(store) == 0


@pytest.mark.parametrize(
    ("bad", "parameter"),
    [
        (day(3, n=5, n_labelled=6), "windows[2].n_labelled"),
        (day(3, n=-1, n_labelled=0), "windows[2].n"),
        (day(3, n=True), "windows[2].n"),
        (day(3, end=T0), "windows[2].end"),
        (day(3, start=datetime(2013, 8, 4)), "windows[2].start"),
        (day(3, computed_at=datetime(2013, 8, 9)), "windows[2].computed_at"),
        (day(3, fingerprint=""), "windows[2].fingerprint"),
        (day(3, fingerprint="x" * 129), "windows[2].fingerprint"),
        (day(3, fingerprint="a\x00"), "windows[2].fingerprint"),
        (day(3, result={"share": float("nan")}), "windows[2].result"),
        (day(3, result={"when": T0}), "windows[2].result"),
        (day(3, result=[1, 2]), "windows[2].result"),
        (day(3, version=2), "windows[2].project/version/window/clock"),
        (day(3, clock="served"), "windows[2].project/version/window/clock"),
        (day(0), "windows[2].start"),  # the same start twice in one call
        ({"start": T0}, "windows[2]"),
    ],
)
def test_a_bad_window_in_a_batch_stores_nothing(store: Store, bad: Any, parameter: str) -> None:
    save(store, [day(0, fingerprint="old")])
    with pytest.raises(InvalidParameterError) as caught:
        # a replacement, a new window, then the bad one: neither of the good ones is stored
        save(store, [day(0, fingerprint="new"), day(1), bad])
    assert caught.value.owner == "save_windows"
    assert caught.value.parameter == parameter
    assert parameter in str(caught.value)
    assert load_windows(store.db, project="flights") == [day(0, fingerprint="old")]


@pytest.mark.parametrize(
    ("key", "parameter"),
    [
        ({"project": ""}, "project"),
        ({"project": "p" * 65}, "project"),
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"version": "1"}, "version"),
        ({"window": ""}, "window"),
        ({"window": " 1d"}, "window"),
        ({"window": "1d\n"}, "window"),
        ({"window": "x" * 33}, "window"),
        ({"clock": "wall"}, "clock"),
        ({"windows": "not a list"}, "windows"),
    ],
)
def test_bad_arguments_name_the_parameter(
    store: Store, key: dict[str, Any], parameter: str
) -> None:
    names: dict[str, Any] = {
        "project": "flights",
        "version": 1,
        "window": "1d",
        "clock": "event",
        "windows": [day(0)],
    }
    with pytest.raises(InvalidParameterError) as caught:
        save_windows(store.db, **{**names, **key})
    assert (caught.value.owner, caught.value.parameter) == ("save_windows", parameter)
    assert count(store) == 0


@pytest.mark.parametrize(
    ("key", "parameter"),
    [({"version": 0}, "version"), ({"clock": "wall"}, "clock"), ({"window": ""}, "window")],
)
def test_loading_checks_its_filters(store: Store, key: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        load_windows(store.db, project="flights", **key)
    assert (caught.value.owner, caught.value.parameter) == ("load_windows", parameter)
    with pytest.raises(InvalidParameterError, match="'project' parameter of latest_window"):
        latest_window(store.db, project="")
