"""The one join of logged predictions to their feedback (``traffic/frames.py::join_feedback``).

The monitor and every retrain read labels through it, so what it promises is
pinned here on hand-made rows: which key labels which prediction, and that a
label counts only from the moment it was received.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from setpoint.registry.feedback import Feedback
from setpoint.traffic.frames import Traffic, join_feedback

T0 = datetime(2013, 8, 1, 12, tzinfo=UTC)


def _traffic() -> Traffic:
    """Five predictions: a batch of three (r1), one alone (r2), one more of entity e1 (r3)."""
    meta = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r1", "r2", "r3"],
            "index": np.array([0, 1, 2, 0, 0], dtype=np.int64),
            "entity_id": ["e1", "e2", None, "e3", "e1"],
            "time": pd.to_datetime([T0] * 5, utc=True),
            "score": [0.1, 0.2, 0.3, 0.4, 0.5],
            "label": pd.Series([None] * 5, dtype=object),
            "label_time": pd.Series(pd.NaT, index=range(5), dtype="datetime64[us, UTC]"),
        }
    )
    return Traffic(meta=meta, inputs=pd.DataFrame({"x": range(5)}))


def _item(
    label: Any,
    *,
    received: timedelta,
    request_id: str | None = None,
    index: int | None = None,
    entity_id: str | None = None,
) -> Feedback:
    key = f"req:{request_id}:{index or 0}" if request_id else f"ent:{entity_id}"
    return Feedback(
        id=0,
        project="p",
        key=key,
        request_id=request_id,
        index=index,
        entity_id=entity_id,
        label=label,
        event_time=T0,
        received_at=T0 + received,
    )


def _labels(traffic: Traffic) -> list[Any]:
    return [None if pd.isna(v) else v for v in traffic.meta["label"]]


def test_a_request_key_labels_one_prediction_and_an_entity_key_all_of_its_own() -> None:
    feedback = [
        _item(True, received=timedelta(hours=1), request_id="r1", index=1),
        _item(False, received=timedelta(hours=2), request_id="r2"),  # index None means 0
        _item(True, received=timedelta(hours=3), entity_id="e1"),
    ]
    joined = join_feedback(_traffic(), feedback)
    assert _labels(joined) == [True, True, None, False, True]
    times = joined.meta["label_time"]
    assert times[1] == pd.Timestamp(T0 + timedelta(hours=1))
    assert times[3] == pd.Timestamp(T0 + timedelta(hours=2))
    assert times[0] == times[4] == pd.Timestamp(T0 + timedelta(hours=3))
    assert pd.isna(times[2])
    assert str(times.dt.tz) == "UTC"
    # The rest of the rows is as it was, inputs included.
    assert joined.meta["score"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert joined.inputs["x"].tolist() == [0, 1, 2, 3, 4]


def test_a_key_by_request_wins_over_one_by_entity() -> None:
    feedback = [
        _item(False, received=timedelta(hours=1), request_id="r1", index=0),
        _item(True, received=timedelta(hours=2), entity_id="e1"),
    ]
    joined = join_feedback(_traffic(), feedback)
    # r1/0 has its own label; r3, of the same entity, takes the entity's.
    assert _labels(joined)[0] is False
    assert _labels(joined)[4] is True
    assert joined.meta["label_time"][0] == pd.Timestamp(T0 + timedelta(hours=1))


def test_a_label_counts_from_when_it_was_received() -> None:
    feedback = [
        _item(True, received=timedelta(hours=1), request_id="r1", index=2),
        _item(False, received=timedelta(hours=2), request_id="r2"),
        _item(True, received=timedelta(hours=3), entity_id="e2"),
    ]
    at = T0 + timedelta(hours=2)
    joined = join_feedback(_traffic(), feedback, as_of=at)
    # Received exactly at as_of counts; an hour later does not.
    assert _labels(joined) == [None, None, True, False, None]
    assert _labels(join_feedback(_traffic(), feedback)) == [None, True, True, False, None]
    assert _labels(join_feedback(_traffic(), feedback, as_of=T0)) == [None] * 5


def test_the_traffic_it_is_given_is_left_alone() -> None:
    traffic = _traffic()
    join_feedback(traffic, [_item(True, received=timedelta(0), request_id="r2")])
    assert _labels(traffic) == [None] * 5


def test_feedback_in_any_order_and_traffic_with_any_index() -> None:
    traffic = _traffic()
    # Rows taken out of a larger frame keep their index: the labels follow the rows.
    traffic = Traffic(meta=traffic.meta.set_axis(range(10, 15)), inputs=traffic.inputs)
    feedback = [
        _item(2, received=timedelta(hours=3), request_id="r1", index=0),
        _item(1, received=timedelta(hours=1), request_id="r2"),  # received first, listed last
        _item(0, received=timedelta(hours=2), request_id="r3"),
    ]
    joined = join_feedback(traffic, feedback, as_of=T0 + timedelta(hours=2))
    assert _labels(joined) == [None, None, None, 1, 0]
    # Labels are kept as given: integer classes stay integers, missing ones None.
    assert joined.meta["label"].dtype == object
    assert joined.meta["label"].tolist() == [None, None, None, 1, 0]
    assert type(joined.meta["label"][13]) is int
    assert joined.meta["label_time"][14] == pd.Timestamp(T0 + timedelta(hours=2))
