"""The latest monitored window as Prometheus gauges: values, escaping, absent keys, failures."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from _support.serving import serving
from _support.windows import END, START, real_window
from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.stored_windows import StoredWindow, save_windows
from setpoint.serve.gauges import MONITOR_FAMILIES, MonitorGauges, render_window
from setpoint.store.db import Database
from setpoint.store.workspace import Store

Series = tuple[tuple[str, str], ...]
BASE = (("clock", "event"), ("version", "3"), ("window", "1d"))
ALWAYS = {"setpoint_monitor_window_end_timestamp_seconds", "setpoint_monitor_labels"}

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> dict[str, dict[Series, float]]:
    """Samples by name and sorted labels, checking what a Prometheus scrape would refuse."""
    samples: dict[str, dict[Series, float]] = {}
    typed: list[str] = []
    assert text == "" or text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            family = line.split(" ")[2]
            assert family not in typed, f"{family} is typed twice"
            typed.append(family)
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, line
        name, raw, value = match.groups()
        assert typed, line
        assert name.startswith(typed[-1]), f"{name} is outside its family's block"
        labels: dict[str, str] = {}
        at = 0
        while raw and at < len(raw):
            found = _LABEL.match(raw, at)
            assert found, f"bad labels in {line!r}"
            labels[found.group(1)] = re.sub(
                r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], found.group(2)
            )
            at = found.end()
        series = tuple(sorted(labels.items()))
        assert series not in samples.get(name, {}), f"duplicate series {name}{series}"
        samples.setdefault(name, {})[series] = float(value)
    return samples


def stored(result: dict[str, Any], **changes: Any) -> StoredWindow:
    fields: dict[str, Any] = {
        "project": "flights",
        "version": 3,
        "window": "1d",
        "clock": "event",
        "start": START,
        "end": END,
        "n": 2000,
        "n_labelled": 1500,
        "fingerprint": "fp",
        "result": result,
        "computed_at": END + timedelta(hours=1),
    }
    return StoredWindow(**{**fields, **changes})


def save(db: Database, window: StoredWindow) -> None:
    save_windows(
        db,
        project=window.project,
        version=window.version,
        window=window.window,
        clock=window.clock,
        windows=[window],
    )


def test_a_real_window_result_becomes_its_gauges(store: Store) -> None:
    window = real_window()
    result = json.loads(json.dumps(window.to_dict()))
    save(store.db, stored(result, n=window.n, n_labelled=window.n_labelled))

    text = asyncio.run(MonitorGauges(store.db, project="flights").render())
    got = parse(text)
    assert set(got) == set(MONITOR_FAMILIES)
    assert got["setpoint_monitor_window_end_timestamp_seconds"] == {BASE: END.timestamp()}
    assert got["setpoint_monitor_labels"] == {BASE: 1200}
    assert got["setpoint_monitor_drift_share"] == {BASE: window.drift.drift_share}
    assert got["setpoint_monitor_dataset_drift"] == {BASE: float(window.drift.drifted)}
    assert window.drift.drifted_features == ("distance",)

    def per(label: str, values: dict[str, float]) -> dict[Series, float]:
        return {tuple(sorted((*BASE, (label, k)))): v for k, v in values.items()}

    features = window.drift.features
    assert got["setpoint_feature_psi"] == per("feature", {f.name: f.psi for f in features})
    assert got["setpoint_feature_drifted"] == per(
        "feature", {f.name: float(f.drifted) for f in features}
    )
    assert window.realized is not None
    assert window.estimate is not None
    realized = {k: m.value for k, m in window.realized.metrics.items() if m.value is not None}
    estimated = {k: m.value for k, m in window.estimate.metrics.items() if m.value is not None}
    assert set(realized) == set(estimated) == {"pr_auc", "f1"}
    assert got["setpoint_monitor_metric_realized"] == per("metric", realized)
    assert got["setpoint_monitor_metric_estimated"] == per("metric", estimated)


@functools.cache
def _real_json() -> str:
    return json.dumps(real_window().to_dict())


def real_result() -> dict[str, Any]:
    """A fresh copy of the stored JSON of ``real_window()``, to alter."""
    result: dict[str, Any] = json.loads(_real_json())
    return result


def feature(name: Any, score: float | None, drifted: Any = False) -> dict[str, Any]:
    """A stored feature of the real window under another name, PSI and verdict."""
    found: dict[str, Any] = {**real_result()["drift"]["features"][0]}
    return {**found, "name": name, "psi": score, "drifted": drifted}


def test_odd_feature_names_are_escaped_and_a_repeated_one_shown_once() -> None:
    names = ['quote"d', "back\\slash", "new\nline", "délai ✈", "\\n literally", "{a=b},c"]
    result = real_result()
    result["drift"]["features"] = [
        *(feature(name, i / 10) for i, name in enumerate(names)),
        feature('quote"d', 0.99),  # a repeat: the first one stays
        feature("\ud800lone", 0.5, drifted=True),  # a lone surrogate JSON can carry
        feature(5, 0.5),  # not a name: left out
    ]
    result["realized"]["metrics"] = {'m"1': {"value": 0.25, "low": None, "high": None}}
    text = render_window(stored(result))
    text.encode("utf-8")  # the body of the response must be encodable
    got = parse(text)
    scores = {dict(k)["feature"]: v for k, v in got["setpoint_feature_psi"].items()}
    assert scores == {**{n: i / 10 for i, n in enumerate(names)}, "?lone": 0.5}
    assert got["setpoint_feature_drifted"][tuple(sorted((*BASE, ("feature", "?lone"))))] == 1
    assert list(got["setpoint_monitor_metric_realized"]) == [
        tuple(sorted((*BASE, ("metric", 'm"1'))))
    ]
    first = 'setpoint_feature_psi{version="3",window="1d",clock="event",feature="quote\\"d"}'
    assert f"{first} 0\n" in text
    assert 'feature="new\\nline"' in text
    assert 'feature="back\\\\slash"' in text


def _changed(path: str, value: Any) -> dict[str, Any]:
    """The real result with the value at ``path`` (keys and list indexes, by dots) replaced."""
    result = real_result()
    *parents, last = path.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return result


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("", {}),
        ("", {"drift": None, "realized": None, "estimate": None}),
        ("", {"drift": {"drift_share": 0.3, "drifted": True}}),  # a part of a window is not one
        ("", [1, 2]),
        ("drift.features", "x"),
        ("drift.drift_share", 10**400),  # no float holds it
        ("drift.drift_share", "a lot"),
        ("drift.features.0.statistic", "big"),
        ("realized.metrics", [1]),
        ("estimate.metrics.f1", None),
        ("start", "yesterday"),
    ],
)
def test_a_row_of_another_shape_keeps_only_the_gauges_of_its_columns(path: str, value: Any) -> None:
    result = _changed(path, value) if path else value
    got = parse(render_window(stored(result)))
    assert set(got) == ALWAYS
    assert got["setpoint_monitor_labels"] == {BASE: 1500}


def _series(family: str, label: tuple[str, str] | None = None) -> tuple[str, Series]:
    return family, tuple(sorted((*BASE, *((label,) if label else ()))))


@pytest.mark.parametrize(
    ("path", "value", "absent"),
    [
        # a null float reads back as NaN, which no gauge shows
        ("drift.drift_share", None, [_series("setpoint_monitor_drift_share")]),
        ("drift.drifted", 1, [_series("setpoint_monitor_dataset_drift")]),
        (
            "drift.features.0.psi",
            None,
            [_series("setpoint_feature_psi", ("feature", "distance"))],
        ),
        (
            "drift.features.0.drifted",
            "yes",
            [_series("setpoint_feature_drifted", ("feature", "distance"))],
        ),
        (
            "drift.features.0.name",
            5,
            [
                _series("setpoint_feature_psi", ("feature", "distance")),
                _series("setpoint_feature_drifted", ("feature", "distance")),
            ],
        ),
        (
            "estimate.metrics.f1.value",
            None,
            [_series("setpoint_monitor_metric_estimated", ("metric", "f1"))],
        ),
        (
            "realized",
            None,
            [_series("setpoint_monitor_metric_realized", ("metric", m)) for m in ("f1", "pr_auc")],
        ),
    ],
)
def test_an_odd_value_in_a_readable_row_leaves_out_only_its_gauge(
    path: str, value: Any, absent: list[tuple[str, Series]]
) -> None:
    full = parse(render_window(stored(real_result())))
    psi, distance = _series("setpoint_feature_psi", ("feature", "distance"))
    assert full[psi][distance] > 0  # the feature the paths above change is there to lose
    got = parse(render_window(stored(_changed(path, value))))
    expected = {
        family: {k: v for k, v in series.items() if (family, k) not in absent}
        for family, series in full.items()
    }
    assert got == {family: series for family, series in expected.items() if series}


def test_a_row_of_another_shape_is_logged_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    save(store.db, stored({"drift": {"drift_share": 0.25}}))
    caplog.set_level(logging.WARNING, logger="setpoint.serve")
    gauges = MonitorGauges(store.db, project="flights", max_age_s=0)

    async def scrapes() -> list[str]:
        return [await gauges.render() for _ in range(3)]

    texts = asyncio.run(scrapes())
    assert set(parse(texts[0])) == ALWAYS
    assert texts == [texts[0]] * 3
    warned = [r for r in caplog.records if "of another shape" in r.getMessage()]
    assert len(warned) == 1
    assert "'flights'@3's 1d window from 2013-08-07" in warned[0].getMessage()


def test_nothing_stored_means_no_gauge_at_all(store: Store) -> None:
    assert render_window(None) == ""
    assert asyncio.run(MonitorGauges(store.db, project="flights").render()) == ""


def test_a_store_that_fails_keeps_the_last_gauges_and_logs(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first = stored(_changed("drift.drift_share", 0.25))

    async def scrapes() -> list[str]:
        cached = MonitorGauges(store.db, project="flights", max_age_s=3600)
        fresh = MonitorGauges(store.db, project="flights", max_age_s=0)
        texts = [await cached.render(), await fresh.render()]
        save(store.db, first)
        texts += [await cached.render(), await fresh.render()]  # the cached one did not read
        with store.db.write() as conn:
            conn.execute(sa.text("DROP TABLE monitor_windows"))
        texts.append(await fresh.render())
        return texts

    caplog.set_level(logging.WARNING, logger="setpoint.serve")
    texts = asyncio.run(scrapes())
    assert texts[:3] == ["", "", ""]
    assert texts[3] == texts[4] == render_window(first)
    assert "setpoint_monitor_drift_share" in texts[3]
    assert "cannot read the latest monitored window of 'flights'" in caplog.text


def test_an_unreachable_store_gives_no_gauges_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Database(f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'setpoint.db'}")
    caplog.set_level(logging.WARNING, logger="setpoint.serve")
    gauges = MonitorGauges(missing, project="flights", max_age_s=0)
    assert asyncio.run(gauges.render()) == ""
    assert "Cannot open the metadata store" in caplog.text


@pytest.mark.slow
def test_two_workers_each_show_the_stored_window_once(
    tmp_path: Path, db_url: str, store_env: dict[str, str]
) -> None:
    spec = quickstart_spec()
    root = tmp_path / "flights"
    root.mkdir()
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    db = Database(db_url)
    try:
        result = _changed("drift.drift_share", 0.4)
        result["drift"]["drifted"] = True
        save(db, stored(result, project=spec.project))
    finally:
        db.dispose()

    with serving(root, workers=2, env=store_env, ready=False) as server:
        for _ in range(6):  # either worker may answer: every answer has the gauges once
            response = httpx.get(f"{server.url}/metrics", timeout=10)
            assert response.status_code == 200
            got = parse(response.text)
            assert got["setpoint_monitor_drift_share"] == {BASE: 0.4}
            assert got["setpoint_monitor_dataset_drift"] == {BASE: 1}
            assert got["setpoint_monitor_labels"] == {BASE: 1500}
            assert got["setpoint_monitor_window_end_timestamp_seconds"] == {BASE: END.timestamp()}
            assert "setpoint_prediction_log_backlog" in got  # the workers' own metrics too
        # both workers run, and neither puts the gauges in the snapshots that are added up
        run = root / ".setpoint" / "run" / spec.project
        snapshots = [run / "metrics-w0.json", run / "metrics-w1.json"]
        deadline = time.monotonic() + 10
        while not all(p.exists() for p in snapshots) and time.monotonic() < deadline:
            time.sleep(0.1)
        for path in snapshots:
            assert "setpoint_monitor" not in path.read_text(encoding="utf-8")
