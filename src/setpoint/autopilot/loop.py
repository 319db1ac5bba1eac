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
import time
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from setpoint.autopilot.retrain import Comparison, compare_live, judge, retrain, training_set
from setpoint.autopilot.triggers import DriftTrigger, Guard, Look, RetrainRecord, build_triggers
from setpoint.config.policy import AutopilotPolicy
from setpoint.errors import ConfigError, SetpointError
from setpoint.project import LABEL_COLUMN, PREDICTION_COLUMN, Project
from setpoint.registry import aliases as alias_ops
from setpoint.registry import jobs
from setpoint.registry.events import record_event
from setpoint.registry.gate import record_gate_decision
from setpoint.registry.models import get_version, list_versions
from setpoint.settings import get_settings
from setpoint.stats.cbpe import estimate_performance
from setpoint.store.tables import utcnow
from setpoint.traffic import history as live
from setpoint.traffic.frames import Traffic
from setpoint.train.metrics import metric_function

__all__ = ["RETRAIN", "Autopilot"]

log = logging.getLogger("setpoint.autopilot")
RETRAIN = "retrain"
_ACTOR = "autopilot"


_ROLE, _VERSION, _SCORE, _REQUEST, _INDEX, _LOGGED, _LABEL_TIME = (
    "__role__",
    "__version__",
    "__score__",
    "__request__",
    "__index__",
    "__logged__",
    live.LABEL_TIME,
)


def _flat(traffic: Traffic, target: str) -> pd.DataFrame:
    """The inputs, ``target`` set to the labels, and the log's columns under private names."""
    meta = traffic.meta
    frame = traffic.inputs.copy()
    frame[_ROLE] = meta["role"].to_numpy()
    frame[_VERSION] = pd.to_numeric(meta["model_version"], errors="coerce").to_numpy()
    frame[_SCORE] = meta["score"].to_numpy()
    frame[_REQUEST] = meta["request_id"].to_numpy()
    frame[_INDEX] = meta["index"].astype(int).to_numpy()
    frame[_LOGGED] = pd.to_datetime(meta["time"], utc=True).to_numpy()
    frame[target] = meta["label"].to_numpy(dtype=object)
    frame[_LABEL_TIME] = meta["label_time"].to_numpy()
    return frame.reset_index(drop=True)


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
        job, created = jobs.enqueue(
            self.project.store.db,
            project=self.project.name,
            kind=RETRAIN,
            key=f"retrain:{now:%Y%m%dT%H%M%S}",
            payload={"as_of": now.isoformat(), "trips": [t.reason for t in trips]},
            max_attempts=self.policy.max_attempts,
            now=now,
        )
        return job if created else None

    # What the loop sees -------------------------------------------------------------
    def look(self, now: datetime) -> Look:
        """The champion's latest window of traffic, against its reference, at ``now``."""
        project, spec = self.project, self.project.spec
        champion = alias_ops.get_alias(project.store.db, project=project.name, alias="champion")
        last = self._last_retrain(champion)
        base = Look(now=now, metric=spec.metric, higher_is_better=spec.higher_is_better)
        if champion is None:
            return base
        logged = live.traffic_as_of(project.store, project=project.name, as_of=now)
        since = pd.Timestamp(now - self.policy.window)
        keep = (logged.meta["model_version"] == str(champion)) & (
            pd.to_datetime(logged.meta["time"], utc=True) >= since
        )
        served = _flat(logged.take(keep.to_numpy()), spec.target)
        model = project.load_model(champion)
        version = get_version(project.store, project=project.name, version=champion)
        expected = version.metrics.get("slices", {}).get("test", {}).get(spec.metric)
        labels_since = 0
        if len(served) and last is not None:
            labels_since = int((served[_LABEL_TIME] > pd.Timestamp(last)).sum())
        look = Look(
            now=now,
            metric=spec.metric,
            higher_is_better=spec.higher_is_better,
            expected=expected,
            last_retrain=last,
            labels_since=labels_since,
        )
        if not len(served):
            return look
        scores = served[_SCORE].to_numpy(dtype=np.float64)
        drift = realized = estimated = None
        labelled = served[spec.target].notna().to_numpy()
        for trigger in self.triggers:
            if isinstance(trigger, DriftTrigger):
                from setpoint.monitor.model_reference import load_reference

                ref = load_reference(project, champion)
                current = served.copy()
                current[PREDICTION_COLUMN] = scores
                current[LABEL_COLUMN] = (scores >= (ref.threshold or 0.5)).astype(int)
                drift = trigger.report(
                    ref.reference, current, importances=model.feature_importance()
                )
            if getattr(trigger, "needs_estimate", False) and np.isfinite(scores).all():
                found = estimate_performance(
                    scores, threshold=model.threshold_value, metrics=[spec.metric]
                )
                estimated = found.metrics[spec.metric].value
        y = served[spec.target][labelled]
        if labelled.any() and y.nunique() > 1:
            realized = metric_function(spec.metric)(model.encode_labels(y), scores[labelled])
        return Look(
            now=now,
            metric=spec.metric,
            higher_is_better=spec.higher_is_better,
            drift=drift,
            realized=realized,
            labelled=int(labelled.sum()),
            estimated=estimated,
            expected=expected,
            last_retrain=last,
            labels_since=labels_since,
        )

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
    def _move(self, conn: Connection, alias: str, version: int | None, reason: str) -> None:
        alias_ops.set_alias(
            conn,
            project=self.project.name,
            alias=alias,
            version=version,
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
            elif job.stage == "shadow":
                job = self._end_shadow(job, now, said)
            elif job.stage == "watch":
                job = self._watch(job, now, said)
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
        numeric, categorical = list(old.preprocessor.numeric), list(old.preprocessor.categorical)
        data = training_set(
            live.history(
                project.store,
                project=project.name,
                target=spec.target,
                timestamp=spec.timestamp,
                entity=spec.entity,
                as_of=as_of,
            ),
            as_of=as_of,
            timestamp=spec.timestamp or "",
            label_time=_LABEL_TIME,
            target=spec.target,
            policy=self.policy.data,
        )
        clock = time.perf_counter()
        result = retrain(
            spec,
            data,
            numeric=numeric,
            categorical=categorical,
            num_threads=get_settings().num_threads,
        )
        seconds = time.perf_counter() - clock
        # A retried job finds the model its first attempt registered.
        registered = next(
            (
                v
                for v in list_versions(project.store, project=project.name)
                if v.lineage.get("autopilot", {}).get("job") == job.id
            ),
            None,
        )
        if registered is None:
            lineage = {
                "dataset": {"name": "events+traffic", "rows": len(data.frame)},
                # Served requests are validated against the schema the features came from.
                "schema_version": get_version(
                    project.store, project=project.name, version=champion
                ).lineage.get("schema_version"),
                "autopilot": {
                    "job": job.id,
                    "as_of": as_of.isoformat(),
                    "trips": job.payload.get("trips", []),
                    "data": self.policy.data.model_dump(mode="json"),
                    "holdout_from": data.holdout_from.isoformat(),
                },
                "features": {"numeric": numeric, "categorical": categorical},
                "recipe": spec.model.model_dump(mode="json"),
                "split": result.split,
                "timings": result.timings,
            }
            registered = project.register_trained(
                result, frame=data.frame, lineage=lineage, numeric=numeric, categorical=categorical
            )
        decision = judge(
            spec,
            data,
            result,
            champion=old,
            challenger_version=registered.version,
            champion_version=champion,
        )
        with db.write() as conn:
            record_gate_decision(conn, project=project.name, decision=decision)
            state = {
                "version": registered.version,
                "champion": champion,
                "train_seconds": round(seconds, 3),
                "gate": {"passed": decision.passed, "reasons": decision.reasons},
            }
            self._note(conn, "autopilot_retrained", state)
            job = jobs.advance(db, job, owner=self.owner, stage="gated", state=state, conn=conn)
        verdict = "passed" if decision.passed else "rejected"
        said.append(f"retrained {project.name}@{registered.version}: gate {verdict}")
        if not decision.passed:
            return jobs.complete(db, job, owner=self.owner, state={"outcome": "rejected"}, now=now)
        return job

    def _start_shadow(self, job: jobs.Job, now: datetime, said: list[str]) -> jobs.Job:
        db, name = self.project.store.db, self.project.name
        version = int(job.state["version"])
        with db.write() as conn:
            self._move(conn, "shadow", version, "autopilot: gate passed")
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

    def _compare(
        self, since: datetime, now: datetime, new: int, old: int, *, shadow: bool
    ) -> tuple[int, Comparison | None]:
        """Requests both versions scored since ``since``; ``new``'s lead on those labelled."""
        spec = self.project.spec
        logged = live.traffic_as_of(
            self.project.store,
            project=self.project.name,
            as_of=now,
            roles=("champion", "canary", "shadow"),
        )
        if not len(logged):
            return 0, None
        frame = _flat(logged, spec.target)
        frame = frame[frame[_LOGGED] >= pd.Timestamp(since)]
        key = [_REQUEST, _INDEX]
        served = frame[frame[_VERSION] == (old if shadow else new)]
        other = frame[(frame[_ROLE] == "shadow") & (frame[_VERSION] == (new if shadow else old))]
        both = served.merge(other[[*key, _SCORE]], on=key, suffixes=("", "_other"))
        labelled = both[both[spec.target].notna()]
        minimum = self.policy.shadow.min_labels if shadow else self.policy.watch.min_labels
        if len(labelled) < minimum or labelled[spec.target].nunique() < 2:
            return len(both), None
        model = self.project.load_model(new)
        y = model.encode_labels(labelled[spec.target])
        a = labelled[_SCORE].to_numpy(dtype=np.float64)
        b = labelled[_SCORE + "_other"].to_numpy(dtype=np.float64)
        old_scores, new_scores = (a, b) if shadow else (b, a)
        return len(both), compare_live(y, old_scores, new_scores, metric=spec.metric)

    def _end_shadow(self, job: jobs.Job, now: datetime, said: list[str]) -> jobs.Job:
        db, name, policy = self.project.store.db, self.project.name, self.policy.shadow
        version, champion = int(job.state["version"]), int(job.state["champion"])
        since = datetime.fromisoformat(job.state["shadow_since"])
        requests, compared = self._compare(since, now, version, champion, shadow=True)
        if requests < policy.requests or now - since < policy.duration:
            return jobs.postpone(
                db, job, owner=self.owner, until=now + self.policy.check_every, now=now
            )
        with db.write() as conn:
            if compared is not None and compared.regressed(policy.max_drop):
                self._move(conn, "shadow", None, "autopilot: shadow regressed")
                self._note(
                    conn, "autopilot_shadow_rejected", {"version": version, **compared.to_dict()}
                )
                said.append(f"{name}@{version} rejected after shadow: lead {compared.delta:+.4f}")
                return jobs.complete(
                    db,
                    job,
                    owner=self.owner,
                    state={"outcome": "shadow_rejected"},
                    now=now,
                    conn=conn,
                )
            reason = f"autopilot: gate passed, {requests} requests in shadow"
            if compared is not None:
                reason += f", lead {compared.delta:+.4f} on {compared.n} labels"
            self._move(conn, "champion", version, reason)
            # The old champion keeps scoring in shadow, so the watch compares like with like.
            self._move(conn, "shadow", champion, "autopilot: watch")
            self._note(
                conn,
                "autopilot_promoted",
                {"version": version, "previous": champion, "requests": requests},
            )
            job = jobs.postpone(
                db,
                job,
                owner=self.owner,
                until=now + self.policy.check_every,
                stage="watch",
                state={"watch_since": now.isoformat()},
                now=now,
                conn=conn,
            )
        said.append(f"{name}@{version} promoted to champion")
        return job

    def _watch(self, job: jobs.Job, now: datetime, said: list[str]) -> jobs.Job:
        db, name, policy = self.project.store.db, self.project.name, self.policy.watch
        version, previous = int(job.state["version"]), int(job.state["champion"])
        since = datetime.fromisoformat(job.state["watch_since"])
        _, compared = self._compare(since, now, version, previous, shadow=False)
        regressed = compared is not None and compared.regressed(policy.max_drop)
        if not regressed and now - since < policy.duration:
            return jobs.postpone(
                db, job, owner=self.owner, until=now + self.policy.check_every, now=now
            )
        with db.write() as conn:
            self._move(conn, "shadow", None, "autopilot: watch over")
            if regressed and compared is not None:
                current = alias_ops.get_alias_in(conn, project=name, alias="champion")
                if current == version:
                    why = (
                        f"rollback: autopilot watch: {name}@{version} trails @{previous} by "
                        f"{compared.delta:+.4f} (CI [{compared.low:+.4f}, {compared.high:+.4f}]) "
                        f"on {compared.n} labels"
                    )
                    self._move(conn, "champion", previous, why)
                self._note(
                    conn,
                    "autopilot_rolled_back",
                    {"version": version, "to": previous, **compared.to_dict()},
                )
                said.append(f"{name}@{version} rolled back to @{previous}")
                return jobs.complete(
                    db,
                    job,
                    owner=self.owner,
                    state={"outcome": "rolled_back", **compared.to_dict()},
                    now=now,
                    conn=conn,
                )
            outcome = (
                {"outcome": "promoted"}
                if compared is None
                else {"outcome": "promoted", **compared.to_dict()}
            )
            self._note(conn, "autopilot_watch_passed", {"version": version, **outcome})
            said.append(f"{name}@{version} kept after its watch")
            return jobs.complete(db, job, owner=self.owner, state=outcome, now=now, conn=conn)
