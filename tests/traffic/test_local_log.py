"""The prediction log on real files: round trip, torn tails, CRC, roll, concurrency, SIGKILL."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from _support.mounts import fill, tmpfs
from setpoint.errors import InvalidParameterError, PredictionLogCorruptError, StoreError
from setpoint.traffic.local_log import LocalPredictionLog
from setpoint.traffic.segments import read_log, read_logs

SRC = Path(__file__).resolve().parents[2] / "src"


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "model_version": "7",
        "inputs": {"x": i, "name": "é"},
        "output": {"p": i / 10},
        "latency_ms": 1.5,
        **extra,
    }


def ids(plog: LocalPredictionLog) -> list[str]:
    found: list[str] = plog.read().column("request_id").to_pylist()
    return found


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def test_round_trip(tmp_path: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with LocalPredictionLog(tmp_path / "log") as plog:
        assert plog.truncated_bytes == 0  # a new log has no tail to cut
        plog.append_many([record(0, time=when, role="shadow", entity_id=7, index=3), record(1)])
        plog.append(record(2)).result()
        asyncio.run(plog.aappend(record(3)))
    with LocalPredictionLog(tmp_path / "log") as plog:
        rows = plog.read().to_pylist()
        assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
        assert rows[0]["time"] == when
        assert json.loads(rows[0]["inputs"]) == {"x": 0, "name": "é"}
        assert json.loads(rows[0]["output"]) == {"p": 0.0}
        assert (rows[0]["role"], rows[0]["entity_id"], rows[0]["index"]) == ("shadow", "7", 3)
        assert (rows[1]["role"], rows[1]["entity_id"], rows[1]["index"]) == ("champion", None, 0)
        assert ids_since(plog, when + timedelta(seconds=1)) == ["r1", "r2", "r3"]


def ids_since(plog: LocalPredictionLog, since: datetime) -> list[str]:
    found: list[str] = plog.read(since=since).column("request_id").to_pylist()
    return found


def test_bad_records_and_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="segment_bytes"):
        LocalPredictionLog(tmp_path, segment_bytes=0)
    with LocalPredictionLog(tmp_path) as plog:
        with pytest.raises(InvalidParameterError, match="latency_ms"):
            plog.append({"request_id": "x", "model_version": "1", "inputs": {}, "output": 1})
        with pytest.raises(StoreError, match="another process"):
            LocalPredictionLog(tmp_path)
    with pytest.raises(StoreError, match="closed"):
        plog.append(record(0))


@pytest.mark.hostile
def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path) as plog:
        plog.append_many(record(i) for i in range(10))
    (segment,) = segments(tmp_path)
    size = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(size - 7)  # the last record loses its end
    with LocalPredictionLog(tmp_path) as plog:
        assert plog.truncated_bytes > 0
        assert ids(plog) == [f"r{i}" for i in range(9)]
        plog.append_many([record(99)])  # appends continue after the cut
    with LocalPredictionLog(tmp_path) as plog:
        assert plog.truncated_bytes == 0
        assert ids(plog)[-2:] == ["r8", "r99"]


@pytest.mark.hostile
def test_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path) as plog:
        plog.append_many([record(0)])
    (segment,) = segments(tmp_path)
    with segment.open("ab") as f:
        f.write(b"\0" * 4096)  # the file grew but the data blocks never made it
    with LocalPredictionLog(tmp_path) as plog:
        assert plog.truncated_bytes == 4096
        assert ids(plog) == ["r0"]


def test_an_empty_frame_is_a_torn_tail(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path) as plog:
        plog.append_many([record(0)])
    (segment,) = segments(tmp_path)
    with segment.open("ab") as f:
        # length 0 and the CRC of nothing (0), then the newline: well formed, but no record
        f.write(struct.pack("<II", 0, 0) + b"\n")
    with LocalPredictionLog(tmp_path) as plog:
        assert plog.truncated_bytes == 9
        assert ids(plog) == ["r0"]


def test_a_record_of_the_largest_size_is_kept_on_reopening(tmp_path: Path) -> None:
    def sized(i: int, length: int) -> dict[str, Any]:
        return record(i, inputs={"x": "y" * length}, time=1_700_000_000)

    with LocalPredictionLog(tmp_path / "probe") as plog:
        plog.append_many([sized(0, 0)])
    (segment,) = segments(tmp_path / "probe")
    # each "y" is one more byte of JSON; a frame is 8 bytes of header, the JSON and a newline
    length = 16 * 2**20 - (segment.stat().st_size - 9)
    with LocalPredictionLog(tmp_path / "log") as plog:
        plog.append_many([sized(1, length)])
        with pytest.raises(InvalidParameterError, match="at most 16 MiB"):
            plog.append(sized(2, length + 1))
    with LocalPredictionLog(tmp_path / "log") as plog:  # acknowledged, so never cut as torn
        assert plog.truncated_bytes == 0
        assert ids(plog) == ["r1"]


@pytest.mark.hostile
def test_corrupted_crc_is_detected(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path, segment_bytes=400) as plog:
        plog.append_many(record(i) for i in range(10))
    first, *rest = segments(tmp_path)
    assert rest, "the small segment size should have rotated"
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF  # a payload byte of the first record
    first.write_bytes(bytes(data))
    with LocalPredictionLog(tmp_path, segment_bytes=400) as plog:
        with pytest.raises(PredictionLogCorruptError, match="CRC") as info:
            plog.read()
        assert info.value.offset == 0
        with pytest.raises(PredictionLogCorruptError):
            plog.roll()


@pytest.mark.hostile
def test_corrupted_crc_in_the_last_segment_cuts_only_from_there(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path) as plog:
        plog.append_many(record(i) for i in range(3))
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # inside the last record's payload
    segment.write_bytes(bytes(data))
    with LocalPredictionLog(tmp_path) as plog:
        assert ids(plog) == ["r0", "r1"]


def test_roll_keeps_every_record_once(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path, segment_bytes=1000) as plog:
        for start in range(0, 100, 10):
            plog.append_many(record(i) for i in range(start, start + 10))
        assert len(segments(tmp_path)) > 3
        sealed = plog.roll()
        assert sealed
        assert len(segments(tmp_path)) == 1  # only the live one
        assert ids(plog) == [f"r{i}" for i in range(100)]
        plog.append_many([record(100)])
        plog.roll(include_active=True)
        assert ids(plog) == [f"r{i}" for i in range(101)]
    assert not list(tmp_path.glob("*.tmp"))
    with LocalPredictionLog(tmp_path, segment_bytes=1000) as plog:
        assert ids(plog) == [f"r{i}" for i in range(101)]


@pytest.mark.hostile
def test_an_interrupted_roll_is_finished_on_open(tmp_path: Path) -> None:
    with LocalPredictionLog(tmp_path, segment_bytes=300) as plog:
        plog.append_many(record(i) for i in range(10))
        first = segments(tmp_path)[0]
        raw = first.read_bytes()
        plog.roll()
    first.write_bytes(raw)  # as if killed after the rename, before deleting the raw segment
    (tmp_path / "seg-000000000099.parquet.tmp").write_bytes(b"half")
    with LocalPredictionLog(tmp_path, segment_bytes=300) as plog:
        assert ids(plog) == [f"r{i}" for i in range(10)]
    assert not first.exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_concurrent_threads_are_all_acknowledged(tmp_path: Path) -> None:
    per_thread = 200

    def work(t: int) -> None:
        for i in range(per_thread):
            plog.append_many([record(t * per_thread + i)])

    with LocalPredictionLog(tmp_path, segment_bytes=20_000) as plog:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = ids(plog)
    assert sorted(got) == sorted(f"r{i}" for i in range(8 * per_thread))
    with LocalPredictionLog(tmp_path) as plog:
        assert len(ids(plog)) == 8 * per_thread


CHILD = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from setpoint.traffic.local_log import LocalPredictionLog

    plog = LocalPredictionLog(Path(sys.argv[1]), segment_bytes=50_000, max_delay_ms=1.0)
    out = threading.Lock()

    def work(t):
        i = 0
        while True:
            rid = f"{sys.argv[2]}-{t}-{i}"
            plog.append_many([{"request_id": rid, "model_version": "1",
                               "inputs": {"i": i}, "output": i, "latency_ms": 0.1}])
            with out:  # printed only after the append returned: an acknowledged id
                sys.stdout.write(rid + "\\n")
                sys.stdout.flush()
            i += 1

    print("ready", flush=True)
    for t in range(12):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.hostile
@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_record(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    rng = random.Random(1234)
    acknowledged: set[str] = set()
    for run in range(3):
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), f"run{run}"],
            stdout=subprocess.PIPE,
            env=env,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.3, 1.5))
            child.send_signal(signal.SIGKILL)
            out = child.stdout.read()
        lines = out.split(b"\n")[:-1]  # the last piece is empty or a line cut by the kill
        printed = {line.decode() for line in lines}
        assert printed, "the child acknowledged nothing"
        acknowledged |= printed
        with LocalPredictionLog(tmp_path) as plog:
            stored = plog.read().column("request_id").to_pylist()
            if run == 1:
                plog.roll()  # the next run starts from sealed Parquet plus a raw segment
        assert len(stored) == len(set(stored)), "a record was stored twice"
        missing = acknowledged - set(stored)
        assert not missing, f"{len(missing)} acknowledged ids lost, e.g. {sorted(missing)[:3]}"


def test_a_reader_beside_the_writer_sees_acknowledged_records(tmp_path: Path) -> None:
    folder = tmp_path / "predictions" / "w0"
    with LocalPredictionLog(folder, segment_bytes=400) as plog:
        plog.append_many([record(i) for i in range(10)])
        plog.roll()  # some segments sealed, the live one raw
        assert list(folder.glob("seg-*.parquet"))
        # the writer is mid-batch: half a frame at the end of the live segment
        live = max(folder.glob("seg-*.log"))
        with live.open("ab") as f:
            f.write(b"\x40\x00\x00\x00garbage")
        ids = read_log(folder).column("request_id").to_pylist()
        assert ids == [f"r{i}" for i in range(10)]
        assert read_logs(tmp_path / "predictions").num_rows == 10


@pytest.mark.hostile
def test_a_reader_refuses_corruption_before_the_live_segment(tmp_path: Path) -> None:
    folder = tmp_path / "w0"
    with LocalPredictionLog(folder, segment_bytes=400) as plog:
        plog.append_many([record(i) for i in range(10)])
    first = min(folder.glob("seg-*.log"))
    data = bytearray(first.read_bytes())
    data[12] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(PredictionLogCorruptError):
        read_log(folder)


def test_another_process_seals_finished_segments_while_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "w0"
    with LocalPredictionLog(folder, segment_bytes=400) as plog:
        plog.append_many([record(i) for i in range(10)])
        below = plog.active_segment
        done = subprocess.run(
            [sys.executable, "-m", "setpoint.traffic.seal", str(folder), str(below)],
            env={**os.environ, "PYTHONPATH": str(SRC)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert [int(p.stem[4:]) for p in folder.glob("seg-*.log")] == [below]
        assert len(list(folder.glob("seg-*.parquet"))) == below - 1
        plog.append(record(10)).result()
        ids = plog.read().column("request_id").to_pylist()
    assert ids == [f"r{i}" for i in range(11)]
    assert read_log(folder).column("request_id").to_pylist() == ids
    bad = subprocess.run(
        [sys.executable, "-m", "setpoint.traffic.seal", str(folder)],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "usage" in bad.stderr


@pytest.mark.hostile
def test_a_full_disk_refuses_appends_then_recovers_without_a_torn_frame(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        folder = disk / "w0"
        plog = LocalPredictionLog(folder, retry_s=0.05)
        try:
            plog.append_many([record(i) for i in range(10)])
            acknowledged = segments(folder)[-1].stat().st_size
            filler = fill(disk)
            # about 40 KB: more than the room left in the segment's last page
            big = [record(100 + i, inputs={"x": "y" * 2000}) for i in range(20)]
            with pytest.raises(StoreError, match="No space left on device"):
                plog.append_batch(big).result(timeout=30)
            with pytest.raises(StoreError, match=r"cannot be written.*retries every 0.05 s"):
                plog.append(record(200))
            assert plog.unavailable() is not None
            # whatever part of the failed batch reached the file is cut, even whole frames
            deadline = time.monotonic() + 30
            while segments(folder)[-1].stat().st_size != acknowledged:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert ids(plog) == read_log(folder).column("request_id").to_pylist()
            filler.unlink()
            while plog.unavailable() is not None:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            plog.append_batch(big).result(timeout=30)
            expected = [f"r{i}" for i in [*range(10), *range(100, 120)]]
            assert ids(plog) == expected
        finally:
            plog.close()
        with LocalPredictionLog(folder) as again:  # the next write was not glued to a torn one
            assert again.truncated_bytes == 0
            assert ids(again) == expected


def test_a_probe_that_finds_too_little_room_keeps_refusing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        folder = disk / "w0"
        with LocalPredictionLog(folder, retry_s=0.05, segment_bytes=1000) as plog:
            for i in range(10):
                plog.append_many([record(i)])
            assert len(segments(folder)) > 1, "the log should have rotated before the failure"
            live = segments(folder)[-1]
            acknowledged = live.stat().st_size
            filler = fill(disk)
            big = [record(100 + i, inputs={"x": "y" * 2000}) for i in range(20)]
            with pytest.raises(StoreError, match="No space left on device"):
                plog.append_batch(big).result(timeout=30)
            # room for a few records, far less than a probe must find: a short write
            os.truncate(filler, filler.stat().st_size - 16 * 2**10)

            def cause() -> BaseException | None:
                error = plog.unavailable()
                assert error is not None, "appends were taken again with 16 KiB free"
                return error.__cause__

            # Each failed probe leaves its own error. The first one cut the failed batch; the
            # second began after the room was made, so it wrote into those 16 KiB.
            deadline = time.monotonic() + 30
            for probes in range(2):
                seen = cause()
                while cause() is seen:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                if probes == 0:  # cut back to the last acknowledged byte of the new segment
                    assert live.stat().st_size == acknowledged
            last = cause()
            assert isinstance(last, OSError)
            assert last.errno == errno.ENOSPC
            assert "No space left on device" in str(last)
            with pytest.raises(StoreError, match="cannot be written"):
                plog.append(record(10))
            filler.unlink()
            while plog.unavailable() is not None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            plog.append_many([record(11)])
        expected = [f"r{i}" for i in [*range(10), 11]]
        with LocalPredictionLog(folder, segment_bytes=1000) as again:
            assert again.truncated_bytes == 0
            assert ids(again) == expected


@pytest.mark.hostile
def test_a_request_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    nested: object = 0
    for _ in range(300):  # deeper than the JSON encoder goes
        nested = [nested]
    with LocalPredictionLog(tmp_path) as plog:
        with pytest.raises(InvalidParameterError, match=r"record\['inputs'\]"):
            plog.append_batch([record(0), record(1), record(2, inputs={"x": nested}), record(3)])
        plog.append_batch([record(4), record(5)]).result(timeout=30)
        assert ids(plog) == ["r4", "r5"]
