"""Windows of real logged predictions: cut, joined to feedback and monitored.

The log is a real ``LocalPredictionLog`` written with explicit times (the server
would stamp its own clock), holding real held-out January flights scored by
the real model (a copy of the session's flights project); the third week's
temperatures are shifted by +30 degrees.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from _support.logged import MONDAY, PER_WEEK, held_out, log_rows
from _support.serving import copy_project
from setpoint.errors import ConfigError, StoreError
from setpoint.kinds.protocol import REFERENCE_FILE
from setpoint.kinds.tabular import TABULAR
from setpoint.monitor.results import MonitorResult, WindowResult
from setpoint.monitor.runner import monitor_project
from setpoint.monitor.windows import cut_windows, parse_window
from setpoint.project import Project
from setpoint.registry.feedback import record_feedback
from setpoint.registry.models import register_model
from setpoint.registry.stored_windows import load_windows
from setpoint.traffic.frames import load_traffic
from setpoint.traffic.local_log import LocalPredictionLog


@pytest.fixture(scope="module")
def monitored(
    flights_project: Path, flight_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Project, pd.DataFrame]:
    frame = flight_events
    root = copy_project(flights_project, tmp_path_factory.mktemp("watch") / "flights")
    project = Project.open(root)
    pool = held_out(frame).sample(3 * PER_WEEK + 60, random_state=1).reset_index(drop=True)
    weeks = [pool.iloc[i * PER_WEEK : (i + 1) * PER_WEEK] for i in range(3)]
    rows = [
        *log_rows(project, weeks[0], start=MONDAY, prefix="a"),
        *log_rows(project, weeks[1], start=MONDAY + timedelta(days=7), prefix="b"),
        *log_rows(project, weeks[2], start=MONDAY + timedelta(days=14), prefix="c", shift=30.0),
        # another model's opinion on the same traffic: never monitored
        *log_rows(project, pool.iloc[-60:-20], start=MONDAY, prefix="s", role="shadow", version=2),
        # canary answers are served answers
        *log_rows(
            project,
            pool.iloc[-20:],
            start=MONDAY + timedelta(days=7),
            prefix="k",
            role="canary",
            version=2,
        ),
    ]
    with LocalPredictionLog(project.store.home / "predictions" / "flights" / "w0") as plog:
        plog.append_many(rows)
    late = [int(v) for v in pool["late"]]
    feedback = [{"request_id": f"a{i}", "label": late[i]} for i in range(300)]
    # week 2 labelled by entity: the flight id the server logged
    feedback += [
        {"entity_id": str(pool["flight_id"].iloc[PER_WEEK + i]), "label": late[PER_WEEK + i]}
        for i in range(100)
    ]
    record_feedback(project.store.db, project="flights", items=feedback)
    return project, pool


@pytest.fixture(scope="module")
def weekly(monitored: tuple[Project, pd.DataFrame]) -> MonitorResult:
    return monitor_project(monitored[0], window="1w", clock="served")


def test_parse_window_accepts_times_and_counts_and_names_what_is_wrong() -> None:
    assert parse_window("6h").period == timedelta(hours=6)
    assert parse_window("30min").period == timedelta(minutes=30)  # the spec's own syntax
    assert parse_window("5000rows").rows == 5000
    for bad in ("", "3x", "0d", "1 month", "-1w"):
        with pytest.raises(ConfigError, match="5000rows"):
            parse_window(bad)


def test_time_windows_align_to_utc_days_and_monday_weeks() -> None:
    times = pd.Series(
        pd.to_datetime(
            [
                "2024-01-06T23:59:59Z",
                "2024-01-07T23:59:59Z",
                "2024-01-08T00:00:00Z",
                "2024-01-08T13:00:00Z",
            ],
            utc=True,
        )
    )
    weeks = cut_windows(times, parse_window("1w"))
    assert [w.start for w in weeks] == [MONDAY, MONDAY + timedelta(days=7)]
    assert [w.positions.tolist() for w in weeks] == [[0, 1], [2, 3]]
    assert weeks[0].end == weeks[1].start
    days = cut_windows(times, parse_window("1d"))
    assert [w.start.day for w in days] == [6, 7, 8]
    counts = cut_windows(times, parse_window("3rows"))
    assert [len(w.positions) for w in counts] == [3, 1]
    assert counts[1].start == counts[1].end == datetime(2024, 1, 8, 13, tzinfo=UTC)


def test_traffic_keeps_served_rows_and_decodes_them(
    monitored: tuple[Project, pd.DataFrame],
) -> None:
    traffic = load_traffic(monitored[0].store, project="flights")
    assert len(traffic) == 3 * PER_WEEK + 20
    assert set(traffic.meta["role"]) == {"champion", "canary"}
    assert traffic.meta["time"].is_monotonic_increasing
    assert traffic.meta["score"].between(0, 1).all()
    assert {"temp", "carrier", "flight_id"} <= set(traffic.inputs.columns)


def test_weekly_windows_cut_on_mondays(weekly: MonitorResult) -> None:
    assert [w.start for w in weekly.windows] == [MONDAY + timedelta(days=7 * i) for i in range(3)]
    assert [w.n for w in weekly.windows] == [PER_WEEK, PER_WEEK + 20, PER_WEEK]
    assert [w.versions for w in weekly.windows] == [("1",), ("1", "2"), ("1",)]


def test_drift_is_found_on_the_shifted_feature_in_the_shifted_week_only(
    weekly: MonitorResult,
) -> None:
    temp = [w.drift.feature("temp") for w in weekly.windows]
    assert [f.drifted for f in temp] == [False, False, True]
    assert temp[2].mean_current is not None
    assert temp[2].mean_reference is not None
    assert temp[2].mean_current - temp[2].mean_reference > 20
    assert "temp" in weekly.windows[2].drift.drifted_features


def test_realized_metric_uses_the_joined_labels(weekly: MonitorResult) -> None:
    assert [w.n_labelled for w in weekly.windows] == [300, 100, 0]
    first, second, third = weekly.windows
    for window, n in ((first, 300), (second, 100)):
        assert window.realized is not None
        assert window.realized.n == n
        value = window.realized.metrics["pr_auc"]
        assert value.value is not None
        assert value.low is not None
        assert value.high is not None
        assert 0 < value.low <= value.value <= value.high <= 1
    assert third.realized is None
    assert third.error is None


def test_cbpe_estimates_every_window_and_is_scored_once_labelled(weekly: MonitorResult) -> None:
    for window in weekly.windows:
        assert window.estimate is not None
        estimate = window.estimate.metrics["pr_auc"].value
        assert estimate is not None
        assert 0 < estimate < 1
        assert window.estimate.n == window.n
    error = weekly.windows[0].error
    assert error is not None
    found = error.metrics["pr_auc"]
    realized = weekly.windows[0].realized
    assert realized is not None
    assert found.realized == pytest.approx(realized.metrics["pr_auc"].value)
    assert found.error is not None
    assert abs(found.error) < 0.5


def test_result_is_json_safe(weekly: MonitorResult) -> None:
    payload = json.loads(json.dumps(weekly.to_dict(), allow_nan=False))
    assert payload["metric"] == "pr_auc"
    assert payload["windows"][2]["drifted_features"][:1] != []
    assert "temp" in payload["windows"][2]["drifted_features"]


def test_since_until_and_version_select_rows(monitored: tuple[Project, pd.DataFrame]) -> None:
    project = monitored[0]
    result = monitor_project(
        project,
        window="1d",
        since=MONDAY + timedelta(days=7),
        until=MONDAY + timedelta(days=8),
        clock="served",
    )
    assert len(result.windows) == 1
    assert result.windows[0].start == MONDAY + timedelta(days=7)
    canary = monitor_project(project, window="1w", version=2, clock="served")
    assert canary.version == 2
    assert [w.n for w in canary.windows] == [20]
    with pytest.raises(ConfigError, match="No served predictions"):
        monitor_project(
            project, window="1d", since=datetime(2030, 1, 1, tzinfo=UTC), clock="served"
        )


def test_a_model_without_reference_is_named(monitored: tuple[Project, pd.DataFrame]) -> None:
    project = monitored[0]
    files = project.load_model(1).to_files()
    assert REFERENCE_FILE not in files
    old = register_model(
        project.store,
        project="flights",
        kind=TABULAR.name,
        files=files,
        lineage={},
        metrics={},
        params={},
    )
    with pytest.raises(ConfigError, match=rf"flights@{old.version} has no monitoring reference"):
        monitor_project(project, window="1w", version=old.version, clock="served")


def test_no_predictions_says_how_to_get_some(
    tmp_path: Path, monitored: tuple[Project, pd.DataFrame]
) -> None:
    store = monitored[0].store
    empty = type(store)(db=store.db, artifacts=store.artifacts, home=tmp_path)
    with pytest.raises(StoreError, match="setpoint serve"):
        load_traffic(empty, project="flights")


def test_the_event_clock_orders_by_each_records_own_time() -> None:
    from setpoint.monitor.runner import on_event_clock
    from setpoint.traffic.frames import Traffic

    served = pd.to_datetime(["2026-01-01T00:00:01Z"] * 3, utc=True)
    meta = pd.DataFrame({"request_id": ["a", "b", "c"], "time": served})
    inputs = pd.DataFrame(
        {"scheduled_at": ["2013-08-02T10:00:00+00:00", "2013-08-01T09:00:00+00:00", None]}
    )
    timed = on_event_clock(Traffic(meta=meta, inputs=inputs), "scheduled_at")
    # a record without its time keeps the served time: it sorts last here
    assert timed.meta["request_id"].tolist() == ["b", "a", "c"]
    assert timed.meta["time"].iloc[0] == pd.Timestamp("2013-08-01T09:00:00Z")
    assert timed.inputs["scheduled_at"].tolist()[:2] == [
        "2013-08-01T09:00:00+00:00",
        "2013-08-02T10:00:00+00:00",
    ]
    assert (timed.meta["served_at"] == served[0]).all()


def test_a_stored_window_reads_back_as_the_window_computed(weekly: MonitorResult) -> None:
    for window in weekly.windows:
        stored = json.loads(json.dumps(window.to_dict(), allow_nan=False))
        assert WindowResult.from_dict(stored).to_dict() == window.to_dict()


def test_windows_are_stored_and_only_a_changed_one_is_computed_again(
    monitored: tuple[Project, pd.DataFrame], tmp_path: Path
) -> None:
    base, pool = monitored
    assert base.store.home.is_relative_to(base.root)
    root = shutil.copytree(base.root, tmp_path / "flights", ignore=shutil.ignore_patterns("run"))
    project = Project.open(root)
    db = project.store.db

    # (the module's fixture has already stored these windows in the copied store)
    first = monitor_project(project, window="1w", clock="served", reuse=False)
    assert first.reused == 0
    stored = load_windows(db, project="flights", version=1, window="1w", clock="served")
    assert [(s.start, s.n, s.n_labelled) for s in stored] == [
        (w.start, w.n, w.n_labelled) for w in first.windows
    ]

    again = monitor_project(project, window="1w", clock="served")
    assert again.reused == 3
    assert [w.to_dict() for w in again.windows] == [w.to_dict() for w in first.windows]

    # labels of the third week arrive: that window, and only it, is computed again
    late = [int(v) for v in pool["late"]]
    record_feedback(
        db,
        project="flights",
        items=[{"request_id": f"c{i}", "label": late[2 * PER_WEEK + i]} for i in range(250)],
    )
    third = monitor_project(project, window="1w", clock="served")
    assert third.reused == 2
    assert [w.n_labelled for w in third.windows] == [300, 100, 250]
    assert third.windows[2].realized is not None
    latest = load_windows(db, project="flights", version=1, window="1w", clock="served")[-1]
    assert latest.n_labelled == 250

    # other options are other windows; --recompute computes everything and agrees
    assert monitor_project(project, window="1d", clock="served").reused == 0
    fresh = monitor_project(project, window="1w", clock="served", reuse=False)
    assert fresh.reused == 0
    assert [w.to_dict() for w in fresh.windows] == [w.to_dict() for w in third.windows]


def test_the_monitor_the_live_autopilot_and_the_replay_see_one_window(
    monitored: tuple[Project, pd.DataFrame],
) -> None:
    """The same traffic, through each caller of ``assess_window``, is the same window.

    ``setpoint monitor`` (whose stored windows the dashboard and ``/metrics`` read),
    the live autopilot's look and the flights replay's look each judge the three
    logged weeks of model @1; only the span's bounds and the per-segment metrics
    (which the triggers do not read, so the looks leave them out) may differ.
    """
    from setpoint.autopilot.loop import live_window
    from setpoint.monitor.assess import WindowOptions, assess_window
    from setpoint.monitor.windows import Window
    from setpoint.traffic.frames import frame_traffic

    project = monitored[0]
    # One window of 1000 weeks holds the three logged weeks and today.
    shown = monitor_project(project, window="1000w", version=1, clock="served", save=False)
    assert len(shown.windows) == 1
    now = datetime.now(UTC)
    live, rows = live_window(project, now=now, version=1, length=pd.Timedelta(now - MONDAY))
    assert live is not None
    assert live.n == shown.windows[0].n == 3 * PER_WEEK  # the canary's and shadow's are not @1
    assert live.n_labelled == shown.windows[0].n_labelled == 400
    replayed = assess_window(
        frame_traffic(
            rows.inputs,
            times=rows.meta["time"],
            scores=rows.meta["score"].to_numpy(),
            labels=rows.meta["label"],
            label_times=rows.meta["label_time"],
            binary=True,
            version="1",
        ),
        Window(start=MONDAY, end=now, positions=np.arange(len(rows))),
        model=project.load_model(1),
        ref=project.load_reference(1),
        options=WindowOptions.from_spec(project.spec, segments=False),
    )

    def same(result: WindowResult) -> dict[str, Any]:
        return {k: v for k, v in result.to_dict().items() if k not in ("start", "end", "segments")}

    assert same(live) == same(shown.windows[0]) == same(replayed)
    assert live.drift.drifted_features  # the warm third week is in it: not an empty verdict
