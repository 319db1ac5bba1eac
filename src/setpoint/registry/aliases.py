"""Aliases (``champion``, ``challenger``, ...) and the history of who held them.

Every change of an alias carries an ``AliasKind``: what step of the lifecycle moved it.
Code that reads the history (``Project.rollback``'s walk back, the dashboard) reads
the kind, never the free-text reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from setpoint.errors import InvalidParameterError, NotFoundError
from setpoint.registry.events import record_event
from setpoint.store.db import Database
from setpoint.store.tables import alias_history, aliases, model_versions, utcnow

__all__ = [
    "AliasChange",
    "AliasKind",
    "alias_history_of",
    "get_alias",
    "get_alias_in",
    "kind_by_hand",
    "list_aliases",
    "set_alias",
]


class AliasKind(StrEnum):
    """What moved an alias. Each change has exactly one kind; ``set_alias`` checks the pair.

    ``PROMOTE``
        ``champion`` given to a version by promotion: the gate passed, or it was forced
        past a failed gate (the reason and the gate decision record which).
    ``ROLLBACK``
        ``champion`` given back to a version that held it before (``Project.rollback``,
        the autopilot's watch). The walk back of a later rollback skips what this undid.
    ``CHALLENGER``
        ``challenger`` pointed at a version that the gate judged and did not pass.
    ``SHADOW``
        ``shadow`` pointed at a version: it scores every request beside the champion and
        answers none.
    ``CANARY``
        ``canary`` pointed at a version: it answers a share of the traffic, under the
        server's canary guard.
    ``CANARY_PULLED``
        ``canary`` removed by the server's guard, because the version broke the canary
        policy (errors or latency).
    ``CLEAR``
        Any alias removed by a person or by the autopilot (the guard's removal is
        ``CANARY_PULLED``).
    ``SET``
        An alias with no kind of its own (not ``champion``, ``shadow`` or ``canary``)
        pointed at a version by hand, e.g. ``setpoint model alias set baseline 3``.
    """

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    CHALLENGER = "challenger"
    SHADOW = "shadow"
    CANARY = "canary"
    CANARY_PULLED = "canary_pulled"
    CLEAR = "clear"
    SET = "set"


# The alias each kind moves (None: any alias), and whether it removes the alias.
_MOVES: dict[AliasKind, tuple[str | None, bool]] = {
    AliasKind.PROMOTE: ("champion", False),
    AliasKind.ROLLBACK: ("champion", False),
    AliasKind.CHALLENGER: ("challenger", False),
    AliasKind.SHADOW: ("shadow", False),
    AliasKind.CANARY: ("canary", False),
    AliasKind.CANARY_PULLED: ("canary", True),
    AliasKind.CLEAR: (None, True),
    AliasKind.SET: (None, False),
}
# Aliases whose every pointing at a version has a kind of its own, never ``SET``.
_OWN_KIND = frozenset({"champion", "shadow", "canary"})


@dataclass(frozen=True, slots=True)
class AliasChange:
    alias: str
    version: int | None
    previous_version: int | None
    kind: AliasKind
    reason: str
    actor: str
    at: datetime


def kind_by_hand(alias: str, version: int | None) -> AliasKind:
    """The kind of a change a person makes with ``setpoint model alias set/unset``."""
    if version is None:
        return AliasKind.CLEAR
    if alias == "shadow":
        return AliasKind.SHADOW
    if alias == "canary":
        return AliasKind.CANARY
    return AliasKind.SET


def _check_kind(alias: str, version: int | None, kind: object) -> AliasKind:
    if not isinstance(kind, AliasKind):
        raise InvalidParameterError(
            owner="set_alias", parameter="kind", expected="an AliasKind", got=kind
        )
    moves, removes = _MOVES[kind]
    if moves is not None and alias != moves:
        raise InvalidParameterError(
            owner="set_alias",
            parameter="alias",
            expected=f"{moves!r} for a {kind.value} change",
            got=alias,
        )
    if removes != (version is None):
        expected = "None (a removal)" if removes else "a version number"
        raise InvalidParameterError(
            owner="set_alias",
            parameter="version",
            expected=f"{expected} for a {kind.value} change",
            got=version,
        )
    if kind is AliasKind.SET and alias in _OWN_KIND:
        raise InvalidParameterError(
            owner="set_alias",
            parameter="kind",
            expected=f"the kind of {alias!r} changes, not {kind.value}",
            got=kind.value,
        )
    return kind


def set_alias(
    conn: Connection,
    *,
    project: str,
    alias: str,
    version: int | None,
    kind: AliasKind,
    reason: str,
    actor: str,
) -> AliasChange:
    """Point ``alias`` at ``version`` (None removes it), inside the caller's transaction.

    ``kind`` says which step moved it and must fit the alias and the version (see
    ``AliasKind``); ``reason`` is free text for people, stored as given.
    """
    if not alias.isidentifier():
        raise InvalidParameterError(
            owner="set_alias", parameter="alias", expected="an identifier", got=alias
        )
    kind = _check_kind(alias, version, kind)
    if version is not None:
        exists = conn.execute(
            sa.select(model_versions.c.version).where(
                model_versions.c.project == project, model_versions.c.version == version
            )
        ).first()
        if exists is None:
            raise NotFoundError(kind="model version", name=f"{project}@{version}")
    where = (aliases.c.project == project) & (aliases.c.alias == alias)
    previous = conn.execute(sa.select(aliases.c.version).where(where)).scalar()
    now = utcnow()
    conn.execute(aliases.delete().where(where))
    if version is not None:
        conn.execute(
            aliases.insert().values(project=project, alias=alias, version=version, updated_at=now)
        )
    change = AliasChange(alias, version, previous, kind, reason, actor, now)
    conn.execute(
        alias_history.insert().values(
            project=project,
            alias=alias,
            version=version,
            previous_version=previous,
            kind=kind.value,
            reason=reason,
            actor=actor,
            at=now,
        )
    )
    record_event(
        conn,
        project=project,
        kind="alias_set",
        payload={
            "alias": alias,
            "version": version,
            "previous": previous,
            "kind": kind.value,
            "reason": reason,
        },
    )
    return change


def get_alias(db: Database, *, project: str, alias: str) -> int | None:
    with db.read() as conn:
        return get_alias_in(conn, project=project, alias=alias)


def get_alias_in(conn: Connection, *, project: str, alias: str) -> int | None:
    """``get_alias`` inside the caller's transaction (to check before a change)."""
    version: int | None = conn.execute(
        sa.select(aliases.c.version).where(aliases.c.project == project, aliases.c.alias == alias)
    ).scalar()
    return version


def list_aliases(db: Database, *, project: str) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(aliases.c.alias, aliases.c.version).where(aliases.c.project == project)
        ).all()
    return {row.alias: row.version for row in rows}


def alias_history_of(db: Database, *, project: str, alias: str | None = None) -> list[AliasChange]:
    """Oldest first."""
    query = sa.select(alias_history).where(alias_history.c.project == project)
    if alias is not None:
        query = query.where(alias_history.c.alias == alias)
    with db.read() as conn:
        rows = conn.execute(query.order_by(alias_history.c.id)).all()
    return [
        AliasChange(
            r.alias, r.version, r.previous_version, AliasKind(r.kind), r.reason, r.actor, r.at
        )
        for r in rows
    ]
