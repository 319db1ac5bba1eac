"""API keys on SQLite and PostgreSQL: shown once, stored as sha256, verified in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import string

import pytest
import sqlalchemy as sa

import setpoint.registry.api_keys as keys_module
from setpoint.errors import ConflictError, InvalidParameterError, NotFoundError
from setpoint.registry.api_keys import ApiKey, create_key, list_keys, revoke_key, verify_key
from setpoint.store.tables import api_keys
from setpoint.store.workspace import Store

ALPHABET = set(string.ascii_letters + string.digits + "-_")


def test_a_key_is_random_shown_once_and_stored_as_its_hash(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = create_key(store.db, name="ci")
    other = create_key(store.db, name="grafana")
    assert key.startswith("sp_")
    assert len(key) == 3 + 43  # 32 bytes of URL-safe base64
    assert set(key[3:]) <= ALPHABET
    assert key != other
    with store.db.read() as conn:
        rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.id)).all()
    assert [r.key_hash for r in rows] == [
        hashlib.sha256(k.encode()).hexdigest() for k in (key, other)
    ]
    assert not any(key in str(value) for row in rows for value in row)
    assert verify_key(store.db, key) == "ci"
    assert verify_key(store.db, other) == "grafana"
    assert key not in caplog.text


@pytest.mark.hostile
def test_wrong_keys_are_refused(store: Store) -> None:
    key = create_key(store.db, name="ci")
    last = "A" if key[-1] != "A" else "B"
    assert verify_key(store.db, key[:-1] + last) is None  # right length, one character off
    assert verify_key(store.db, "sp_" + "A" * 43) is None
    assert verify_key(store.db, key[:-1]) is None
    assert verify_key(store.db, key + "A") is None
    assert verify_key(store.db, key.upper()) is None
    assert verify_key(store.db, "") is None
    assert verify_key(store.db, None) is None
    assert verify_key(store.db, "\udcff") is None  # not valid Unicode: no crash, no match


@pytest.mark.hostile
def test_every_active_key_is_compared_whatever_the_candidate(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = create_key(store.db, name="a")
    create_key(store.db, name="b")
    create_key(store.db, name="c")
    revoke_key(store.db, name="c")
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    for candidate in (first, "sp_" + "x" * 43, "not even a key"):
        compared.clear()
        verify_key(store.db, candidate)
        # no early exit on the first match, and no shortcut for a key without the prefix;
        # revoked keys are not candidates at all
        assert len(compared) == 2, candidate
        assert all(len(a) == len(b) == 64 for a, b in compared)
    assert verify_key(store.db, first) == "a"


@pytest.mark.hostile
def test_a_revoked_key_is_refused(store: Store) -> None:
    key = create_key(store.db, name="ci")
    keep = create_key(store.db, name="ops")
    revoke_key(store.db, name="ci")
    assert verify_key(store.db, key) is None
    assert verify_key(store.db, keep) == "ops"
    listed = list_keys(store.db)
    assert [(k.name, k.active) for k in listed] == [("ci", False), ("ops", True)]
    revoked_at = listed[0].revoked_at
    assert revoked_at is not None
    assert revoked_at >= listed[0].created_at
    revoke_key(store.db, name="ci")  # again: a no-op that keeps the first revocation time
    assert list_keys(store.db)[0].revoked_at == revoked_at
    with pytest.raises(NotFoundError, match="No API key named 'nobody'"):
        revoke_key(store.db, name="nobody")


def test_names_are_unique_even_after_revocation(store: Store) -> None:
    create_key(store.db, name="ci")
    with pytest.raises(ConflictError, match="'ci' already exists"):
        create_key(store.db, name="ci")
    revoke_key(store.db, name="ci")
    with pytest.raises(ConflictError):
        create_key(store.db, name="ci")
    assert len(list_keys(store.db)) == 1


@pytest.mark.parametrize("name", ["", "has space", "-lead", "x" * 65, "tab\t"])
def test_bad_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidParameterError, match="'name' parameter of create_key"):
        create_key(store.db, name=name)
    assert list_keys(store.db) == []


def test_a_listed_key_carries_neither_key_nor_hash(store: Store) -> None:
    create_key(store.db, name="ci")
    (listed,) = list_keys(store.db)
    assert isinstance(listed, ApiKey)
    assert set(ApiKey.__dataclass_fields__) == {"name", "created_at", "revoked_at", "scope"}
    assert listed.revoked_at is None
