"""API keys of the server: made once, shown once, stored only as their sha256.

A key is ``sp_`` plus 32 random bytes (URL-safe base64), so its hash cannot be
reversed by guessing and needs no salt or slow hash: a leaked ``api_keys`` table
lets nobody in. Keys belong to the store, not to a project, because one server
process may answer for several projects of one store.

A key has a scope. An ``admin`` key may call every keyed endpoint: promote,
roll back, reload, and predict and feedback when they need a key. A ``feedback``
key may only post feedback, so the label pipeline that holds it can neither move
a model nor read predictions.

Nothing here logs a key or puts one in an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from setpoint.errors import ConflictError, InvalidParameterError, NotFoundError
from setpoint.store.db import Database
from setpoint.store.tables import api_keys, utcnow

__all__ = [
    "ADMIN",
    "FEEDBACK",
    "SCOPES",
    "ApiKey",
    "create_key",
    "key_scope",
    "list_keys",
    "may_act",
    "revoke_key",
    "verify_key",
]

ADMIN = "admin"
FEEDBACK = "feedback"
SCOPES = (ADMIN, FEEDBACK)
_PREFIX = "sp_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What may be shown of a key: never the key, never its hash."""

    name: str
    created_at: datetime
    revoked_at: datetime | None
    scope: str = ADMIN

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(key: str) -> str:
    # surrogatepass: a header value that is not valid Unicode still hashes (to no key)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(db: Database, *, name: str, scope: str = ADMIN) -> str:
    """Make a key called ``name`` with ``scope`` and return it; the only time it can be seen.

    Raises ``ConflictError`` when a key (active or revoked) already has the name, so
    that the name in an audit trail always means one key.
    """
    if _NAME.fullmatch(name) is None:
        raise InvalidParameterError(
            owner="create_key",
            parameter="name",
            expected="1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
            got=name,
        )
    if scope not in SCOPES:
        raise InvalidParameterError(
            owner="create_key", parameter="scope", expected=f"one of {list(SCOPES)}", got=scope
        )
    key = _PREFIX + secrets.token_urlsafe(32)
    try:
        with db.write() as conn:
            taken = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.name == name)).first()
            if taken is not None:
                raise ConflictError(f"An API key named {name!r} already exists.", name=name)
            conn.execute(
                api_keys.insert().values(
                    name=name, key_hash=_hash(key), created_at=utcnow(), scope=scope
                )
            )
    except IntegrityError:  # a concurrent create_key took the name first (PostgreSQL)
        raise ConflictError(f"An API key named {name!r} already exists.", name=name) from None
    return key


def key_scope(db: Database, key: str | None) -> tuple[str, str] | None:
    """``(name, scope)`` of the active key ``key``; None when it is absent, unknown or revoked.

    The hash of ``key`` is compared with ``hmac.compare_digest`` to every active
    key's hash, without stopping at a match or skipping a key that does not look
    like one, so the time taken says nothing about which bytes were right.
    """
    if key is None:
        return None
    candidate = _hash(key)
    query = sa.select(api_keys.c.name, api_keys.c.key_hash, api_keys.c.scope).where(
        api_keys.c.revoked_at.is_(None)
    )
    with db.read() as conn:
        rows = conn.execute(query).all()
    found: tuple[str, str] | None = None
    for name, stored, scope in rows:
        if hmac.compare_digest(candidate, stored):
            found = (name, scope)
    return found


def verify_key(db: Database, key: str | None, *, scope: str = ADMIN) -> str | None:
    """The name of the active key ``key`` if it may act in ``scope``, else None.

    An ``admin`` key may act in every scope; a ``feedback`` key only in its own.
    """
    found = key_scope(db, key)
    if found is None or not may_act(found[1], scope):
        return None
    return found[0]


def may_act(held: str, needed: str) -> bool:
    """Whether a key of scope ``held`` may act in scope ``needed``: admin acts in every one."""
    return held in (needed, ADMIN)


def revoke_key(db: Database, *, name: str) -> None:
    """Revoke the key ``name`` from now on; revoking a revoked key changes nothing."""
    with db.write() as conn:
        row = conn.execute(sa.select(api_keys.c.revoked_at).where(api_keys.c.name == name)).first()
        if row is None:
            raise NotFoundError(kind="API key", name=name)
        if row.revoked_at is None:
            conn.execute(
                api_keys.update().where(api_keys.c.name == name).values(revoked_at=utcnow())
            )


def list_keys(db: Database) -> list[ApiKey]:
    """Every key, active and revoked, oldest first."""
    query = sa.select(
        api_keys.c.name, api_keys.c.created_at, api_keys.c.revoked_at, api_keys.c.scope
    )
    with db.read() as conn:
        rows = conn.execute(query.order_by(api_keys.c.created_at, api_keys.c.id)).all()
    return [ApiKey(r.name, r.created_at, r.revoked_at, r.scope) for r in rows]
