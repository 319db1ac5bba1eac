"""The rollout of a gated challenger: shadow -> promote -> watch -> keep or roll back.

One pure state machine. The live loop (``loop.py``) persists its state in the
job's row and gathers the evidence from the prediction log; the flights replay
keeps it in memory and gathers the evidence from its own arrays. Both ask
``decide`` what to do next, so the replay measures the rollout that runs in
production.

>>> from datetime import UTC, datetime, timedelta
>>> from setpoint.config.policy import AutopilotPolicy
>>> policy = AutopilotPolicy.model_validate({"triggers": {"schedule": "30d"}})
>>> start = datetime(2013, 5, 1, tzinfo=UTC)
>>> shadow = Rollout.shadow(challenger=2, champion=1, now=start)
>>> decide(shadow, now=start, evidence=Evidence(requests=0), policy=policy)
'wait'
>>> later = start + policy.shadow.duration
>>> decide(shadow, now=later, evidence=Evidence(requests=policy.shadow.requests), policy=policy)
'promote'
>>> worse = Comparison(delta=-0.05, low=-0.08, high=-0.02, n=5000)
>>> watch = shadow.promoted(now=later)
>>> decide(watch, now=later, evidence=Evidence(requests=10, compared=worse), policy=policy)
'rollback'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from setpoint.autopilot.compare import Comparison
from setpoint.config.policy import AutopilotPolicy

__all__ = ["Action", "Evidence", "Rollout", "Stage", "decide"]

Stage = Literal["shadow", "watch"]
# wait: not enough evidence yet; reject: the shadow regressed, the champion stays;
# promote: the challenger becomes champion, the old one shadows it under watch;
# rollback: it regressed under watch, the old champion comes back; keep: the watch is over.
Action = Literal["wait", "reject", "promote", "rollback", "keep"]


@dataclass(frozen=True, slots=True)
class Rollout:
    """A challenger in ``shadow`` beside the champion, or champion under ``watch``.

    ``champion`` is the version it would replace (in shadow) or replaced (under
    watch); ``since`` is when the stage began.
    """

    stage: Stage
    challenger: int
    champion: int
    since: datetime

    @classmethod
    def shadow(cls, *, challenger: int, champion: int, now: datetime) -> Rollout:
        return cls(stage="shadow", challenger=challenger, champion=champion, since=now)

    def promoted(self, *, now: datetime) -> Rollout:
        return replace(self, stage="watch", since=now)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Requests both versions scored since the stage began; the new one's lead on those labelled.

    ``compared`` is None until enough of them are labelled (``min_labels`` of the
    stage, and both classes).
    """

    requests: int
    compared: Comparison | None = None


def decide(
    rollout: Rollout, *, now: datetime, evidence: Evidence, policy: AutopilotPolicy
) -> Action:
    """What the rollout does at ``now``, given the ``evidence``."""
    compared = evidence.compared
    if rollout.stage == "shadow":
        shadow = policy.shadow
        if evidence.requests < shadow.requests or now - rollout.since < shadow.duration:
            return "wait"
        if compared is not None and compared.regressed(shadow.max_drop):
            return "reject"
        return "promote"
    if compared is not None and compared.regressed(policy.watch.max_drop):
        return "rollback"
    if now - rollout.since >= policy.watch.duration:
        return "keep"
    return "wait"
