"""Prometheus metrics, summed over the workers of one server.

Each worker counts in memory (no lock: a worker's requests run on one event
loop) and writes a snapshot to ``<run dir>/metrics-w<N>.json`` every second;
``/metrics`` on any worker adds its own live numbers to the other workers'
snapshots, so a scrape sees the whole server whichever worker answers it.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

__all__ = ["FAMILIES", "Labels", "Metrics", "sample_line"]

Kind = Literal["counter", "gauge", "histogram"]
Labels = tuple[tuple[str, str], ...]

FAMILIES: dict[str, tuple[Kind, str]] = {
    "setpoint_requests_total": ("counter", "HTTP requests by endpoint and status."),
    "setpoint_request_duration_seconds": ("histogram", "Time to answer, by endpoint."),
    "setpoint_predictions_total": ("counter", "Records scored, by role, version and label."),
    "setpoint_errors_total": ("counter", "Error responses and failures, by kind."),
    "setpoint_prediction_log_backlog": ("gauge", "Records waiting for the prediction log."),
    "setpoint_model_version": ("gauge", "Version each role serves (absent: none)."),
}
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STALE_S = 60.0  # a snapshot older than this is from a worker that is gone


class Metrics:
    """Counters, gauges and fixed-bucket histograms of one worker."""

    def __init__(self, *, snapshot_path: Path | None = None) -> None:
        self.snapshot_path = snapshot_path
        self._values: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[tuple[str, Labels], list[float]] = {}  # bucket counts, sum

    def inc(self, name: str, labels: Labels = (), value: float = 1.0) -> None:
        key = (name, labels)
        self._values[key] = self._values.get(key, 0.0) + value

    def set(self, name: str, labels: Labels = (), value: float | None = None) -> None:
        if value is None:
            self._values.pop((name, labels), None)
        else:
            self._values[(name, labels)] = value

    def observe(self, name: str, labels: Labels, seconds: float) -> None:
        counts = self._histograms.get((name, labels))
        if counts is None:
            counts = self._histograms[(name, labels)] = [0.0] * (len(BUCKETS) + 2)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1  # the +Inf bucket is last but one
        counts[-1] += seconds

    # -- sharing between workers --------------------------------------------------------------

    def snapshot(self) -> dict[str, list[list[object]]]:
        return {
            "values": [[n, list(map(list, lb)), v] for (n, lb), v in self._values.items()],
            "histograms": [[n, list(map(list, lb)), c] for (n, lb), c in self._histograms.items()],
        }

    def write_snapshot(self) -> None:
        if self.snapshot_path is None:
            return
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()), encoding="utf-8")
        tmp.replace(self.snapshot_path)  # readers never see half a file; losing one is harmless

    def _others(self) -> list[Any]:
        if self.snapshot_path is None:
            return []
        found = []
        now = time.time()
        for path in self.snapshot_path.parent.glob("metrics-w*.json"):
            if path == self.snapshot_path:
                continue
            with contextlib.suppress(OSError, ValueError):
                if now - os.path.getmtime(path) < _STALE_S:
                    found.append(json.loads(path.read_text(encoding="utf-8")))
        return found

    # -- exposition ---------------------------------------------------------------------------

    def render(self) -> str:
        """The Prometheus text format (version 0.0.4) of every worker's numbers."""
        values = dict(self._values)
        histograms = {k: list(v) for k, v in self._histograms.items()}
        for other in self._others():
            for name, labels, value in other.get("values", []):
                key = (str(name), _labels(labels))
                if key[0] == "setpoint_model_version":  # the same for every worker, once swapped
                    values.setdefault(key, float(value))
                else:
                    values[key] = values.get(key, 0.0) + float(value)
            for name, labels, counts in other.get("histograms", []):
                key = (str(name), _labels(labels))
                mine = histograms.setdefault(key, [0.0] * (len(BUCKETS) + 2))
                for i, c in enumerate(counts):
                    mine[i] += float(c)
        lines: list[str] = []
        for family, (kind, help_text) in FAMILIES.items():
            lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
            if kind == "histogram":
                for (name, labels), counts in sorted(histograms.items()):
                    if name == family:
                        lines += _histogram(name, labels, counts)
            else:
                for (name, labels), value in sorted(values.items()):
                    if name == family:
                        lines.append(sample_line(name, labels, value))
        return "\n".join(lines) + "\n"


def sample_line(name: str, labels: Labels, value: float) -> str:
    """One sample in the text format: ``name{label="value",...} number``, values escaped."""
    return f"{name}{_format(labels)} {_number(value)}"


def _labels(raw: Any) -> Labels:
    return tuple((str(k), str(v)) for k, v in raw)


def _histogram(name: str, labels: Labels, counts: list[float]) -> list[str]:
    lines = []
    total = 0.0
    for bound, count in zip((*BUCKETS, math.inf), counts, strict=False):
        total += count
        le = "+Inf" if bound == math.inf else repr(bound)
        lines.append(f"{name}_bucket{_format((*labels, ('le', le)))} {_number(total)}")
    lines.append(f"{name}_sum{_format(labels)} {counts[-1]!r}")
    lines.append(f"{name}_count{_format(labels)} {_number(total)}")
    return lines


def _format(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    if not value.isascii():
        # a lone surrogate (JSON can carry one) would make the whole body unencodable
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    # integers print as such up to 2**53, beyond which a float no longer holds every one
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)
