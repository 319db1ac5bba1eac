"""Feedback: the true outcomes of predictions, posted after the fact.

Each item names a prediction by ``request_id`` (plus ``index`` in its batch) or
by ``entity_id`` and gives its ``label``. The item's *key* (``req:<request_id>:<index>``
or ``ent:<entity_id>``) is unique per project, which is what lets a client retry
freely: posting the same label again is a duplicate and changes nothing, while a
different label for a stored key (or for a key given earlier in the same call) is a
conflict of that item alone.

Each item is judged on its own: a bad or conflicting item is reported by its
position and the good ones are stored, so one stray item never costs a batch. With
a ``LabelRule`` (the served model's target), a label must also be one the model can
be judged on: one of its classes, or a finite number for a regression. A call is
refused whole only when it takes nothing.

A call is one transaction with one ``SELECT`` of the keys already stored and one
multi-row ``INSERT``, so a batch of a thousand items costs two round trips.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from setpoint.errors import ConflictError, InvalidRequestError
from setpoint.store.db import Database
from setpoint.store.tables import feedback, utcnow

if TYPE_CHECKING:
    from setpoint.train.tabular_model import TabularModel

__all__ = ["Feedback", "FeedbackResult", "LabelRule", "list_feedback", "record_feedback"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_ENTITY = 256
_MAX_INDEX = 2**31 - 1  # the predictions table keeps the index as a 32-bit integer
_FIELDS = frozenset({"request_id", "index", "entity_id", "label", "time"})
_SELECT_CHUNK = 5000  # keys per SELECT; well under SQLite's 32766 bound parameters
_ATTEMPTS = 3  # a concurrent writer of the same new key makes our INSERT fail; look again
_SHOWN = 5  # problems spelled out in a message; all of them are in the error's context


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """What a call did, item by item.

    ``stored`` new items and ``duplicates`` already known with that label;
    ``conflicts`` the items whose key already has another label (``record``, its
    position in the call, ``key``, ``stored`` and ``sent``), and ``rejected`` the
    invalid items (``record`` and its ``errors``, each a ``field``, ``kind`` and
    ``detail``). Neither of the last two was stored.
    """

    stored: int
    duplicates: int
    conflicts: tuple[dict[str, Any], ...] = ()
    rejected: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The answer of ``POST /v1/feedback``."""
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "conflicts": list(self.conflicts),
            "rejected": list(self.rejected),
        }


@dataclass(frozen=True, slots=True)
class LabelRule:
    """What a label of ``target`` must be for a model to be judged on it.

    ``task`` is ``binary``, ``multiclass`` or ``regression``; ``classes`` are the
    model's classes. A class label is one the model finds when it encodes labels
    (``TabularModel.encode_labels``), in a JSON form the target's values take:
    ``1.0`` is the class ``1``; a boolean target takes ``true``/``false`` and
    ``0``/``1``, and so does a binary target of classes 0 and 1 (an outcome "was it
    late?" is as often sent as a boolean); any other number target takes no boolean,
    and a text target only text. A
    regression label is any finite number, inside the training range or not:
    outcomes can legitimately exceed what the model was trained on.
    """

    target: str
    task: str
    classes: tuple[Any, ...] = ()

    @classmethod
    def of(cls, model: TabularModel) -> LabelRule:
        """The rule of ``model``'s target."""
        return cls(target=model.target, task=model.task.value, classes=tuple(model.classes))

    def json_values(self) -> list[Any] | None:
        """Every JSON value a class label may be (an ``enum``); None for a regression."""
        if self.task == "regression":
            return None
        values: list[Any] = []
        for known in self.classes:
            plain = known.item() if isinstance(known, np.generic) else known
            values.append(plain)
            if isinstance(plain, bool):
                values.append(int(plain))
            elif self._zero_one():
                values.append(bool(plain))
        return values

    def _zero_one(self) -> bool:
        """Whether the classes are the numbers 0 and 1 of a binary target."""
        if self.task != "binary":
            return False
        plain = [c.item() if isinstance(c, np.generic) else c for c in self.classes]
        numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in plain)
        return numeric and sorted(plain) == [0, 1]

    def problem(self, label: Any) -> tuple[str, str] | None:
        """``(kind, detail)`` saying why ``label`` cannot be used, or None when it can."""
        if self.task == "regression":
            if isinstance(label, bool) or not isinstance(label, numbers.Real):
                return "not_a_number", (
                    f"{self.target!r} is a regression target: expected a finite number, "
                    f"got {_shown(label)}"
                )
            if not math.isfinite(label):
                return "non_finite", f"expected a finite number for {self.target!r}, got {label}"
            return None
        try:
            zero_one = self._zero_one()
            known = any(label == c and _same_kind(label, c, zero_one) for c in self.classes)
        except (TypeError, ValueError):  # a class that does not compare with the label
            known = False
        if known:
            return None
        return "unknown_class", (
            f"{_shown(label)} is not a class of {self.target!r}: expected one of "
            f"{list(self.classes)}"
        )


def _same_kind(label: Any, known: Any, zero_one: bool) -> bool:
    # Text meets only text; a boolean class takes true/false and 0/1, and so do the
    # classes 0 and 1 of a binary target; any other number class takes no boolean: JSON
    # keeps true and 1 apart, and so does the OpenAPI document's enum.
    if isinstance(label, str) or isinstance(known, str):
        return isinstance(label, str) and isinstance(known, str)
    if isinstance(label, bool | np.bool_) and not isinstance(known, bool | np.bool_):
        return zero_one
    return True


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class Feedback:
    """One stored outcome. ``index`` is set only for a key by ``request_id``."""

    id: int
    project: str
    key: str
    request_id: str | None
    index: int | None
    entity_id: str | None
    label: Any
    event_time: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class _Item:
    position: int  # where the item was in the call, for error messages
    key: str
    request_id: str | None
    index: int | None
    entity_id: str | None
    label: Any  # as it reads back from the store: the result of a JSON round trip
    event_time: datetime


class _Problems:
    """Collects every bad field of every item, so that one answer names all of them."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def add(self, record: int | None, field: str | None, kind: str, detail: str) -> None:
        self.errors.append({"record": record, "field": field, "kind": kind, "detail": detail})

    def by_record(self) -> dict[int | None, list[dict[str, Any]]]:
        grouped: dict[int | None, list[dict[str, Any]]] = {}
        for e in self.errors:
            grouped.setdefault(e["record"], []).append(
                {"field": e["field"], "kind": e["kind"], "detail": e["detail"]}
            )
        return grouped

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        shown = "; ".join(
            f"item {e['record']}: {e['field']}: {e['kind']} ({e['detail']})"
            for e in self.errors[:_SHOWN]
        )
        more = len(self.errors) - _SHOWN
        records = {e["record"] for e in self.errors}
        raise InvalidRequestError(
            f"The feedback has {len(self.errors)} invalid field(s) in {len(records)} item(s): "
            + shown
            + (f"; and {more} more." if more > 0 else "."),
            errors=self.errors,
        )


def _bad_text(value: str) -> str | None:
    """Why the store cannot hold ``value`` (PostgreSQL refuses NUL and lone surrogates)."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def _bad_json_text(value: Any) -> str | None:
    """The first string (or object key) in ``value`` that the store cannot hold, and why."""
    if isinstance(value, str):
        return _bad_text(value)
    if isinstance(value, list):
        for element in value:
            if (why := _bad_json_text(element)) is not None:
                return why
    elif isinstance(value, dict):
        for name, element in value.items():
            if (why := _bad_json_text(name)) is not None or (
                why := _bad_json_text(element)
            ) is not None:
                return why
    return None


def _parse_time(value: Any) -> datetime | str:
    """The event time in UTC, or why ``value`` is not one. Naive times are taken as UTC."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return f"{value[:40]!r} is not an ISO 8601 date and time"
    else:
        return f"expected an ISO 8601 string, got {_kind(value)}"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:
        return f"{when.isoformat()} is out of range in UTC"


def _parse_label(position: int, item: Mapping[str, Any], problems: _Problems) -> tuple[bool, Any]:
    if "label" not in item:
        problems.add(position, "label", "missing_label", "every item needs its true label")
        return False, None
    label = item["label"]
    if label is None:
        problems.add(position, "label", "null_not_allowed", "a label of null is not an outcome")
        return False, None
    if not isinstance(label, bool | int | float | str):
        # a class label or a measured value; a list or object would not join to a prediction
        detail = f"expected a number, text or a boolean, got {_kind(label)}"
        problems.add(position, "label", "type_mismatch", detail)
        return False, None
    try:
        # the round trip makes the label what reads back from the store (tuples become lists,
        # keys become strings), so a retry compares equal to what was stored
        label = json.loads(json.dumps(label, allow_nan=False))
    except ValueError:
        problems.add(position, "label", "non_finite", "NaN and Infinity are not JSON")
        return False, None
    except TypeError as exc:
        problems.add(position, "label", "type_mismatch", f"not a JSON value: {exc}")
        return False, None
    if (why := _bad_json_text(label)) is not None:
        problems.add(position, "label", "invalid_text", f"a string of the label {why}")
        return False, None
    return True, label


def _parse_key(
    position: int, item: Mapping[str, Any], problems: _Problems
) -> tuple[str, str | None, int | None, str | None] | None:
    """``(key, request_id, index, entity_id)``, or None after recording what is wrong."""
    has_request, has_entity = "request_id" in item, "entity_id" in item
    if has_request and has_entity:
        problems.add(
            position, "entity_id", "ambiguous_key", "give request_id or entity_id, not both"
        )
        return None
    if has_entity:
        if "index" in item:
            problems.add(position, "index", "unknown_field", "index goes with request_id only")
            return None
        entity = item["entity_id"]
        if isinstance(entity, float) and entity.is_integer():
            entity = int(entity)  # JSON Schema's integer: 1545.0 is 1545
        if isinstance(entity, int) and not isinstance(entity, bool):
            entity = str(entity)  # ids like 1545 arrive as JSON numbers; the log keeps text
        if not isinstance(entity, str):
            problems.add(
                position, "entity_id", "type_mismatch", f"expected text, got {_kind(entity)}"
            )
            return None
        if not 1 <= len(entity) <= _MAX_ENTITY:
            problems.add(
                position,
                "entity_id",
                "invalid_id",
                f"must be 1 to {_MAX_ENTITY} characters, got {len(entity)}",
            )
            return None
        if (why := _bad_text(entity)) is not None:
            problems.add(position, "entity_id", "invalid_id", why)
            return None
        return f"ent:{entity}", None, None, entity
    if not has_request:
        problems.add(position, "request_id", "missing_key", "give request_id or entity_id")
        return None
    request_id = item["request_id"]
    if not isinstance(request_id, str):
        problems.add(
            position, "request_id", "type_mismatch", f"expected text, got {_kind(request_id)}"
        )
        return None
    if _REQUEST_ID.fullmatch(request_id) is None:
        problems.add(
            position,
            "request_id",
            "invalid_id",
            f"{request_id[:70]!r} is not 1 to 64 characters of A-Z a-z 0-9 . _ -",
        )
        return None
    index = item.get("index", 0)
    if isinstance(index, float) and index.is_integer():
        index = int(index)  # JSON Schema's integer: 1.0 is 1
    if isinstance(index, bool) or not isinstance(index, int):
        problems.add(position, "index", "type_mismatch", f"expected an integer, got {_kind(index)}")
        return None
    if not 0 <= index <= _MAX_INDEX:
        problems.add(position, "index", "out_of_range", f"{index} is not in [0, {_MAX_INDEX}]")
        return None
    return f"req:{request_id}:{index}", request_id, index, None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _validate(items: Any, rule: LabelRule | None) -> tuple[list[_Item], _Problems]:
    """The valid items, and every problem of the others (``problems`` never raised here)."""
    problems = _Problems()
    if not isinstance(items, list):
        problems.add(None, None, "not_a_list", f"expected a list of items, got {_kind(items)}")
        problems.raise_if_any()
    parsed: list[_Item] = []
    now = utcnow()
    for position, item in enumerate(items):
        if not isinstance(item, Mapping):
            problems.add(position, None, "not_an_object", f"expected an object, got {_kind(item)}")
            continue
        before = len(problems.errors)
        for name in sorted(set(item) - _FIELDS, key=str):
            problems.add(position, str(name), "unknown_field", f"fields are {sorted(_FIELDS)}")
        key = _parse_key(position, item, problems)
        ok, label = _parse_label(position, item, problems)
        when: datetime | str = now
        if item.get("time") is not None:
            when = _parse_time(item["time"])
            if isinstance(when, str):
                problems.add(position, "time", "invalid_time", when)
        if ok and rule is not None and (why := rule.problem(label)) is not None:
            problems.add(position, "label", *why)
            ok = False
        # an item with any bad field (an unknown one too) is refused whole, never half read
        if key is not None and ok and isinstance(when, datetime) and len(problems.errors) == before:
            parsed.append(_Item(position, *key, label, when))
    return parsed, problems


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` (one JSON number) but ``true != 1``, unlike Python's ``==``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _conflict(
    project: str, conflicts: list[dict[str, Any]], *, rejected: tuple[dict[str, Any], ...]
) -> ConflictError:
    keys = [c["key"] for c in conflicts]
    shown = ", ".join(keys[:_SHOWN]) + (
        f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    )
    invalid = f"; {len(rejected)} other item(s) were invalid" if rejected else ""
    return ConflictError(
        f"Feedback for {shown} contradicts a label already given{invalid}: nothing of this "
        "request was stored.",
        project=project,
        keys=keys,
        conflicts=conflicts,
        rejected=list(rejected),
    )


def _store(
    conn: Connection, project: str, unique: dict[str, _Item], *, now: datetime
) -> tuple[int, list[dict[str, Any]]]:
    """Insert the items whose key is new; the count, and the items that contradict the store."""
    keys = list(unique)
    stored: dict[str, Any] = {}
    for start in range(0, len(keys), _SELECT_CHUNK):
        chunk = keys[start : start + _SELECT_CHUNK]
        rows = conn.execute(
            sa.select(feedback.c.key, feedback.c.label).where(
                feedback.c.project == project, feedback.c.key.in_(chunk)
            )
        )
        stored.update((row.key, row.label) for row in rows)
    conflicts = [
        {"record": item.position, "key": key, "stored": stored[key], "sent": item.label}
        for key, item in unique.items()
        if key in stored and not _same(stored[key], item.label)
    ]
    new = [
        {
            "project": project,
            "key": key,
            "request_id": item.request_id,
            "idx": item.index,
            "entity_id": item.entity_id,
            "label": item.label,
            "event_time": item.event_time,
            "received_at": now,
        }
        for key, item in unique.items()
        if key not in stored
    ]
    if new:
        conn.execute(feedback.insert(), new)
    return len(new), conflicts


def record_feedback(
    db: Database,
    *,
    project: str,
    items: list[dict[str, Any]],
    rule: LabelRule | None = None,
) -> FeedbackResult:
    """Store the valid, new items of ``items`` in one transaction; report every other one.

    ``rule`` (the served model's target) also refuses a label the model cannot be
    judged on. An item whose key is given twice with another label is a conflict
    of the later one; the first one counts. When no item was stored or already
    known, raises ``ConflictError`` if some item contradicts a label already given
    (its ``conflicts`` and ``rejected`` context name them), else
    ``InvalidRequestError`` (its ``errors`` name each bad field of each item), as
    for ``items`` that are not a list.
    """
    parsed, problems = _validate(items, rule)
    unique: dict[str, _Item] = {}
    repeated: list[dict[str, Any]] = []
    echoes: list[_Item] = []  # a key given again with the same label: as the first one fares
    for item in parsed:
        first = unique.setdefault(item.key, item)
        if first is not item and _same(first.label, item.label):
            echoes.append(item)
        elif first is not item:
            repeated.append(
                {
                    "record": item.position,
                    "key": item.key,
                    "stored": first.label,
                    "sent": item.label,
                }
            )
    rejected = tuple(
        {"record": record, "errors": errors} for record, errors in problems.by_record().items()
    )
    attempt = 1
    while True:
        try:
            with db.write() as conn:
                inserted, clashing = (
                    _store(conn, project, unique, now=utcnow()) if unique else (0, [])
                )
        except IntegrityError:
            # a concurrent call stored one of our new keys between our SELECT and INSERT
            # (PostgreSQL; SQLite's write lock serializes whole calls); its row is committed
            # now, so the next attempt sees it as a duplicate or a conflict
            if attempt == _ATTEMPTS:
                raise ConflictError(
                    f"Feedback for project {project!r} kept colliding with concurrent writers; "
                    "nothing of this request was stored. Retry.",
                    project=project,
                ) from None
            attempt += 1
            continue
        break
    clashed = {c["key"]: c["stored"] for c in clashing}
    repeated += [
        {"record": e.position, "key": e.key, "stored": clashed[e.key], "sent": e.label}
        for e in echoes
        if e.key in clashed
    ]
    conflicts = sorted([*clashing, *repeated], key=lambda c: int(c["record"]))
    duplicates = len(parsed) - inserted - len(conflicts)
    if inserted + duplicates == 0:
        # Nothing taken: a conflict says the client's items were well formed but contradict
        # what is known; with none, every item was invalid.
        if conflicts:
            raise _conflict(project, conflicts, rejected=rejected)
        problems.raise_if_any()
    return FeedbackResult(
        stored=inserted, duplicates=duplicates, conflicts=tuple(conflicts), rejected=rejected
    )


def list_feedback(
    db: Database,
    *,
    project: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Feedback]:
    """The project's feedback with ``since <= event_time < until``, oldest event first."""
    query = sa.select(feedback).where(feedback.c.project == project)
    if since is not None:
        query = query.where(feedback.c.event_time >= since)
    if until is not None:
        query = query.where(feedback.c.event_time < until)
    with db.read() as conn:
        rows = conn.execute(query.order_by(feedback.c.event_time, feedback.c.id)).all()
    return [
        Feedback(
            id=r.id,
            project=r.project,
            key=r.key,
            request_id=r.request_id,
            index=r.idx,
            entity_id=r.entity_id,
            label=r.label,
            event_time=r.event_time,
            received_at=r.received_at,
        )
        for r in rows
    ]
