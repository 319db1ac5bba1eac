"""Monitor a project's served traffic, window by window, against its model's reference.

For each window: how many predictions and from which model versions; drift of
every feature and of the prediction against the reference stored with the model
(``reference.json``, built from its held-out rows), weighted by the model's
feature importances; the project's metric realized on the rows whose labels
arrived, overall and per value of each of the spec's ``segments``; and, for a
binary model, the same metric estimated from the scores alone (CBPE) with the
estimate's error once labels are in.

On request (``multivariate=True``), a domain classifier also tells each
window's rows from the model's held-out rows (``domain_classifier_drift``). The
stored reference summarises each column on its own (bins, a per-column sample,
category counts) and so holds no joint rows; the held-out rows are read again
from the dataset version the model was trained on, split as training split it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from setpoint import __version__
from setpoint.config.spec import SplitSpec
from setpoint.errors import ConfigError, InvalidParameterError, NotFoundError, SetpointError
from setpoint.kinds.protocol import MonitoringReference
from setpoint.monitor.assess import WindowOptions, assess_window, domain_frame
from setpoint.monitor.results import MonitorResult, WindowResult, read_window
from setpoint.monitor.windows import Window, cut_windows, parse_window
from setpoint.registry import aliases as alias_ops
from setpoint.registry.datasets import load_dataset
from setpoint.registry.events import LABELS_SKIPPED_EVENT, record_event
from setpoint.registry.feedback import LabelRule, list_feedback
from setpoint.registry.models import get_version
from setpoint.registry.stored_windows import StoredWindow, load_windows, save_windows
from setpoint.settings import get_settings
from setpoint.traffic.frames import LABEL_SKIPPED, Traffic, join_feedback, load_traffic
from setpoint.train.split import time_split

if TYPE_CHECKING:
    from setpoint.project import Project

__all__ = [
    "monitor_project",
    "on_event_clock",
    "reference_rows",
]

# Distinct reasons of skipped labels named in a warning or an event.
_REASONS_SHOWN = 5


def _utc(value: datetime | None, parameter: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidParameterError(
            owner="monitor_project", parameter=parameter, expected="a datetime", got=value
        )
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def reference_rows(project: Project, version: int, ref: MonitoringReference) -> pd.DataFrame:
    """The held-out rows ``ref`` summarises, as the features the domain classifier reads.

    They are read again from the dataset version model ``version`` was trained
    on and split as its lineage records. ``ConfigError`` says why when they
    cannot be rebuilt exactly: the dataset's batches or the row count differ.
    """
    lineage = get_version(project.store, project=project.name, version=version).lineage
    why = f"the held-out rows of model @{version} cannot be rebuilt"
    try:
        dataset = lineage["dataset"]
        split = SplitSpec(**lineage["recipe"]["split"])
        timestamp = lineage["split"]["timestamp"]
        names = [*ref.reference.features, *([timestamp] if timestamp else [])]
        frame, batches = load_dataset(
            project.store,
            project=project.name,
            name=dataset["name"],
            version=dataset["version"],
            columns=list(dict.fromkeys(names)),
        )
        held_out = time_split(frame, timestamp=timestamp, split=split).test
    except (SetpointError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{why}: {exc}", version=version) from None
    if [b.content_hash for b in batches] != list(dataset.get("batches", [])):
        raise ConfigError(
            f"{why}: dataset {dataset['name']} v{dataset['version']} no longer holds the "
            "batches the model was trained on",
            version=version,
        )
    if len(held_out) != ref.reference.n_rows:
        raise ConfigError(
            f"{why}: the split gives {len(held_out)} rows, the reference summarises "
            f"{ref.reference.n_rows}",
            version=version,
        )
    return domain_frame(frame.iloc[held_out].reset_index(drop=True), ref)


def _select(
    traffic: Traffic,
    *,
    start: datetime | None,
    stop: datetime | None,
    version: int | None,
    project: str,
    model: int,
) -> Traffic:
    """The predictions with ``start <= time < stop`` (of ``version`` only, if given)."""
    meta = traffic.meta
    keep = np.ones(len(meta), dtype=bool)
    if start is not None:
        keep &= (meta["time"] >= pd.Timestamp(start)).to_numpy()
    if stop is not None:
        keep &= (meta["time"] < pd.Timestamp(stop)).to_numpy()
    if version is not None:
        keep &= (meta["model_version"] == str(version)).to_numpy()
    if not keep.any():
        raise ConfigError(
            f"No served predictions of project {project!r} fall in "
            f"[{start.isoformat() if start else 'the first'}, "
            f"{stop.isoformat() if stop else 'the last'}) for model @{model}; "
            f"{len(meta)} are logged from {meta['time'].iloc[0].isoformat()} "
            f"to {meta['time'].iloc[-1].isoformat()}.",
            since=start,
            until=stop,
        )
    return Traffic(
        meta=meta[keep].reset_index(drop=True),
        inputs=traffic.inputs[keep].reset_index(drop=True),
    )


def monitor_project(
    project: Project,
    *,
    window: str,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
    clock: Literal["event", "served"] = "event",
    multivariate: bool = False,
    reuse: bool = True,
    save: bool = True,
) -> MonitorResult:
    """Monitor the served traffic with ``since <= time < until``, cut into ``window``s.

    ``version`` None compares every served prediction with the champion's
    reference; a version compares only the predictions it made with its own.
    ``clock="event"`` places each prediction at its record's own time (the
    spec's ``timestamp`` field, when requests carry it), so a replayed or
    backfilled period is judged week by week as it happened; ``"served"`` (and
    records without the field) use the time the server answered.

    The realized metric is also given per value of each of the spec's
    ``segments`` (values with fewer than the spec's ``gate.min_segment_rows``
    labelled rows are listed as skipped). ``multivariate=True`` adds the domain
    classifier's verdict per window (about a second each; see the module docstring).

    Windows are kept in the metadata store (``save``), each with a fingerprint
    of what it was computed from: its rows and labels, the spec, the options and
    this version of setpoint. With ``reuse``, a window whose fingerprint has not
    changed since is read back instead of computed again, so a run after new
    traffic computes only the windows that traffic (or its labels) reached.
    """
    spec = parse_window(window)
    start, stop = _utc(since, "since"), _utc(until, "until")
    if not isinstance(multivariate, bool):
        raise InvalidParameterError(
            owner="monitor_project", parameter="multivariate", expected="a bool", got=multivariate
        )
    only_version = version is not None
    if version is None:
        version = alias_ops.get_alias(project.store.db, project=project.name, alias="champion")
        if version is None:
            raise NotFoundError(
                kind="alias", name="champion", hint="Train and promote a model first."
            )
    ref = project.load_reference(version)
    model = project.load_model(version)
    traffic = load_traffic(project.store, project=project.name)
    if clock == "event" and project.spec.timestamp is not None:
        traffic = on_event_clock(traffic, project.spec.timestamp)
    traffic = _select(
        traffic,
        start=start,
        stop=stop,
        version=version if only_version else None,
        project=project.name,
        model=version,
    )
    traffic = join_feedback(
        traffic, list_feedback(project.store.db, project=project.name), rule=LabelRule.of(model)
    )
    warnings: list[str] = []
    skipped = _skipped_labels(traffic)
    if skipped:
        warnings.append(
            f"{sum(skipped.values())} stored label(s) were skipped, as model @{version} cannot "
            f"be judged on them: {'; '.join(sorted(skipped)[:_REASONS_SHOWN])}"
        )
    if ref.calibration is not None and not ref.calibration.calibrated:
        warnings.append(
            f"model @{version} was not calibrated enough on its reference rows "
            f"({ref.calibration.reason}): estimated metrics may be off"
        )
    segment_columns = tuple(dict.fromkeys(project.spec.segments))
    absent = [name for name in segment_columns if name not in traffic.inputs]
    if absent:
        warnings.append(
            f"segment column(s) {absent} of the spec are in no logged input: no realized "
            "metric per segment for them"
        )
    reference: pd.DataFrame | None = None
    unavailable: str | None = None
    if multivariate:
        try:
            reference = reference_rows(project, version, ref)
        except ConfigError as exc:
            unavailable = str(exc)
            warnings.append(f"no multivariate drift: {unavailable}")
    threads = get_settings().num_threads
    effective_clock = "event" if clock == "event" and project.spec.timestamp else "served"
    context = _context(project, version, spec.text, only_version, multivariate, start, stop)
    stored: dict[datetime, StoredWindow] = {}
    if reuse:
        stored = {
            w.start: w
            for w in load_windows(
                project.store.db,
                project=project.name,
                version=version,
                window=spec.text,
                clock=effective_clock,
            )
        }
    options = WindowOptions.from_spec(project.spec)
    results: list[WindowResult] = []
    fresh: list[StoredWindow] = []
    reused = 0
    for rows in cut_windows(traffic.meta["time"], spec):
        window_meta = traffic.meta.iloc[rows.positions]
        fingerprint = _fingerprint(context, rows, window_meta)
        earlier = _read_back(stored.get(rows.start), fingerprint)
        if earlier is not None:
            results.append(earlier)
            reused += 1
            continue
        results.append(
            assess_window(
                traffic,
                rows,
                model=model,
                ref=ref,
                options=options,
                reference_rows=reference,
                multivariate_skipped=unavailable,
                threads=threads,
            )
        )
        fresh.append(
            _to_store(project.name, version, spec.text, effective_clock, results[-1], fingerprint)
        )
    if save and skipped:
        with project.store.db.write() as conn:
            record_event(
                conn,
                project=project.name,
                kind=LABELS_SKIPPED_EVENT,
                payload={
                    "source": "monitor",
                    "version": version,
                    "count": sum(skipped.values()),
                    "reasons": sorted(skipped)[:_REASONS_SHOWN],
                },
            )
    if save and fresh:
        save_windows(
            project.store.db,
            project=project.name,
            version=version,
            window=spec.text,
            clock=effective_clock,
            windows=fresh,
        )
    return MonitorResult(
        project=project.name,
        version=version,
        task=model.task.value,
        metric=project.spec.metric,
        window=spec.text,
        windows=tuple(results),
        warnings=tuple(warnings),
        segment_columns=segment_columns,
        min_segment_rows=options.min_segment_rows,
        higher_is_better=project.spec.higher_is_better,
        multivariate=multivariate,
        reused=reused,
    )


def _context(
    project: Project,
    version: int,
    window: str,
    only_version: bool,
    multivariate: bool,
    start: datetime | None,
    stop: datetime | None,
) -> str:
    """What every window of this run is computed from besides its own rows."""
    return json.dumps(
        {
            "setpoint": __version__,
            "spec": project.spec.model_dump(mode="json"),
            "version": version,
            "window": window,
            "only_version": only_version,
            "multivariate": multivariate,
            "since": None if start is None else start.isoformat(),
            "until": None if stop is None else stop.isoformat(),
        },
        sort_keys=True,
    )


def _skipped_labels(traffic: Traffic) -> dict[str, int]:
    """How many rows of ``traffic`` the join left unlabelled, by reason."""
    if LABEL_SKIPPED not in traffic.meta:
        return {}
    counts = traffic.meta[LABEL_SKIPPED].dropna().astype(str).value_counts()
    return {str(reason): int(n) for reason, n in counts.items()}


def _fingerprint(context: str, rows: Window, meta: pd.DataFrame) -> str:
    # The log is append-only and a label, once stored, never changes (a contradicting
    # one is refused), so the rows' count, span and request ids and the labels' count
    # say whether a window changed.
    digest = hashlib.sha256(context.encode())
    digest.update(f"{rows.start.isoformat()}|{rows.end.isoformat()}|{len(meta)}".encode())
    digest.update(f"|{int(meta['label'].notna().sum())}|".encode())
    if LABEL_SKIPPED in meta and (bad := int(meta[LABEL_SKIPPED].notna().sum())):
        # only then, so that a window without one keeps the fingerprint it was stored with
        digest.update(f"skipped {bad}|".encode())
    ids = meta["request_id"].astype(str) + ":" + meta["index"].astype(str)
    digest.update("\n".join(sorted(ids)).encode())
    return digest.hexdigest()


def _read_back(found: StoredWindow | None, fingerprint: str) -> WindowResult | None:
    if found is None or found.fingerprint != fingerprint:
        return None
    return read_window(found.result)  # None for another shape: computed again


def _to_store(
    project: str, version: int, window: str, clock: str, result: WindowResult, fingerprint: str
) -> StoredWindow:
    return StoredWindow(
        project=project,
        version=version,
        window=window,
        clock=clock,
        start=result.start,
        end=result.end,
        n=result.n,
        n_labelled=result.n_labelled,
        fingerprint=fingerprint,
        result=result.to_dict(),
        computed_at=datetime.now(UTC),
    )


def on_event_clock(traffic: Traffic, column: str) -> Traffic:
    """``traffic`` timed and ordered by each record's ``column``, where it has a valid one."""
    if column not in traffic.inputs:
        return traffic
    event = pd.to_datetime(traffic.inputs[column], utc=True, errors="coerce", format="ISO8601")
    meta = traffic.meta.copy()
    meta["served_at"] = meta["time"]
    known = event.notna().to_numpy()
    meta.loc[known, "time"] = event[known].dt.as_unit("us").to_numpy()
    order = np.argsort(meta["time"].to_numpy(), kind="stable")
    return Traffic(
        meta=meta.iloc[order].reset_index(drop=True),
        inputs=traffic.inputs.iloc[order].reset_index(drop=True),
    )
