"""Per-segment realized performance and multivariate drift of real logged traffic.

One flights model, trained once; three weeks of its real held-out flights,
logged with the real model's scores as in test_windows.py, the third week with
temperatures +30 degrees. Weeks 1 and 2 are labelled with the flights' real
outcomes, except the busiest carrier's: its labels are made to run against the
scores (its lowest-scored flights are the late ones), so its realized metric is
the worst. The spec names a segment column that no request carries.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _support.cli import run as setpoint
from _support.logged import PER_WEEK, log_three_weeks
from monitor.test_monitor_cli import assert_user_error
from setpoint.config.loader import SPEC_FILE, dump_spec, load_spec
from setpoint.config.spec import GatePolicy, ModelRecipe, SplitSpec
from setpoint.errors import ConfigError, InvalidParameterError
from setpoint.monitor.results import SEGMENT_ABSENT, MonitorResult
from setpoint.monitor.runner import monitor_project, reference_rows
from setpoint.project import Project
from setpoint.quickstart.build import quickstart_spec
from setpoint.registry.feedback import record_feedback

MIN_ROWS = 40  # the spec's gate.min_segment_rows: a few carriers reach it in a week
ABSENT = "terminal"  # a segment column no request carries


def build(frame: pd.DataFrame, root: Path) -> tuple[Path, str]:
    """The logged project at ``root`` and the carrier whose labels were turned around."""
    root.mkdir(parents=True)
    spec = quickstart_spec().model_copy(
        update={
            "model": ModelRecipe(
                params={"n_estimators": 40, "num_leaves": 15},
                split=SplitSpec(test_fraction=0.2, valid_fraction=0.15),
            ),
            "gate": GatePolicy(min_segment_rows=MIN_ROWS),
        }
    )
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    project = Project.open(root)
    project.ingest(frame, name="events")
    project.train(dataset="events")
    project.store.db.dispose()
    # Named after training, which refuses a segment column the data lacks.
    spec = spec.model_copy(update={"segments": [*spec.segments, ABSENT]})
    (root / SPEC_FILE).write_text(dump_spec(spec), encoding="utf-8")
    project = Project.open(root)
    pool, rows = log_three_weeks(project, frame)
    labelled = pool.iloc[: 2 * PER_WEEK].assign(
        score=[r["output"]["score"] for r in rows[: 2 * PER_WEEK]]
    )
    doomed = str(labelled["carrier"].value_counts().index[0])
    late = labelled["late"].to_numpy(dtype=np.int64, copy=True)
    mine = (labelled["carrier"] == doomed).to_numpy()
    # As many late flights as it really had, but the ones the model found least likely.
    ranks = labelled["score"][mine].rank(method="first").to_numpy()
    late[mine] = (ranks <= max(1, int(late[mine].sum()))).astype(int)
    feedback = [
        {"request_id": f"w{i // PER_WEEK}-{i % PER_WEEK}", "label": int(late[i])}
        for i in range(2 * PER_WEEK)
    ]
    record_feedback(project.store.db, project="flights", items=feedback)
    project.store.db.dispose()
    return root, doomed


@pytest.fixture(scope="module")
def logged(
    flight_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    return build(flight_events, tmp_path_factory.mktemp("seg") / "flights")


@pytest.fixture(scope="module")
def weekly(logged: tuple[Path, str]) -> MonitorResult:
    project = Project.open(logged[0])
    try:
        return monitor_project(project, window="1w", clock="served", multivariate=True)
    finally:
        project.store.db.dispose()


def test_the_worse_carrier_is_the_worst_segment(
    weekly: MonitorResult, logged: tuple[Path, str]
) -> None:
    doomed = logged[1]
    assert weekly.segment_columns == ("carrier", "origin", ABSENT)
    assert weekly.min_segment_rows == MIN_ROWS
    assert weekly.higher_is_better
    for w in weekly.windows[:2]:
        assert w.realized is not None
        worst = w.worst_segments("pr_auc", higher_is_better=True)
        assert (worst[0].column, worst[0].segment) == ("carrier", doomed)
        value = worst[0].metrics["pr_auc"]
        assert value.value is not None
        assert value.low is not None
        assert value.high is not None
        assert value.low <= value.value <= value.high
        overall = w.realized.metrics["pr_auc"].value
        assert overall is not None
        assert value.value < overall
        assert worst[0].n >= MIN_ROWS
        # every labelled row is in exactly one carrier
        carriers = [s for s in w.segments if s.column == "carrier"]
        assert sum(s.n for s in carriers) == w.n_labelled
        # the spec's gate.min_segment_rows decides which are too small
        for s in carriers:
            assert (s.skipped is None) == (s.n >= MIN_ROWS), s
            if s.skipped is not None:
                assert f"min_segment_rows={MIN_ROWS}" in s.skipped
        origins = [s for s in w.segments if s.column == "origin" and s.skipped is None]
        assert origins


def test_an_absent_segment_column_is_reported_not_fatal(weekly: MonitorResult) -> None:
    for w in weekly.windows:
        absent = [s for s in w.segments if s.column == ABSENT]
        assert len(absent) == 1
        assert absent[0].skipped == SEGMENT_ABSENT
        assert absent[0].metrics == {}
    assert any(ABSENT in warning for warning in weekly.warnings)
    # no labels in week 3: nothing measured, only the absent column said
    assert [s.column for s in weekly.windows[2].segments] == [ABSENT]


def test_multivariate_drift_names_the_shifted_feature_only_in_the_shifted_week(
    weekly: MonitorResult,
) -> None:
    verdicts = [w.multivariate for w in weekly.windows]
    assert all(v is not None for v in verdicts)
    calm, shifted = [v for v in verdicts[:2] if v is not None], verdicts[2]
    assert shifted is not None
    for v in calm:
        assert not v.drifted
        assert v.auc <= v.threshold
    assert shifted.drifted
    assert shifted.auc > 0.9
    assert shifted.top_features[0][0] == "temp"
    assert shifted.n_current == PER_WEEK
    assert 0.5 <= shifted.threshold < 0.7


def test_the_reference_rows_are_the_held_out_rows_the_reference_summarises(
    logged: tuple[Path, str],
) -> None:
    project = Project.open(logged[0])
    try:
        ref = project.load_reference(1)
        rows = reference_rows(project, 1, ref)
        assert len(rows) == ref.reference.n_rows
        assert list(rows.columns) == list(ref.reference.features)
        temp = ref.reference.numeric_summary("temp")
        assert np.nanmean(rows["temp"]) == pytest.approx(temp.mean)
        # a reference that summarises other rows is refused, never matched approximately
        other = replace(ref, reference=replace(ref.reference, n_rows=ref.reference.n_rows + 1))
        with pytest.raises(ConfigError, match="cannot be rebuilt"):
            reference_rows(project, 1, other)
        with pytest.raises(InvalidParameterError, match="'multivariate' parameter"):
            monitor_project(project, window="1w", multivariate="yes")  # type: ignore[arg-type]
    finally:
        project.store.db.dispose()


def test_json_and_html_carry_segments_and_multivariate(
    logged: tuple[Path, str], tmp_path: Path
) -> None:
    root, doomed = logged
    page = tmp_path / "report.html"
    result = setpoint(
        "monitor",
        "--window",
        "1w",
        "--clock",
        "served",
        "--no-alerts",
        "--multivariate",
        "--format",
        "json",
        "--html",
        str(page),
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["segment_columns"] == ["carrier", "origin", ABSENT]
    assert payload["min_segment_rows"] == MIN_ROWS
    assert payload["multivariate"] is True
    first = payload["windows"][0]
    assert "segments" not in first["realized"]  # listed once, at the window
    mine = next(s for s in first["segments"] if s["segment"] == doomed)
    assert set(mine) == {"column", "segment", "n", "positives", "metrics", "skipped"}
    assert mine["metrics"]["pr_auc"]["low"] is not None
    multivariate = [w["multivariate"] for w in payload["windows"]]
    assert [m["drifted"] for m in multivariate] == [False, False, True]
    assert multivariate[2]["top_features"][0][0] == "temp"
    assert {"auc", "threshold", "null_aucs", "skipped"} <= set(multivariate[0])
    text = page.read_text(encoding="utf-8")
    assert "pr_auc per carrier" in text
    assert f'"{doomed}"' in text
    assert "Multivariate drift" in text
    assert "domain classifier AUC" in text


def test_table_shows_worst_segments_and_the_classifier(logged: tuple[Path, str]) -> None:
    root, doomed = logged
    result = setpoint(
        "monitor",
        "--window",
        "1w",
        "--clock",
        "served",
        "--no-alerts",
        "--segments",
        "--multivariate",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    segments = out.split("worst segments by realized pr_auc")[1].split("multivariate drift")[0]
    first_rows = [line for line in segments.splitlines() if "2024-01-0" in line]
    assert first_rows
    assert f"carrier={doomed}" in first_rows[0]
    assert f"{ABSENT}: {SEGMENT_ABSENT}" in segments
    assert "no labelled rows" in segments
    classifier = out.split("multivariate drift")[1]
    shifted = next(line for line in classifier.splitlines() if "2024-01-15" in line)
    assert "yes" in shifted
    assert "temp" in shifted
    assert f"{ABSENT}" in result.stderr  # the warning


def test_bad_segment_and_multivariate_flags_are_refused(
    logged: tuple[Path, str], tmp_path: Path
) -> None:
    root = shutil.copytree(logged[0], tmp_path / "flights")
    spec = load_spec(root / SPEC_FILE)
    (root / SPEC_FILE).write_text(
        dump_spec(spec.model_copy(update={"segments": []})), encoding="utf-8"
    )
    assert_user_error(setpoint("monitor", "--segments", cwd=root), "--segments", "segments:")
    assert_user_error(setpoint("monitor", "--multivariate=yes", cwd=root), "--multivariate")
    assert_user_error(setpoint("monitor", "--segments=3", cwd=root), "--segments")
