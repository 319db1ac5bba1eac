"""``setpoint predict`` and ``setpoint replay``, run as a user runs them.

The commands run as real processes and talk over loopback to
``_support.fake_server``, which records what they send. The replay engine
itself is tested from Python in tests/traffic/, and against a real
``setpoint serve`` in tests/serve/test_replayed.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _support.cli import run as setpoint
from _support.fake_server import FakeServer, dead_url, running
from setpoint.config.durations import parse_duration
from setpoint.config.loader import SPEC_FILE, dump_spec
from setpoint.quickstart.build import quickstart_spec

T0 = datetime(2013, 8, 1, 4, tzinfo=UTC)


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with running(FakeServer()) as fake:
        yield fake


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A quickstart folder, with its spec, whose held-back file has 3 days of flights, shuffled."""
    rng = np.random.default_rng(7)
    n = 36
    times = [T0 + timedelta(hours=2 * i) for i in range(n)]
    frame = pd.DataFrame(
        {
            "flight_id": [f"f{i:03d}" for i in range(n)],
            "scheduled_at": pd.to_datetime(times, utc=True),
            "carrier": rng.choice(["UA", "AA", "B6"], n),
            "distance": rng.uniform(100, 2500, n).round(),
            "temp": [float("nan") if i % 5 == 0 else 60.0 + i for i in range(n)],
            "late": rng.integers(0, 2, n),
        }
    ).sample(frac=1, random_state=3)
    (tmp_path / SPEC_FILE).write_text(dump_spec(quickstart_spec()), encoding="utf-8")
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "flights-2013-08-12.parquet", index=False)
    return tmp_path


# Pure parts (the engine's own tests are in tests/traffic/test_replay.py) -------


def test_durations() -> None:
    assert parse_duration("6h") == timedelta(hours=6)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5d") == timedelta(hours=36)
    assert parse_duration("0") == timedelta(0)
    assert parse_duration("30m") == parse_duration("30min") == timedelta(minutes=30)
    with pytest.raises(ValueError, match="30min, 6h, 7d or 2w"):
        parse_duration("6 hours")


# setpoint replay ----------------------------------------------------------------


def test_replay_sends_in_time_order_and_posts_outcomes(
    quickstart: Path, server: FakeServer
) -> None:
    result = setpoint(
        "replay",
        "-C",
        str(quickstart),
        "--from",
        "2013-08-01T10:00:00Z",
        "--to",
        "2013-08-03",
        "--rate",
        "0",
        "--concurrency",
        "1",
        "--label-delay",
        "0",
        "--url",
        server.url,
        cwd=quickstart,
    )
    assert result.returncode == 0, result.stderr
    frame = pd.read_parquet(quickstart / "data" / "flights-2013-08-12.parquet")
    chosen = frame[
        (frame.scheduled_at >= "2013-08-01T10:00:00Z") & (frame.scheduled_at < "2013-08-03")
    ].sort_values("scheduled_at")

    sent = server.scored_records()
    assert [r["flight_id"] for r in sent] == chosen.flight_id.tolist()
    times = [r["scheduled_at"] for r in sent]
    assert times == sorted(times)
    assert times[0] == "2013-08-01T10:00:00+00:00"
    assert all("late" not in r for r in sent)
    assert {"flight_id", "scheduled_at", "carrier", "distance", "temp"} == set(sent[0])
    nan_temp = chosen.temp.isna().tolist()
    assert [r["temp"] is None for r in sent] == nan_temp
    assert any(nan_temp)

    # Every outcome is stored once, keyed by request id and index, as a boolean.
    truth = dict(zip(chosen.flight_id, chosen.late.astype(bool), strict=True))
    assert len(server.outcomes) == len(chosen)
    for (_, request_id, index), item in server.outcomes.items():
        assert truth[server.predictions[(request_id, int(index))]["flight_id"]] is item["label"]
    # With no delay, outcomes flow while records are still being sent.
    paths = [r.path for r in server.received]
    assert paths.index("/v1/feedback") < len(paths) - 1 - paths[::-1].index("/v1/predict")
    assert f"{len(chosen)}" in result.stdout
    assert "feedback stored" in result.stdout


def test_outcomes_wait_for_their_delay(quickstart: Path, server: FakeServer) -> None:
    result = setpoint(
        "replay",
        "-C",
        str(quickstart),
        "--rate",
        "0",
        "--batch",
        "5",
        "--label-delay",
        "30d",
        "--url",
        server.url,
        cwd=quickstart,
    )
    assert result.returncode == 0, result.stderr
    paths = [r.path for r in server.received]
    last_predict = len(paths) - 1 - paths[::-1].index("/v1/predict")
    assert paths.index("/v1/feedback") > last_predict  # all in the final flush
    assert len(server.outcomes) == 36
    assert all(len(r.body["records"]) <= 5 for r in server.calls("/v1/predict"))


def test_replay_at_a_rate_sends_exactly_the_limit(quickstart: Path, server: FakeServer) -> None:
    result = setpoint(
        "replay",
        "-C",
        str(quickstart),
        "--rate",
        "40",
        "--limit",
        "10",
        "--no-feedback",
        "--url",
        server.url,
        cwd=quickstart,
    )
    assert result.returncode == 0, result.stderr
    assert len(server.scored_records()) == 10
    assert server.calls("/v1/feedback") == []
    assert "feedback stored" not in result.stdout
    assert "rate (records/s)" in result.stdout


def test_replay_counts_errors_by_kind(quickstart: Path, server: FakeServer) -> None:
    server.unavailable = 100  # every attempt answers 503 not_ready, after a ready check
    result = setpoint(
        "replay",
        "-C",
        str(quickstart),
        "--rate",
        "0",
        "--limit",
        "3",
        "--url",
        server.url,
        cwd=quickstart,
    )
    assert result.returncode == 0, result.stderr
    assert "errors: not_ready" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "2013-13-01"], ["--from", "ISO 8601", "2013-13-01"]),
        (["--from", "2013-08-05", "--to", "2013-08-01"], ["--from", "--to", "before"]),
        (["--rate", "-1"], ["--rate", "-1"]),
        (["--rate", "nan"], ["--rate", "nan"]),
        (["--rate", "fast"], ["--rate", "number"]),
        (["--feedback-rate", "-2"], ["--feedback-rate", "outcomes", "-2"]),
        (["--batch", "0"], ["--batch"]),
        (["--label-delay", "6 hours"], ["--label-delay", "6 hours"]),
        (["--from", "2014-01-01"], ["no records", "scheduled_at", "2013-08-01"]),
    ],
)
def test_bad_replay_flags_fail_cleanly(
    quickstart: Path, server: FakeServer, args: list[str], words: list[str]
) -> None:
    assert_user_error(
        setpoint("replay", "-C", str(quickstart), "--url", server.url, *args, cwd=quickstart),
        *words,
    )
    assert server.calls("/v1/predict") == []


def test_replay_without_the_quickstart_says_how_to_get_it(tmp_path: Path) -> None:
    assert_user_error(
        setpoint("replay", cwd=tmp_path), "flights-2013-08-12.parquet", "setpoint quickstart"
    )


def test_replay_to_no_server_names_the_url(quickstart: Path) -> None:
    url = dead_url()
    result = setpoint("replay", "-C", str(quickstart), "--url", url, cwd=quickstart)
    assert_user_error(result, url, "setpoint serve")


def test_replay_to_a_server_not_ready_says_so(quickstart: Path, server: FakeServer) -> None:
    server.ready = False
    result = setpoint("replay", "-C", str(quickstart), "--url", server.url, cwd=quickstart)
    assert_user_error(result, "not ready", server.url)


@pytest.fixture
def events_csv(tmp_path: Path) -> Path:
    """A folder with no spec and a CSV of 6 events out of time order: id, at, x, outcome."""
    rows = [(f"e{i}", f"2024-03-0{1 + (i * 5) % 6}T12:00:00Z", i * 1.5, i % 2) for i in range(6)]
    frame = pd.DataFrame(rows, columns=["id", "at", "x", "outcome"])
    frame.to_csv(tmp_path / "events.csv", index=False)
    return tmp_path / "events.csv"


def test_replay_takes_its_columns_from_flags_without_a_spec(
    events_csv: Path, server: FakeServer
) -> None:
    result = setpoint(
        "replay",
        "--file",
        str(events_csv),
        "--time-column",
        "at",
        "--label-column",
        "outcome",
        "--entity-column",
        "id",
        "--rate",
        "0",
        "--concurrency",
        "1",
        "--label-delay",
        "0",
        "--url",
        server.url,
        cwd=events_csv.parent,
    )
    assert result.returncode == 0, result.stderr
    sent = server.scored_records()
    assert [r["at"] for r in sent] == sorted(r["at"] for r in sent)
    assert {"id", "at", "x"} == set(sent[0])
    truth = {f"e{i}": bool(i % 2) for i in range(6)}
    assert len(server.outcomes) == 6
    for (_, request_id, index), item in server.outcomes.items():
        assert truth[server.predictions[(request_id, int(index))]["id"]] is item["label"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ["--time-column", "setpoint.yaml"]),
        (["--time-column", "at"], ["--label-column", "--no-feedback"]),
        (["--time-column", "when", "--no-feedback"], ["events.csv", "'when'", "at, x"]),
        (["--time-column", "at", "--no-feedback", "--entity-column", "key"], ["'key'", "entity"]),
        (["--time-column", "x", "--no-feedback"], ["record 0", "x", "ISO 8601"]),
        (["--time-column", "at", "--label-column", "at"], ["--label-column", "'at'", "time"]),
    ],
)
def test_bad_replay_columns_fail_cleanly(
    events_csv: Path, server: FakeServer, args: list[str], words: list[str]
) -> None:
    result = setpoint(
        "replay", "--file", str(events_csv), "--url", server.url, *args, cwd=events_csv.parent
    )
    assert_user_error(result, *words)
    assert server.calls("/v1/predict") == []


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("gone.csv", None, ["gone.csv", "no such file"]),
        ("events.txt", "", ["--file", "events.txt", ".parquet"]),
        ("events.jsonl", '{"at": "2024-01-01"}\n{oops\n', ["events.jsonl:2", "not valid JSON"]),
        ("events.json", "[]", ["events.json", "empty list"]),
        ("events.parquet", "not parquet", ["events.parquet", "cannot be read"]),
    ],
)
def test_bad_replay_files_fail_cleanly(
    tmp_path: Path, server: FakeServer, name: str, text: str | None, words: list[str]
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    args = ["--file", name, "--time-column", "at", "--no-feedback", "--url", server.url]
    assert_user_error(setpoint("replay", *args, cwd=tmp_path), *words)
    assert server.calls("/v1/predict") == []


# setpoint predict ---------------------------------------------------------------


def test_predict_json_prints_the_answer(tmp_path: Path, server: FakeServer) -> None:
    result = setpoint(
        "predict",
        "--json",
        '{"carrier": "UA", "distance": 1400}',
        "--explain",
        "--format",
        "json",
        "--url",
        server.url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    (sent,) = server.calls("/v1/predict")
    assert sent.body == {"records": [{"carrier": "UA", "distance": 1400}]}
    assert sent.query == {"explain": "true"}
    assert (answer["request_id"], 0) in server.predictions
    assert answer["model_version"] == 1
    assert "contributions" in answer["predictions"][0]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_predict_reads_record_files(tmp_path: Path, server: FakeServer, suffix: str) -> None:
    rows = [{"carrier": "UA", "distance": 1400.0}, {"carrier": "AA", "distance": None}]
    path = tmp_path / f"records{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"records": rows}))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif suffix == ".csv":
        path.write_text("carrier,distance\nUA,1400.0\nAA,\n")
    else:
        pd.DataFrame(rows).to_parquet(path)
    result = setpoint("predict", "--file", str(path), "--url", server.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (sent,) = server.calls("/v1/predict")
    assert sent.body == {"records": rows}
    assert "2 predictions of model v1" in result.stdout
    assert "score" in result.stdout


def test_predict_sends_the_key_from_the_environment(tmp_path: Path) -> None:
    with running(FakeServer(api_key="sp_k", predict_needs_key=True)) as server:
        ok = setpoint(
            "predict",
            "--json",
            "{}",
            "--url",
            server.url,
            cwd=tmp_path,
            env={"SETPOINT_API_KEY": "sp_k"},
        )
        refused = setpoint("predict", "--json", "{}", "--url", server.url, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert server.received[0].headers["authorization"] == "Bearer sp_k"
    assert_user_error(refused, "401", "unauthorized")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ["--file", "--json", "neither"]),
        (["--json", "{}", "--file", "x.json"], ["--file", "--json", "both"]),
        (["--json", "{oops"], ["--json", "not valid JSON"]),
        (["--json", "[1, 2]"], ["--json", "item 0"]),
        (["--file", "records.txt"], ["--file", ".jsonl", "records.txt"]),
        (["--file", "missing.csv"], ["missing.csv", "no such file"]),
        (["--json", '{"distance": "far"}'], ["422", "distance", "wrong_type"]),
        (["--json", "{}", "--format", "yaml"], ["--format", "yaml"]),
        (["--json", "{}", "--url", "localhost:8000"], ["--url", "localhost:8000"]),
    ],
)
def test_bad_predict_input_fails_cleanly(
    tmp_path: Path, server: FakeServer, args: list[str], words: list[str]
) -> None:
    assert_user_error(setpoint("predict", "--url", server.url, *args, cwd=tmp_path), *words)


def test_predict_to_no_server_names_the_url(tmp_path: Path) -> None:
    url = dead_url()
    result = setpoint("predict", "--json", "{}", "--url", url, cwd=tmp_path)
    assert_user_error(result, url, "setpoint serve")
