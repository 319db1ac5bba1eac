"""Turn numpy and pandas scalars into plain JSON values, NaN and inf into null, and back.

``jsonable`` writes results as JSON; ``revive`` rebuilds the typed dataclasses
from that JSON by their annotations, so a result stored in the metadata store
reads back as the object that was computed.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np

__all__ = ["dumps", "jsonable", "loads", "revive"]

try:  # orjson comes with the ``serve`` extra; several times faster on logged predictions
    import orjson

    def dumps(value: Any) -> bytes:
        """Compact JSON of ``value``; NaN and inf as null, numpy values as numbers."""
        try:
            return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            return orjson.dumps(jsonable(value))

    def loads(data: bytes | str) -> Any:
        """The value of JSON text."""
        return orjson.loads(data)

except ImportError:  # pragma: no cover - exercised only without the extra
    import json

    def dumps(value: Any) -> bytes:
        """Compact JSON of ``value``; NaN and inf as null, numpy values as numbers."""
        try:
            return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError):
            return json.dumps(jsonable(value), separators=(",", ":")).encode()

    def loads(data: bytes | str) -> Any:
        """The value of JSON text."""
        return json.loads(data)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value``.

    >>> jsonable({"a": np.float64(0.5), "b": [np.int64(2), float("nan")], "c": (1, "x")})
    {'a': 0.5, 'b': [2, None], 'c': [1, 'x']}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str):
        return value
    if value is getattr(np, "nan", None):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def revive(kind: Any, value: Any) -> Any:
    """``value``, the JSON that ``jsonable`` made of a ``kind``, as a ``kind`` again.

    Dataclasses are rebuilt field by field (keys that are no field are ignored,
    absent ones take the field's default), tuples and dicts element by element,
    datetimes from ISO text; a null where a float is expected is NaN, as
    ``jsonable`` wrote NaN as null. Raises ``TypeError`` or ``ValueError`` for
    JSON that does not fit ``kind``.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Point:
    ...     x: float
    ...     tags: tuple[str, ...] = ()
    >>> revive(Point, jsonable(dataclasses.asdict(Point(float("nan"), ("a",)))))
    Point(x=nan, tags=('a',))
    """
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if kind is Any or origin is typing.Literal:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        # one type besides None is rebuilt; a union of JSON scalars is its own value
        return revive(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, Mapping):
            raise TypeError(f"{kind.__name__} is read from an object, not {value!r:.80}")
        hints = _hints(kind)
        given = {
            f.name: revive(hints[f.name], value[f.name])
            for f in dataclasses.fields(kind)
            if f.init and f.name in value
        }
        return kind(**given)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(revive(args[0], v) for v in value)
        return tuple(revive(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [revive(args[0], v) for v in value]
    if origin is dict:
        return {k: revive(args[1], v) for k, v in value.items()}
    if kind is float:
        return math.nan if value is None else float(value)
    if kind is datetime:
        return datetime.fromisoformat(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    return value
