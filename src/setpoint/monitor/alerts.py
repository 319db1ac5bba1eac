"""Alerts on monitored windows: dataset drift, and the metric falling past the setpoint.

Three rules, each enabled by ``monitoring.alerts`` in the spec:

- ``drift``: the importance-weighted share of drifted features reaches
  ``monitoring.max_drift_share``.
- ``realized``: the realized metric is worse than ``monitoring.setpoint`` by
  more than its noise: the whole bootstrap interval lies on the wrong side
  (its upper bound below the setpoint for a metric where higher is better).
- ``estimated``: the CBPE estimate (binary models, before labels) is worse
  than the setpoint.

An alert is an ``alert`` event in the store, once per rule, model version,
window length and window start: a later run over the same windows finds it and
stays quiet, so a cron job can run ``setpoint monitor`` as often as it likes.
With ``monitoring.webhook`` set, the event's payload is also POSTed there as
JSON; a failed delivery is an ``alert_delivery_failed`` event, never a failed
monitoring run.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from setpoint._json import jsonable
from setpoint.registry.events import ALERT_EVENT, record_event
from setpoint.store.tables import events

if TYPE_CHECKING:
    from setpoint.config.spec import AlertRule, MonitoringSpec
    from setpoint.monitor.results import MonitorResult, WindowResult
    from setpoint.project import Project

__all__ = [
    "ALERT_EVENT",
    "DELIVERY_FAILED_EVENT",
    "Alert",
    "AlertOutcome",
    "check_alerts",
    "deliver",
    "raise_alerts",
    "redact",
]

DELIVERY_FAILED_EVENT = "alert_delivery_failed"
_TIMEOUT_S = 5.0  # a webhook slower than this must not hold up the monitoring run
_TOLERANCE = 1e-12  # as detect_drift: a share equal to the threshold must not miss it


@dataclass(frozen=True)
class Alert:
    """One rule firing on one window; ``payload`` is what is stored and POSTed."""

    rule: AlertRule
    message: str
    payload: dict[str, Any]

    @property
    def key(self) -> tuple[str, int, str, str]:
        """What makes two alerts the same: rule, model version, window length and start."""
        p = self.payload
        return (str(p["rule"]), int(p["model_version"]), str(p["window"]), str(p["window_start"]))


@dataclass(frozen=True)
class AlertOutcome:
    """``fired``: new this run; ``repeated``: already stored; ``failed``: delivery errors."""

    fired: tuple[Alert, ...]
    repeated: tuple[Alert, ...]
    failed: tuple[str, ...]


def _base(result: MonitorResult, w: WindowResult, rule: AlertRule) -> dict[str, Any]:
    return {
        "project": result.project,
        "rule": rule,
        "model_version": result.version,
        "metric": result.metric,
        "window": result.window,
        "window_start": w.start.isoformat(),
        "window_end": w.end.isoformat(),
        "rows": w.n,
    }


def _span(w: WindowResult) -> str:
    return f"{w.start.strftime('%Y-%m-%d %H:%M')} to {w.end.strftime('%Y-%m-%d %H:%M')} UTC"


def _drift(result: MonitorResult, w: WindowResult, limit: float) -> Alert | None:
    share = w.drift.drift_share
    if share < limit - _TOLERANCE:
        return None
    drifted = list(w.top_drifted(len(w.drift.features)))
    payload = _base(result, w, "drift") | {
        "drift_share": share,
        "max_drift_share": limit,
        "drifted_features": drifted,
    }
    message = (
        f"{result.project}: dataset drift in {_span(w)}: {share:.2f} of the model's feature "
        f"importance drifted (alert at {limit:.2f}): {', '.join(drifted) or '-'}"
    )
    return Alert(rule="drift", message=message, payload=payload)


def _worse(value: float, setpoint: float, *, higher_is_better: bool) -> bool:
    return value < setpoint if higher_is_better else value > setpoint


def _realized(
    result: MonitorResult, w: WindowResult, setpoint: float, higher_is_better: bool
) -> Alert | None:
    found = None if w.realized is None else w.realized.metrics.get(result.metric)
    if found is None or found.value is None or found.low is None or found.high is None:
        return None
    # The interval's bound nearest the setpoint: noise alone must not page.
    bound = found.high if higher_is_better else found.low
    if not _worse(bound, setpoint, higher_is_better=higher_is_better):
        return None
    payload = _base(result, w, "realized") | {
        "value": found.value,
        "low": found.low,
        "high": found.high,
        "setpoint": setpoint,
        "labelled_rows": w.n_labelled,
    }
    message = (
        f"{result.project}: realized {result.metric} {found.value:.3f} "
        f"[{found.low:.3f}, {found.high:.3f}] on {w.n_labelled} labelled rows in {_span(w)} "
        f"is past the setpoint {setpoint:g}"
    )
    return Alert(rule="realized", message=message, payload=payload)


def _estimated(
    result: MonitorResult, w: WindowResult, setpoint: float, higher_is_better: bool
) -> Alert | None:
    found = None if w.estimate is None else w.estimate.metrics.get(result.metric)
    if found is None or found.value is None:
        return None
    if not _worse(found.value, setpoint, higher_is_better=higher_is_better):
        return None
    payload = _base(result, w, "estimated") | {
        "value": found.value,
        "low": found.low,
        "high": found.high,
        "setpoint": setpoint,
        "warnings": list(result.warnings),
    }
    message = (
        f"{result.project}: estimated {result.metric} {found.value:.3f} (CBPE, no labels "
        f"needed) in {_span(w)} is past the setpoint {setpoint:g}"
    )
    return Alert(rule="estimated", message=message, payload=payload)


def check_alerts(
    result: MonitorResult,
    *,
    monitoring: MonitoringSpec,
    higher_is_better: bool,
    latest: int | None = None,
) -> list[Alert]:
    """The rules of ``monitoring`` that fire on the ``latest`` windows (None: every window).

    Pure: nothing is stored or sent. ``higher_is_better`` is the metric's
    direction (``ProjectSpec.higher_is_better``).
    """
    windows = result.windows if latest is None else result.windows[-latest:] if latest else ()
    found: list[Alert | None] = []
    for w in windows:
        if "drift" in monitoring.alerts:
            found.append(_drift(result, w, monitoring.max_drift_share))
        setpoint = monitoring.setpoint
        if setpoint is None:
            continue
        if "realized" in monitoring.alerts:
            found.append(_realized(result, w, setpoint, higher_is_better))
        if "estimated" in monitoring.alerts:
            found.append(_estimated(result, w, setpoint, higher_is_better))
    return [alert for alert in found if alert is not None]


def _stored_key(payload: dict[str, Any]) -> tuple[str, int, str, str] | None:
    try:
        return (
            str(payload["rule"]),
            int(payload["model_version"]),
            str(payload["window"]),
            str(payload["window_start"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # an alert event written by someone else: not ours to match


def redact(url: str) -> str:
    """``url`` without its path, query and user: a webhook's secret is often in its path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _post_urllib(url: str, body: bytes, timeout: float) -> None:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise OSError(f"{type(exc).__name__}: {exc}") from exc


def deliver(url: str, payload: dict[str, Any], *, timeout: float = _TIMEOUT_S) -> None:
    """POST ``payload`` as JSON to ``url``; ``OSError`` naming the webhook when it fails.

    httpx (the ``serve`` extra) when installed, else the standard library.
    """
    body = json.dumps(jsonable(payload), allow_nan=False).encode()
    try:
        try:
            import httpx
        except ImportError:
            _post_urllib(url, body, timeout)
            return
        try:
            answer = httpx.post(
                url, content=body, headers={"Content-Type": "application/json"}, timeout=timeout
            )
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        # The message must not carry the webhook's secret path into the event log.
        text = str(exc).replace(url, redact(url))
        raise OSError(f"POST to the webhook {redact(url)} failed: {text}") from exc


def raise_alerts(
    project: Project,
    result: MonitorResult,
    *,
    latest: int | None = None,
    timeout: float = _TIMEOUT_S,
) -> AlertOutcome:
    """Store each new alert of ``check_alerts`` as an event, then POST it to the webhook.

    Checking for an earlier alert and storing the new one happen in one write
    transaction, so two monitoring runs at once do not both fire.
    """
    spec = project.spec
    alerts = check_alerts(
        result,
        monitoring=spec.monitoring,
        higher_is_better=spec.higher_is_better,
        latest=latest,
    )
    fired: list[Alert] = []
    repeated: list[Alert] = []
    if alerts:
        query = sa.select(events.c.payload).where(
            events.c.project == project.name, events.c.kind == ALERT_EVENT
        )
        with project.store.db.write() as conn:
            seen = {_stored_key(row.payload) for row in conn.execute(query)}
            for alert in alerts:
                if alert.key in seen:
                    repeated.append(alert)
                    continue
                seen.add(alert.key)
                record_event(conn, project=project.name, kind=ALERT_EVENT, payload=alert.payload)
                fired.append(alert)
    failed: list[str] = []
    url = spec.monitoring.webhook
    if url is not None:
        for alert in fired:
            try:
                deliver(url, alert.payload, timeout=timeout)
            except OSError as exc:
                failed.append(str(exc))
                with project.store.db.write() as conn:
                    record_event(
                        conn,
                        project=project.name,
                        kind=DELIVERY_FAILED_EVENT,
                        payload={"webhook": redact(url), "error": str(exc), "alert": alert.payload},
                    )
    return AlertOutcome(fired=tuple(fired), repeated=tuple(repeated), failed=tuple(failed))
