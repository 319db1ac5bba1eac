"""How much the replayed year's verdict depends on the autopilot's policy.

``setpoint simulate`` replays April to December 2013 under one policy (the
quickstart's). This runs the same replay under several policies, on the same
starting model and the same static and weekly baselines, and prints for each:
the mean weekly PR-AUC, the share of weekly retraining's gain over the static
model it recovers, its retrains, promotions and rollbacks.

    python bench/autopilot_policies.py
    python bench/autopilot_policies.py --from 2013-06-01 --to 2013-09-01
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from setpoint.config.policy import AutopilotPolicy
from setpoint.quickstart.build import quickstart_spec
from setpoint.quickstart.flights import flight_events
from setpoint.quickstart.strategies import Replay

NEW_YORK = ZoneInfo("America/New_York")
POLICIES: dict[str, dict[str, Any]] = {
    "quickstart: realized vs estimate 0.03, cooldown 21d": {},
    "realized vs estimate 0.03, cooldown 14d": {"cooldown": "14d"},
    "realized vs estimate 0.05, cooldown 21d": {
        "triggers": {"realized": {"max_drop": 0.05, "baseline": "estimated", "min_labels": 2000}}
    },
    "realized vs test 0.05, cooldown 21d": {
        "triggers": {"realized": {"max_drop": 0.05, "min_labels": 2000}}
    },
    "drift of top 3 features, share 0.6, cooldown 21d": {
        "triggers": {"drift": {"features": 3, "share": 0.6}}
    },
    "schedule 3w (no other trigger)": {"triggers": {"schedule": "3w"}, "cooldown": "1d"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="start", default="2013-04-01")
    parser.add_argument("--to", dest="end", default="2014-01-01")
    parser.add_argument("--cache", type=Path, default=Path("bench/.work/flights"))
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=NEW_YORK)
    end = datetime.fromisoformat(args.end).replace(tzinfo=NEW_YORK)
    events = flight_events(cache=args.cache)
    base = quickstart_spec()
    roles = {base.target, base.timestamp, base.entity}
    numeric = [c for c in events.columns if c not in roles and events[c].dtype.kind in "fiub"]
    categorical = [c for c in events.columns if c not in roles and c not in numeric]
    default = base.autopilot.model_dump(mode="json") if base.autopilot else {}

    def replay(policy: dict[str, Any], strategies: tuple[str, ...]) -> Any:
        spec = base.model_copy(
            update={"autopilot": AutopilotPolicy.model_validate({**default, **policy})}
        )
        return Replay(
            spec,
            events,
            start=start,
            end=end,
            label_delay=timedelta(hours=6),
            numeric=numeric,
            categorical=categorical,
            num_threads=2,
            strategies=strategies,
        ).run()

    clock = time.perf_counter()
    baselines = replay({}, ("static", "weekly"))
    static, weekly = baselines.mean("static"), baselines.mean("weekly")
    print(f"static {static:.4f}, weekly {weekly:.4f} ({baselines.retrains['weekly']} retrains)")
    print()
    print("| policy | mean weekly pr_auc | recovered | retrains | promoted | rolled back |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, policy in POLICIES.items():
        result = replay(policy, ("autopilot",))
        mean = result.mean("autopilot")
        kinds = [event["kind"] for event in result.events]
        recovered = (mean - static) / (weekly - static)
        print(
            f"| {name} | {mean:.4f} | {recovered:.0%} | {result.retrains['autopilot']} | "
            f"{kinds.count('promote')} | {kinds.count('rollback')} |",
            flush=True,
        )
    print(f"\n{time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    main()
