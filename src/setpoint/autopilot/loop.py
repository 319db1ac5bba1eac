"""The live loop: trigger -> retrain -> gate -> shadow -> promote -> watch -> keep or roll back.

``Autopilot.tick`` is one pass. It first works on a retrain job if one is due,
else looks at the latest window of traffic and, when a trigger trips and the
guard allows it, queues one. A retrain is a row of the ``jobs`` table, taken
under a lease, and each step records its stage there:

========  ==========================================================  ============
stage     done by then                                                 next look
========  ==========================================================  ============
(none)    nothing: train on the history as of the trigger,            at once
          register the model, judge it with the gate
gated     the decision is stored; a rejected challenger ends the job  at once
shadow    the ``shadow`` alias names the challenger; the servers       each look
          score it beside the champion without returning it
watch     the challenger is champion; the old one scores in shadow     each look
========  ==========================================================  ============

Training, registering and gating are ``Project.retrain``, the path
``setpoint train`` also takes; the window the triggers read is
``monitor.assess.assess_window``, the one ``setpoint monitor`` shows; the
shadow and the watch are the state machine of ``rollout.py``, which the
flights replay runs too.

A process killed in a step leaves the stage before it: the job's lease runs
out, the next ``tick`` (of this process or another) takes it and repeats the
step. Training is the only long step; a model registered before the crash is
found again by its job id in the lineage, so a retried job never registers a
second one. Waiting for the shadow or the watch hands the job back
(``postpone``), which does not spend an attempt; an error does, and after
``max_attempts`` the job is dead and the loop goes back to looking.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from setpoint.autopilot.compare import compare_live
from setpoint.autopilot.rollout import Evidence, Rollout, Stage, decide
from setpoint.autopilot.triggers import Guard, Look, RetrainRecord, build_triggers
from setpoint.config.policy import AutopilotPolicy
from setpoint.errors import ConfigError, SetpointError
from setpoint.monitor.assess import WindowOptions, assess_window
from setpoint.monitor.results import WindowResult
from setpoint.monitor.windows import Window
from setpoint.project import Project
from setpoint.registry import aliases as alias_ops
from setpoint.registry import jobs
from setpoint.registry.aliases import AliasKind
from setpoint.registry.events import LABELS_SKIPPED_EVENT, list_events, record_event
from setpoint.registry.feedback import LabelRule
from setpoint.registry.gate import record_gate_decision
from setpoint.registry.models import get_version
from setpoint.store.tables import utcnow
from setpoint.traffic.frames import Traffic
from setpoint.traffic.history import LABEL_TIME, history, traffic_as_of
from setpoint.train.training_set import training_set

__all__ = ["RETRAIN", "Autopilot", "live_window", "queue_retrain"]

log = logging.getLogger("setpoint.autopilot")
RETRAIN = "retrain"
_ACTOR = "autopilot"
_ROLES = ("champion", "canary", "shadow")


def queue_retrain(
    project: Project, *, key: str, as_of: datetime, reasons: list[str], now: datetime | None = None
) -> tuple[jobs.Job, bool]:
    """Queue a retrain job (or find the one of ``key``); the loop takes it on its next pass.

    The trigger's trips and a request from the dashboard both come here.
    """
    policy = project.spec.autopilot
    if policy is None:
        raise ConfigError(
            "The spec has no 'autopilot' section, so there is no retrain to start.",
            key="autopilot",
        )
    return jobs.enqueue(
        project.store.db,
        project=project.name,
        kind=RETRAIN,
        key=key,
        payload={"as_of": as_of.isoformat(), "trips": reasons},
        max_attempts=policy.max_attempts,
        now=now,
    )


def live_window(
    project: Project, *, now: datetime, version: int, length: pd.Timedelta
) -> tuple[WindowResult | None, Traffic]:
    """The last ``length`` of ``version``'s served traffic at ``now``, assessed.

    The rows are those served (by the server's clock) in ``[now - length, now]``
    with the labels received by ``now``; None when there are none.
    """
    model = project.load_model(version)
    logged = traffic_as_of(project.store, project=project.name, as_of=now, rule=LabelRule.of(model))
    start = pd.Timestamp(now) - length
    keep = (logged.meta["model_version"] == str(version)) & (
        pd.to_datetime(logged.meta["time"], utc=True) >= start
    )
    rows = logged.take(keep.to_numpy())
    if not len(rows):
        return None, rows
    window = Window(
        start=start.to_pydatetime(), end=now, positions=np.arange(len(rows), dtype=np.intp)
    )
    result = assess_window(
        rows,
        window,
        model=model,
        ref=project.load_reference(version),
        # The triggers read no segment: a bootstrap per carrier each look would cost
        # more than the rest of the look.
        options=WindowOptions.from_spec(project.spec, segments=False),
    )
    return result, rows


class Autopilot:
    """The closed loop of one project. ``owner`` names this process in the job leases."""

    def __init__(
        self, project: Project, *, owner: str | None = None, lease_s: float = 900.0
    ) -> None:
        if project.spec.autopilot is None:
            raise ConfigError(
                "The spec has no 'autopilot' section: nothing tells the loop when to retrain. "
                "See docs/autopilot.md for one to start from.",
                key="autopilot",
            )
        self.project = project
        self.policy: AutopilotPolicy = project.spec.autopilot
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        self.triggers = build_triggers(project.spec, self.policy)

    # The loop ----------------------------------------------------------------------
    def run(self, *, stop: threading.Event, interval: float | None = None) -> None:
        """``tick`` every ``interval`` seconds (``check_every``) until ``stop`` is set."""
        wait = self.policy.check_every.total_seconds() if interval is None else interval
        while not stop.is_set():
            try:
                for line in self.tick():
                    log.info("%s", line)
            except SetpointError as exc:
                # A store that is briefly unreachable must not end the loop.
                log.error("autopilot: %s", exc)
            except Exception:
                # A bug must not end a long-lived loop either: the job it hit keeps its
                # lease until it runs out, is retried, and is given up at max_attempts.
                log.exception("autopilot: unexpected error")
            stop.wait(wait)

    def tick(self, *, now: datetime | None = None) -> list[str]:
        """One pass; returns what it did, in words."""
        now = now or utcnow()
        db, name = self.project.store.db, self.project.name
        job = self._claim(now)
        if job is None and jobs.active_job(db, project=name, kind=RETRAIN) is None:
            queued = self._look_and_queue(now)
            if queued is None:
                return []
            job = self._claim(now)
        if job is None:
            return []
        try:
            return self._step(job, now)
        except SetpointError as exc:
            failed = jobs.fail(db, job, owner=self.owner, error=str(exc), now=now)
            return [f"job {job.id} failed ({failed.status}): {exc}"]

    def _claim(self, now: datetime) -> jobs.Job | None:
        # A retrain that killed its process waits a minute, then two, four... before
        # it is tried again, and is given up at max_attempts.
        return jobs.claim(
            self.project.store.db,
            project=self.project.name,
            owner=self.owner,
            lease_s=self.lease_s,
            now=now,
            crash_backoff_s=60.0,
        )

    def _look_and_queue(self, now: datetime) -> jobs.Job | None:
        look = self.look(now)
        trips = [trip for t in self.triggers if (trip := t.check(look)) is not None]
        if not trips:
            return None
        blocked = Guard(self.policy, self.retrain_history()).blocked(now)
        if blocked is not None:
            log.info("autopilot: %s held back: %s", [t.trigger for t in trips], blocked)
            return None
        job, created = queue_retrain(
            self.project,
            key=f"retrain:{now:%Y%m%dT%H%M%S}",
            as_of=now,
            reasons=[t.reason for t in trips],
            now=now,
        )
        return job if created else None

    # What the loop sees -------------------------------------------------------------
    def look(self, now: datetime) -> Look:
        """The champion's latest window of traffic, against its reference, at ``now``."""
        project, spec = self.project, self.project.spec
        champion = alias_ops.get_alias(project.store.db, project=project.name, alias="champion")
        last = self._last_retrain(champion)
        if champion is None:
            return Look(now=now, metric=spec.metric, higher_is_better=spec.higher_is_better)
        version = get_version(project.store, project=project.name, version=champion)
        window, rows = live_window(
            project, now=now, version=champion, length=pd.Timedelta(self.policy.window)
        )
        self._note_skipped(champion, window)
        labels_since = 0
        if len(rows) and last is not None:
            labels_since = int((rows.meta["label_time"] > pd.Timestamp(last)).sum())
        return Look.of_window(
            window,
            now=now,
            metric=spec.metric,
            higher_is_better=spec.higher_is_better,
            importances=project.load_model(champion).feature_importance(),
            expected=version.test_metric(spec.metric),
            last_retrain=last,
            labels_since=labels_since,
        )

    def _note_skipped(self, version: int, window: WindowResult | None) -> None:
        """An event when the look left out stored labels, unless the last one said the same."""
        if window is None or not window.labels_skipped:
            return
        db, name = self.project.store.db, self.project.name
        payload: dict[str, Any] = {
            "source": "autopilot",
            "version": version,
            "count": window.labels_skipped,
            "reasons": list(window.labels_skipped_reasons),
        }
        # A pass every check_every would otherwise repeat one bad row's event for ever.
        last = list_events(db, project=name, kind=LABELS_SKIPPED_EVENT, limit=1)
        if last and last[0].payload == payload:
            return
        log.warning(
            "autopilot: %d stored label(s) skipped: %s", window.labels_skipped, payload["reasons"]
        )
        with db.write() as conn:
            self._note(conn, LABELS_SKIPPED_EVENT, payload)

    def retrain_history(self) -> list[RetrainRecord]:
        found = jobs.list_jobs(self.project.store.db, project=self.project.name, limit=200)
        return [
            RetrainRecord(job.created_at, float(job.state.get("train_seconds", 0.0)))
            for job in found
            if job.kind == RETRAIN
        ]

    def _last_retrain(self, champion: int | None) -> datetime | None:
        history = self.retrain_history()
        if history:
            return max(record.started_at for record in history)
        if champion is None:
            return None
        return get_version(
            self.project.store, project=self.project.name, version=champion
        ).created_at

    # The job's steps ----------------------------------------------------------------
    def _move(
        self, conn: Connection, alias: str, version: int | None, kind: AliasKind, reason: str
    ) -> None:
        alias_ops.set_alias(
            conn,
            project=self.project.name,
            alias=alias,
            version=version,
            kind=kind,
            reason=reason,
            actor=_ACTOR,
        )

    def _note(self, conn: Connection, kind: str, payload: dict[str, Any]) -> None:
        record_event(conn, project=self.project.name, kind=kind, payload=payload)

    def _step(self, job: jobs.Job, now: datetime) -> list[str]:
        said: list[str] = []
        while True:
            if job.stage is None:
                job = self._train(job, now, said)
            elif job.stage == "gated":
                job = self._start_shadow(job, now, said)
            elif job.stage in ("shadow", "watch"):
                job = self._roll(job, now, said)
            else:
                raise SetpointError(
                    f"Job {job.id} is at an unknown stage {job.stage!r}.", job=job.id
                )
            if job.status != "running":
                return said

    def _train(self, job: jobs.Job, now: datetime, said: list[str]) -> jobs.Job:
        project, spec = self.project, self.project.spec
        db = project.store.db
        as_of = datetime.fromisoformat(job.payload["as_of"])
        champion = alias_ops.get_alias(db, project=project.name, alias="champion")
        if champion is None:
            raise SetpointError("No champion to retrain: train and promote a first model.")
        old = project.load_model(champion)
        data = training_set(
            history(
                project.store,
                project=project.name,
                target=spec.target,
                timestamp=spec.timestamp,
                entity=spec.entity,
                as_of=as_of,
                rule=LabelRule.of(old),
            ),
            as_of=as_of,
            timestamp=spec.timestamp or "",
            label_time=LABEL_TIME,
            target=spec.target,
            policy=self.policy.data,
        )
        outcome = project.retrain(
            data,
            job=job.id,
            origin={
                "as_of": as_of.isoformat(),
                "trips": job.payload.get("trips", []),
                "data": self.policy.data.model_dump(mode="json"),
                "holdout_from": data.holdout_from.isoformat(),
            },
            numeric=list(old.preprocessor.numeric),
            categorical=list(old.preprocessor.categorical),
            schema_version=get_version(
                project.store, project=project.name, version=champion
            ).lineage.get("schema_version"),
        )
        decision, version = outcome.decision, outcome.version.version
        with db.write() as conn:
            record_gate_decision(conn, project=project.name, decision=decision)
            state = {
                "version": version,
                "champion": champion,
                "train_seconds": round(outcome.seconds, 3),
                "gate": {"passed": decision.passed, "reasons": decision.reasons},
            }
            self._note(conn, "autopilot_retrained", state)
            job = jobs.advance(db, job, owner=self.owner, stage="gated", state=state, conn=conn)
        verdict = "passed" if decision.passed else "rejected"
        said.append(f"retrained {project.name}@{version}: gate {verdict}")
        if not decision.passed:
            return jobs.complete(db, job, owner=self.owner, state={"outcome": "rejected"}, now=now)
        return job

    def _start_shadow(self, job: jobs.Job, now: datetime, said: list[str]) -> jobs.Job:
        db, name = self.project.store.db, self.project.name
        version = int(job.state["version"])
        with db.write() as conn:
            self._move(conn, "shadow", version, AliasKind.SHADOW, "autopilot: gate passed")
            job = jobs.postpone(
                db,
                job,
                owner=self.owner,
                until=now,
                stage="shadow",
                state={"shadow_since": now.isoformat()},
                conn=conn,
            )
        said.append(f"{name}@{version} is in shadow")
        return job

    def _rollout(self, job: jobs.Job) -> Rollout:
        stage: Stage = "shadow" if job.stage == "shadow" else "watch"
        return Rollout(
            stage=stage,
            challenger=int(job.state["version"]),
            champion=int(job.state["champion"]),
            since=datetime.fromisoformat(job.state[f"{stage}_since"]),
        )

    def _evidence(self, rollout: Rollout, now: datetime) -> Evidence:
        """Requests both versions scored since the stage began; the new one's lead on them."""
        spec, shadow = self.project.spec, rollout.stage == "shadow"
        new, old = rollout.challenger, rollout.champion
        model = self.project.load_model(new)
        logged = traffic_as_of(
            self.project.store,
            project=self.project.name,
            as_of=now,
            roles=_ROLES,
            rule=LabelRule.of(model),
        )
        meta = logged.meta[
            pd.to_datetime(logged.meta["time"], utc=True) >= pd.Timestamp(rollout.since)
        ]
        # In shadow the champion answers and the challenger shadows; under watch, the reverse.
        answered = meta[meta["model_version"] == str(old if shadow else new)]
        other = meta[
            (meta["role"] == "shadow") & (meta["model_version"] == str(new if shadow else old))
        ]
        key = ["request_id", "index"]
        both = answered.merge(other[[*key, "score"]], on=key, suffixes=("", "_other"))
        labelled = both[both["label"].notna()]
        minimum = self.policy.shadow.min_labels if shadow else self.policy.watch.min_labels
        if len(labelled) < minimum or labelled["label"].nunique() < 2:
            return Evidence(requests=len(both))
        y = model.encode_labels(labelled["label"])
        a = labelled["score"].to_numpy(dtype=np.float64)
        b = labelled["score_other"].to_numpy(dtype=np.float64)
        old_scores, new_scores = (a, b) if shadow else (b, a)
        compared = compare_live(y, old_scores, new_scores, metric=spec.metric)
        return Evidence(requests=len(both), compared=compared)

    def _roll(self, job: jobs.Job, now: datetime, said: list[str]) -> jobs.Job:
        db, name = self.project.store.db, self.project.name
        rollout = self._rollout(job)
        evidence = self._evidence(rollout, now)
        action = decide(rollout, now=now, evidence=evidence, policy=self.policy)
        version, previous, compared = rollout.challenger, rollout.champion, evidence.compared
        numbers = {} if compared is None else compared.to_dict()
        if action == "wait":
            return jobs.postpone(
                db, job, owner=self.owner, until=now + self.policy.check_every, now=now
            )
        with db.write() as conn:
            if action == "reject":
                self._move(conn, "shadow", None, AliasKind.CLEAR, "autopilot: shadow regressed")
                self._note(conn, "autopilot_shadow_rejected", {"version": version, **numbers})
                lead = "" if compared is None else f": lead {compared.delta:+.4f}"
                said.append(f"{name}@{version} rejected after shadow{lead}")
                state: dict[str, Any] = {"outcome": "shadow_rejected"}
                return jobs.complete(db, job, owner=self.owner, state=state, now=now, conn=conn)
            if action == "promote":
                reason = f"autopilot: gate passed, {evidence.requests} requests in shadow"
                if compared is not None:
                    reason += f", lead {compared.delta:+.4f} on {compared.n} labels"
                self._move(conn, "champion", version, AliasKind.PROMOTE, reason)
                # The old champion keeps scoring in shadow, so the watch compares like with like.
                self._move(conn, "shadow", previous, AliasKind.SHADOW, "autopilot: watch")
                self._note(
                    conn,
                    "autopilot_promoted",
                    {"version": version, "previous": previous, "requests": evidence.requests},
                )
                said.append(f"{name}@{version} promoted to champion")
                return jobs.postpone(
                    db,
                    job,
                    owner=self.owner,
                    until=now + self.policy.check_every,
                    stage="watch",
                    state={"watch_since": rollout.promoted(now=now).since.isoformat()},
                    now=now,
                    conn=conn,
                )
            self._move(conn, "shadow", None, AliasKind.CLEAR, "autopilot: watch over")
            if action == "rollback" and compared is not None:
                why = (
                    f"autopilot watch: {name}@{version} trails @{previous} by "
                    f"{compared.delta:+.4f} (CI [{compared.low:+.4f}, {compared.high:+.4f}]) "
                    f"on {compared.n} labels"
                )
                # The one rollback path; a champion someone moved since is left alone.
                self.project.roll_back(conn, reason=why, actor=_ACTOR, only_from=version)
                self._note(
                    conn, "autopilot_rolled_back", {"version": version, "to": previous, **numbers}
                )
                said.append(f"{name}@{version} rolled back to @{previous}")
                state = {"outcome": "rolled_back", **numbers}
                return jobs.complete(db, job, owner=self.owner, state=state, now=now, conn=conn)
            outcome = {"outcome": "promoted", **numbers}
            self._note(conn, "autopilot_watch_passed", {"version": version, **outcome})
            said.append(f"{name}@{version} kept after its watch")
            return jobs.complete(db, job, owner=self.owner, state=outcome, now=now, conn=conn)
