"""The ``autopilot`` section of ``setpoint.yaml``: durations, round trips, placed errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from setpoint.config.durations import format_duration, parse_duration
from setpoint.config.loader import dump_spec, parse_spec
from setpoint.config.policy import AutopilotPolicy, DataPolicy
from setpoint.errors import SpecError

HEAD = "project: demo\ntask: binary\ntarget: y\ntimestamp: ts\n"  # lines 1-4
SOURCE = "proj/setpoint.yaml"

FULL = (
    HEAD
    + """\
autopilot:
  check_every: 30min
  window: 6h
  triggers:
    drift: {features: 3, share: 0.5}
    realized: {max_drop: 0.05, baseline: estimated, min_labels: 200}
    estimated: {level: 0.4}
    schedule: 2w
    new_labels: 10000
  cooldown: 36h
  budget: {max_retrains: 2, period: 2w, max_train_seconds: 600}
  data: {mode: sliding, window: 90d, holdout: 7d, half_life: 90s, min_rows: 1000}
  shadow: {requests: 10, duration: 1.5h}
  watch: {duration: 3d}
"""
)


def test_a_full_section_parses_with_its_durations() -> None:
    policy = parse_spec(FULL).autopilot
    assert policy is not None
    assert policy.check_every == timedelta(minutes=30)
    assert policy.window == timedelta(hours=6)
    assert policy.cooldown == timedelta(hours=36)
    triggers = policy.triggers
    assert triggers.drift is not None
    assert (triggers.drift.features, triggers.drift.share) == (3, 0.5)
    assert triggers.realized is not None
    assert (triggers.realized.max_drop, triggers.realized.baseline) == (0.05, "estimated")
    assert triggers.realized.level is None
    assert triggers.realized.min_labels == 200
    assert triggers.estimated is not None
    assert (triggers.estimated.level, triggers.estimated.baseline) == (0.4, "test")
    assert triggers.schedule == timedelta(weeks=2)
    assert triggers.new_labels == 10_000
    assert policy.budget.period == timedelta(days=14)
    assert policy.budget.max_train_seconds == 600
    assert policy.data.window == timedelta(days=90)
    assert policy.data.holdout == timedelta(days=7)
    assert policy.data.half_life == timedelta(seconds=90)
    assert policy.shadow.duration == timedelta(minutes=90)
    assert policy.watch.duration == timedelta(days=3)


def test_no_section_means_no_autopilot() -> None:
    assert parse_spec(HEAD).autopilot is None


def test_defaults_of_a_minimal_section() -> None:
    policy = parse_spec(HEAD + "autopilot:\n  triggers: {schedule: 30d}\n").autopilot
    assert policy is not None
    assert policy.cooldown == timedelta(days=7)
    assert policy.data == DataPolicy()
    assert policy.data.mode == "sliding"
    assert policy.triggers.drift is None
    assert policy.triggers.realized is None


def test_dump_round_trips_with_durations_as_text() -> None:
    spec = parse_spec(FULL)
    text = dump_spec(spec)
    assert parse_spec(text) == spec
    written = yaml.safe_load(text)["autopilot"]
    assert written["check_every"] == "30min"
    assert written["window"] == "6h"
    assert written["cooldown"] == "36h"
    assert written["triggers"]["schedule"] == "2w"
    assert written["budget"]["period"] == "2w"
    assert written["data"]["half_life"] == "90s"
    assert written["shadow"]["duration"] == "90min"
    assert written["watch"]["duration"] == "3d"
    # 90d is the default window: only what differs from the defaults is written.
    assert "window" not in written["data"]


def test_dump_writes_a_non_default_window_as_text() -> None:
    spec = parse_spec(
        HEAD + "autopilot:\n  triggers: {schedule: 30d}\n  data: {window: 120d, holdout: 2w}\n"
    )
    written = yaml.safe_load(dump_spec(spec))["autopilot"]["data"]
    assert written == {"window": "120d", "holdout": "2w"}


@pytest.mark.parametrize(
    ("text", "seconds", "formatted"),
    [
        ("90s", 90, "90s"),
        ("30min", 1_800, "30min"),
        ("6h", 21_600, "6h"),
        ("90d", 7_776_000, "90d"),
        ("2w", 1_209_600, "2w"),
        ("14d", 1_209_600, "2w"),
        ("1.5h", 5_400, "90min"),
        (" 7 d ", 604_800, "1w"),
        ("0.5s", 0.5, "0.5s"),
    ],
)
def test_durations(text: str, seconds: float, formatted: str) -> None:
    value = parse_duration(text)
    assert value == timedelta(seconds=seconds)
    assert format_duration(value) == formatted
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["1000000.5s", "2.3333d"])
def test_every_duration_survives_format_and_parse(text: str) -> None:
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value


# --- errors ----------------------------------------------------------------------------------

TRIGGER = "  triggers: {schedule: 30d}\n"  # line 6 when it follows 'autopilot:'


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source=SOURCE)
    return info.value


@pytest.mark.parametrize(
    ("body", "line", "key", "words"),
    [
        # No trigger at all, or an empty one: the section could never fire.
        ("  cooldown: 7d\n", 5, "autopilot", "triggers: none is set"),
        ("  triggers: {}\n", 5, "autopilot", "at least one of drift, realized"),
        # Durations.
        (
            "  triggers: {schedule: 7 days}\n",
            6,
            "autopilot.triggers.schedule",
            "'7 days' is not a duration like 90s, 30min, 6h, 7d or 2w",
        ),
        (TRIGGER + "  cooldown: -1d\n", 7, "autopilot.cooldown", "'-1d' is not a duration"),
        (TRIGGER + "  cooldown: 0d\n", 7, "autopilot.cooldown", "is not a positive duration"),
        (TRIGGER + "  check_every: 30\n", 7, "autopilot.check_every", "30 is not a duration"),
        (TRIGGER + "  data: {holdout: 2 weeks}\n", 7, "autopilot.data.holdout", "not a duration"),
        # Typos.
        (TRIGGER + "  cooldwn: 1d\n", 7, "autopilot.cooldwn", "unknown key (check its spelling)"),
        ("  triggers: {schedul: 30d}\n", 6, "autopilot.triggers.schedul", "unknown key"),
        (
            "  triggers:\n    drift: {feature: 3}\n",
            7,
            "autopilot.triggers.drift.feature",
            "unknown key",
        ),
        # The holdout would swallow the sliding window.
        (
            TRIGGER + "  data: {mode: sliding, window: 7d, holdout: 7d}\n",
            5,
            "autopilot",
            "data.holdout (1w) must be shorter than data.window (1w)",
        ),
        (
            TRIGGER + "  data: {window: 10d, holdout: 2w}\n",
            5,
            "autopilot",
            "nothing would be left to train on",
        ),
        # Out of range.
        (
            "  triggers:\n    drift: {share: 1.5}\n",
            7,
            "autopilot.triggers.drift.share",
            "less than or equal to 1",
        ),
        (
            "  triggers:\n    drift: {share: 0}\n",
            7,
            "autopilot.triggers.drift.share",
            "greater than 0",
        ),
        (
            "  triggers:\n    drift: {features: 0}\n",
            7,
            "autopilot.triggers.drift.features",
            "greater than or equal to 1",
        ),
        (
            "  triggers:\n    realized: {max_drop: 0}\n",
            7,
            "autopilot.triggers.realized.max_drop",
            "greater than 0",
        ),
        (
            "  triggers:\n    realized: {max_drop: 0.1, baseline: train}\n",
            7,
            "autopilot.triggers.realized.baseline",
            "'test' or 'estimated'",
        ),
        (
            TRIGGER + "  shadow: {max_error_rate: 2}\n",
            7,
            "autopilot.shadow.max_error_rate",
            "less than or equal to 1",
        ),
        (TRIGGER + "  data: {min_rows: 10}\n", 7, "autopilot.data.min_rows", "100"),
        (TRIGGER + "  data: {mode: recent}\n", 7, "autopilot.data.mode", "'sliding'"),
        (TRIGGER + "  max_attempts: 21\n", 7, "autopilot.max_attempts", "20"),
    ],
)
def test_bad_section_names_line_key_and_problem(body: str, line: int, key: str, words: str) -> None:
    error = _error(HEAD + "autopilot:\n" + body)
    assert (error.path, error.line, error.key) == (SOURCE, line, key)
    assert str(error).startswith(f"{SOURCE}:{line}: {key}: ")
    assert words in error.detail


def test_holdout_as_long_as_the_window_is_fine_with_all_history() -> None:
    text = HEAD + "autopilot:\n" + TRIGGER + "  data: {mode: all, window: 7d, holdout: 7d}\n"
    policy = parse_spec(text).autopilot
    assert policy is not None
    assert policy.data.holdout == policy.data.window


def test_holdout_as_long_as_the_window_is_fine_in_weighted_mode() -> None:
    text = HEAD + "autopilot:\n" + TRIGGER + "  data: {mode: weighted, window: 7d, holdout: 7d}\n"
    assert parse_spec(text).autopilot is not None


@pytest.mark.parametrize("name", ["realized", "estimated"])
def test_a_metric_trigger_without_a_level_needs_the_setpoint(name: str) -> None:
    body = f"autopilot:\n  triggers:\n    {name}: {{min_labels: 100}}\n"
    error = _error(HEAD + body)
    assert error.path == SOURCE
    assert error.key.startswith("autopilot.triggers")
    assert name in str(error)
    assert "has no 'level' or 'max_drop'" in str(error)
    assert "monitoring.setpoint is not set" in str(error)
    # Any one of the three settles it.
    for fix in (
        body.replace("min_labels: 100", "level: 0.3"),
        body.replace("min_labels: 100", "max_drop: 0.1"),
        "monitoring: {setpoint: 0.3}\n" + body,
    ):
        assert parse_spec(HEAD + fix).autopilot is not None


def test_a_metric_trigger_without_a_level_is_placed_on_its_own_key() -> None:
    error = _error(HEAD + "autopilot:\n  triggers:\n    realized: {min_labels: 100}\n")
    assert (error.line, error.key) == (7, "autopilot.triggers.realized")
    assert error.detail.startswith("has no 'level' or 'max_drop'")


def test_the_policy_alone_refuses_what_the_spec_refuses() -> None:
    with pytest.raises(ValueError, match="none is set"):
        AutopilotPolicy.model_validate({})
    with pytest.raises(ValueError, match=r"must be shorter than data\.window"):
        AutopilotPolicy.model_validate(
            {"triggers": {"schedule": "1d"}, "data": {"window": "3d", "holdout": "4d"}}
        )
