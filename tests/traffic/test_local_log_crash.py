"""What the prediction log's files can look like after a power cut, and what is read from them.

kill -9 leaves the page cache alone, so it never shows a file as the disk holds it
when the machine stops. Here the log's own files are cut at every point a crash can
leave them (each acknowledgement, inside every frame, random bytes; with the tail
zero-filled or with a flipped byte) and reopened: every acknowledged record must be
read, no torn one, and appends must go on after the cut. The other tests check that
the bytes reach the disk before the acknowledgement at all (O_DSYNC, directory
fsyncs), with ``strace`` where it is installed.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from setpoint.traffic.local_log import LocalPredictionLog
from setpoint.traffic.segments import read_log

pytestmark = pytest.mark.hostile

SRC = Path(__file__).resolve().parents[2] / "src"
HEADER = struct.Struct("<II")  # the frame's length and CRC32, then the JSON and a newline


def record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "model_version": "3",
        "inputs": {"x": i, "text": "é" * (i % 7)},
        "output": {"p": i / 100},
        "latency_ms": 0.5,
    }


@dataclass(frozen=True)
class Frame:
    segment: str
    start: int  # offsets in the whole log: the segments one after another
    end: int  # one past the newline


@dataclass(frozen=True)
class History:
    """A log written batch by batch, and where the log stood at each acknowledgement."""

    folder: Path
    sizes: dict[str, int]  # each segment's final size
    frames: list[Frame]
    rows: list[dict[str, Any]]  # every record as read back, in order
    acks: list[tuple[int, int]]  # (offset in the whole log, records acknowledged) per batch

    def segment_at(self, offset: int) -> tuple[list[str], str, int]:
        """The segments wholly before ``offset``, the one it falls in, and where in it."""
        before: list[str] = []
        start = 0
        for name, size in self.sizes.items():
            if offset <= start + size:
                return before, name, offset - start
            before.append(name)
            start += size
        raise ValueError(offset)

    def complete_before(self, offset: int) -> int:
        return sum(1 for frame in self.frames if frame.end <= offset)

    def acknowledged_before(self, offset: int) -> int:
        return max((n for at, n in self.acks if at <= offset), default=0)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    folder = tmp_path_factory.mktemp("written") / "log"
    rng = random.Random(11)
    acks: list[tuple[int, int]] = []
    n = 0
    with LocalPredictionLog(folder, segment_bytes=1500, max_delay_ms=1.0) as plog:
        for _ in range(25):
            size = rng.randint(1, 4)
            plog.append_many(record(i) for i in range(n, n + size))
            n += size
            # the caller is told the batch is stored only now: what is on disk is acknowledged
            acks.append((sum(p.stat().st_size for p in folder.glob("seg-*.log")), n))
        rows = plog.read().to_pylist()
    sizes = {p.name: p.stat().st_size for p in sorted(folder.glob("seg-*.log"))}
    assert len(sizes) > 3, "the small segments should have rotated"
    frames: list[Frame] = []
    base = 0
    for name, size in sizes.items():
        data = (folder / name).read_bytes()
        pos = 0
        while pos < size:
            length, _ = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + length + 1
            frames.append(Frame(name, base + pos, base + end))
            pos = end
        base += size
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(n)]
    assert len(frames) == n
    return History(folder, sizes, frames, rows, acks)


def crashed_copy(
    history: History, offset: int, target: Path, *, tail: bytes = b"", next_created: bool = False
) -> Path:
    """The log's folder as a crash at ``offset`` of the writes leaves it, plus ``tail``."""
    before, name, cut = history.segment_at(offset)
    target.mkdir(parents=True)
    for whole in before:
        shutil.copyfile(history.folder / whole, target / whole)
    data = (history.folder / name).read_bytes()[:cut] + tail
    (target / name).write_bytes(data)
    names = list(history.sizes)
    if next_created and names.index(name) + 1 < len(names):
        # a rotation creates the next segment before the batch that fills it is written
        (target / names[names.index(name) + 1]).write_bytes(b"")
    return target


def check_reopened(history: History, folder: Path, expected: int) -> None:
    """Exactly the first ``expected`` records are read, whole; appends go on after them."""
    want = history.rows[:expected]
    assert read_log(folder).to_pylist() == want  # monitoring's reader, beside no writer
    with LocalPredictionLog(folder, segment_bytes=1500) as plog:
        assert plog.read().to_pylist() == want
        plog.append_many([record(1000)])
        got = plog.read().column("request_id").to_pylist()
    assert got == [r["request_id"] for r in want] + ["r1000"]
    with LocalPredictionLog(folder, segment_bytes=1500) as plog:  # the new record survived
        assert plog.truncated_bytes == 0
        assert plog.read().column("request_id").to_pylist() == got
    assert read_log(folder).column("request_id").to_pylist() == got


def cut_points(history: History) -> list[int]:
    """Each acknowledgement, a torn point inside every frame, and random bytes."""
    points = {0} | {at for at, _ in history.acks}
    for number, frame in enumerate(history.frames):
        length = frame.end - frame.start
        # in turn: the header cut, no payload, half the payload, all but the newline
        torn = (3, HEADER.size, length // 2, length - 1)
        points.add(frame.start + torn[number % len(torn)])
    total = sum(history.sizes.values())
    points |= set(random.Random(5).sample(range(total + 1), 30))
    return sorted(points)


def test_a_crash_at_any_byte_keeps_every_acknowledged_record(
    history: History, tmp_path: Path
) -> None:
    cuts = cut_points(history)
    assert len(cuts) > 100
    for number, offset in enumerate(cuts):
        complete = history.complete_before(offset)
        assert complete >= history.acknowledged_before(offset)
        folder = crashed_copy(history, offset, tmp_path / f"cut{number}")
        check_reopened(history, folder, complete)


def test_a_crash_after_the_size_grew_reads_no_zeros(history: History, tmp_path: Path) -> None:
    """The file's new size reached the disk and its data blocks did not: a zero-filled tail."""
    for number, (offset, acknowledged) in enumerate(history.acks[:-1]):
        following = history.acks[number + 1][0]
        # in turn: part of a header, a whole one, all that the next batch wrote
        zeros = (1, HEADER.size, following - offset)[number % 3]
        folder = crashed_copy(history, offset, tmp_path / f"z{number}", tail=b"\0" * zeros)
        check_reopened(history, folder, acknowledged)


def test_a_crash_between_rotation_and_the_next_write(history: History, tmp_path: Path) -> None:
    starts = {frame.segment: frame.start for frame in reversed(history.frames)}
    boundaries = sorted(starts.values())[1:]  # where each segment after the first begins
    assert boundaries
    for number, offset in enumerate(boundaries):
        folder = crashed_copy(history, offset, tmp_path / f"rot{number}", next_created=True)
        assert len(list(folder.glob("seg-*.log"))) == number + 2  # the last one empty
        check_reopened(history, folder, history.complete_before(offset))


def test_a_garbled_tail_is_cut_at_its_first_bad_frame(history: History, tmp_path: Path) -> None:
    """A batch torn mid-write: whole frames, then one with a wrong byte, then more frames."""
    rng = random.Random(3)
    cases = 0
    for number, (offset, acknowledged) in enumerate(history.acks[:-1]):
        following = history.acks[number + 1][0]
        tail = [f for f in history.frames if offset <= f.start and f.end <= following]
        if len(tail) < 2 or any(f.segment != tail[0].segment for f in tail):
            continue  # a batch written across a rotation: its first part is not a torn tail
        segment = tail[0].segment
        start = segment_start(history, segment)
        data = bytearray((history.folder / segment).read_bytes()[: following - start])
        bad = rng.randrange(len(tail))
        frame = tail[bad]
        # any byte of the frame: its length, its CRC, its JSON or its newline
        data[frame.start - start + rng.randrange(frame.end - frame.start)] ^= 0x5A
        folder = tmp_path / f"flip{number}"
        folder.mkdir()
        for name in history.sizes:
            if name == segment:
                break
            shutil.copyfile(history.folder / name, folder / name)
        (folder / segment).write_bytes(bytes(data))
        check_reopened(history, folder, history.frames.index(frame))
        assert history.frames.index(frame) >= acknowledged
        cases += 1
    assert cases >= 5


def segment_start(history: History, segment: str) -> int:
    start = 0
    for name, size in history.sizes.items():
        if name == segment:
            return start
        start += size
    raise KeyError(segment)


def test_segments_are_written_with_o_dsync(tmp_path: Path) -> None:
    """Each write to a segment returns only once it is on disk: the descriptor is O_DSYNC."""
    if not Path("/proc/self/fdinfo").is_dir():
        pytest.skip("needs Linux's /proc/self/fdinfo")
    folder = tmp_path / "log"
    with LocalPredictionLog(folder, segment_bytes=400) as plog:
        for i in range(8):
            plog.append_many([record(i)])
            live = str(max(folder.glob("seg-*.log")))
            fds = [fd for fd in os.listdir("/proc/self/fd") if _target(fd) == live]
            assert fds, f"no descriptor open on the live segment {live}"
            for fd in fds:
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
                found = re.search(r"^flags:\s+([0-7]+)$", info, re.MULTILINE)
                assert found is not None, info
                assert int(found.group(1), 8) & os.O_DSYNC, f"{live} is open without O_DSYNC"
    assert len(list(folder.glob("seg-*.log"))) > 2  # and the rotated segments were too


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the descriptor of the listing itself, closed since
        return ""


TRACED = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from setpoint.traffic.local_log import LocalPredictionLog

    with LocalPredictionLog(Path(sys.argv[1]), segment_bytes=600, max_delay_ms=0) as plog:
        for i in range(12):
            plog.append_many([{"request_id": f"r{i}", "model_version": "1", "inputs": {"i": i},
                               "output": i, "latency_ms": 0.1}])
            os.write(1, b"ack %d\\n" % i)  # a system call in the trace: the answer is sent
    """
)


def _syscalls(trace: str) -> list[tuple[str, str, str]]:
    """(name, arguments, result) of each finished call, in the order the calls returned."""
    calls: list[tuple[str, str, str]] = []
    pending: dict[str, str] = {}
    for line in trace.splitlines():
        pid, _, text = line.partition(" ")
        text = text.lstrip()  # strace pads short process ids
        if text.endswith("<unfinished ...>"):
            pending[pid] = text.removesuffix("<unfinished ...>")
            continue
        resumed = re.match(r"<\.\.\. \w+ resumed>(.*)$", text)
        if resumed:
            text = pending.pop(pid, "") + resumed.group(1)
        found = re.match(r"(\w+)\((.*)\)\s+= (-?\d+)(.*)$", text)
        if found:
            calls.append((found.group(1), found.group(2), found.group(3) + found.group(4)))
    return calls


def test_each_acknowledgement_follows_the_sync_of_its_record(tmp_path: Path) -> None:
    """Under strace: before each answer, the record's write returned on an O_DSYNC segment
    (or was fsynced), the segment's creation was fsynced in its directory, and so was the
    log directory's in its parent."""
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs strace for the sync-before-answer test", pytrace=False)
        pytest.skip("strace is not installed")
    parent = tmp_path.resolve()
    folder = parent / "log"
    out = parent / "trace.txt"
    calls = "openat,open,creat,mkdir,mkdirat,write,pwrite64,writev,fsync,fdatasync"
    command = [strace, "-f", "-qq", "-y", "-s", "32", "-e", f"trace={calls}", "-o", str(out)]
    done = subprocess.run(
        [*command, sys.executable, "-c", TRACED, str(folder)],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        if os.environ.get("CI"):
            pytest.fail(f"strace cannot trace here: {done.stderr}", pytrace=False)
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"ack {i}" for i in range(12)]

    def fd_path(argument: str) -> str:
        found = re.match(r"\d+<(.*?)>", argument)
        return found.group(1) if found else ""

    def is_segment(path: str) -> bool:
        return Path(path).parent == folder and Path(path).name.startswith("seg-")

    unnamed: set[str] = set()  # created, their directory not fsynced since
    unsynced: set[str] = set()  # written through a descriptor without O_DSYNC, not fsynced
    dsync: dict[str, bool] = {}  # by descriptor
    written = acks = created = 0
    for name, arguments, result in _syscalls(out.read_text()):
        if name in ("mkdir", "mkdirat") and result.startswith("0") and str(folder) in arguments:
            unnamed.add(str(folder))
        elif name in ("open", "openat", "creat") and not result.startswith("-"):
            fd = result.split("<")[0]
            path = result[len(fd) + 1 : -1]
            dsync[fd] = "O_DSYNC" in arguments or "O_SYNC" in arguments
            if is_segment(path) and "O_CREAT" in arguments:
                unnamed.add(path)
                created += 1
        elif name in ("fsync", "fdatasync"):
            path = fd_path(arguments)
            unsynced.discard(path)
            unnamed -= {p for p in unnamed if str(Path(p).parent) == path}
        elif name in ("write", "pwrite64", "writev"):
            fd = arguments.split("<")[0]
            path = fd_path(arguments)
            if is_segment(path):
                written += 1
                if not dsync.get(fd, False):
                    unsynced.add(path)
            elif fd == "1" and '"ack ' in arguments:
                assert written, f"answer {acks} was sent before any record was written"
                assert not unsynced, f"answer {acks} was sent before {unsynced} was synced"
                assert not unnamed, (
                    f"answer {acks} was sent before the creation of {unnamed} was fsynced "
                    "in its directory"
                )
                acks += 1
                written = 0
    assert acks == 12
    assert created > 2  # the small segments rotated: each new one was checked too
