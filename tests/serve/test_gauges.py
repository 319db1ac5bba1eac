"""The latest monitored window as Prometheus gauges: values, escaping, absent keys, failures."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from _support.serving import serving
from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.monitor.results import WindowResult
from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.stored_windows import StoredWindow, save_windows
from setpoint.serve.gauges import MONITOR_FAMILIES, MonitorGauges, render_window
from setpoint.stats.cbpe import estimate_performance, estimation_error
from setpoint.stats.drift import detect_drift
from setpoint.stats.performance import realized_performance
from setpoint.stats.reference import Reference
from setpoint.store.db import Database
from setpoint.store.workspace import Store

Series = tuple[tuple[str, str], ...]
START = datetime(2013, 8, 7, tzinfo=UTC)
END = START + timedelta(days=1)
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


def real_window() -> WindowResult:
    """A window the monitoring code computes: drifted distance, labels for most rows."""
    rng = np.random.default_rng(7)
    n = 1500

    def frame(shift: float) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "distance": rng.normal(1000 + shift, 200, n),
                "carrier": rng.choice(["AA", "UA", "DL"], n),
                "score": rng.uniform(0, 1, n),
            }
        )
        out["predicted"] = (out["score"] >= 0.5).astype(int)
        return out

    reference = Reference.build(
        frame(0),
        numeric=["distance"],
        categorical=["carrier"],
        prediction="score",
        label="predicted",
    )
    current = frame(400)
    drift = detect_drift(reference, current, importances={"distance": 0.7, "carrier": 0.3})
    scores = current["score"].to_numpy()
    labels = (rng.uniform(size=n) < scores).astype(float)
    labels[:300] = np.nan
    realized = realized_performance(
        labels, scores, task="binary", metrics=["pr_auc", "f1"], threshold=0.5, n_boot=50
    )
    estimate = estimate_performance(scores, threshold=0.5, metrics=["pr_auc", "f1"], n_draws=50)
    return WindowResult(
        start=START,
        end=END,
        n=n,
        versions=("3",),
        n_labelled=n - 300,
        drift=drift,
        realized=realized,
        estimate=estimate,
        error=estimation_error(estimate, realized),
    )


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


def feature(name: Any, score: float, drifted: Any = False) -> dict[str, Any]:
    return {"name": name, "psi": score, "drifted": drifted}


def test_odd_feature_names_are_escaped_and_a_repeated_one_shown_once() -> None:
    names = ['quote"d', "back\\slash", "new\nline", "délai ✈", "\\n literally", "{a=b},c"]
    result = {
        "drift": {
            "features": [
                *(feature(name, i / 10) for i, name in enumerate(names)),
                feature('quote"d', 0.99),  # a repeat: the first one stays
                feature("\ud800lone", 0.5, drifted=True),  # a lone surrogate JSON can carry
                feature(5, 0.5),  # not a name: left out
            ]
        },
        "realized": {"metrics": {'m"1': {"value": 0.25}}},
    }
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


@pytest.mark.parametrize(
    ("result", "present"),
    [
        ({}, set()),
        ({"drift": None, "realized": None, "estimate": None}, set()),
        ({"drift": {"features": "x", "drift_share": "0.3", "drifted": 1}}, set()),
        ({"drift": {"drift_share": float("inf"), "drifted": None}}, set()),
        ({"drift": {"drift_share": 10**400}}, set()),
        ({"realized": {"metrics": [1]}, "estimate": {"metrics": {"f1": None}}}, set()),
        ({"estimate": {"metrics": {"f1": {"value": None, "reason": "no positives"}}}}, set()),
        (
            {"drift": {"features": [None, {"name": "x"}, feature("y", 0.2, drifted="yes")]}},
            {"setpoint_feature_psi"},
        ),
        (
            {"drift": {"drift_share": 0, "drifted": False}},
            {"setpoint_monitor_drift_share", "setpoint_monitor_dataset_drift"},
        ),
    ],
)
def test_a_missing_or_odd_key_leaves_its_gauge_out(result: Any, present: set[str]) -> None:
    got = parse(render_window(stored(result)))
    assert set(got) == ALWAYS | present


def test_nothing_stored_means_no_gauge_at_all(store: Store) -> None:
    assert render_window(None) == ""
    assert asyncio.run(MonitorGauges(store.db, project="flights").render()) == ""


def test_a_store_that_fails_keeps_the_last_gauges_and_logs(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first = stored({"drift": {"drift_share": 0.25}})

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
        save(db, stored({"drift": {"drift_share": 0.4, "drifted": True}}, project=spec.project))
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
