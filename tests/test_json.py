"""``revive`` undoes ``jsonable`` by the annotations, and refuses JSON of another shape."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pytest

from setpoint._json import jsonable, revive


@dataclass(frozen=True)
class Inner:
    value: float | None
    kind: Literal["a", "b"]
    label: str | int | bool = "x"


@dataclass(frozen=True)
class Outer:
    when: datetime
    score: float
    inners: tuple[Inner, ...]
    by_name: dict[str, Inner]
    pairs: tuple[tuple[str, float], ...]
    extra: Any = None
    tags: list[str] = field(default_factory=list)


def test_a_nested_result_survives_a_trip_through_json_text() -> None:
    original = Outer(
        when=datetime(2013, 8, 1, 6, 30, tzinfo=UTC),
        score=float("nan"),
        inners=(Inner(0.25, "a", 7), Inner(None, "b", True)),
        by_name={"x": Inner(np.float64(1.5).item(), "a")},
        pairs=(("temp", 0.5), ("wind", 0.125)),
        extra={"free": [1, "form"]},
        tags=["t"],
    )
    text = json.dumps(jsonable(asdict(original)), allow_nan=False)
    back = revive(Outer, json.loads(text))
    assert math.isnan(back.score)
    assert back.when == original.when
    assert back.inners == original.inners
    assert back.by_name == original.by_name
    assert back.pairs == original.pairs
    assert back.extra == {"free": [1, "form"]}
    assert back.tags == ["t"]


def test_unknown_keys_are_ignored_and_missing_ones_take_the_default() -> None:
    got = revive(Inner, {"value": 1.0, "kind": "a", "later_field": 3})
    assert got == Inner(1.0, "a", "x")


@pytest.mark.parametrize(
    ("kind", "value", "error"),
    [
        (Inner, [1, 2], TypeError),  # a list where an object is expected
        (Inner, {"kind": "a"}, TypeError),  # a required field absent
        (Outer, {"when": "not a time", "score": 1}, ValueError),
        (tuple[str, float], ["a", 1.0, "extra"], ValueError),
    ],
)
def test_json_of_another_shape_is_refused(kind: Any, value: Any, error: type) -> None:
    with pytest.raises(error):
        revive(kind, value)
