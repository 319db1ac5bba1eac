"""``setpoint keys``: a key is printed once, listed by name only, stored only hashed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from _support.cli import run as setpoint
from setpoint.registry.api_keys import verify_key
from setpoint.store.workspace import Store


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    init = setpoint("init", "--project", "demo", "--target", "y", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    return tmp_path


def test_a_key_is_shown_once_and_stored_hashed(project: Path) -> None:
    created = setpoint("keys", "create", "ci", cwd=project)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sp_")
    assert len(key.splitlines()) == 1  # only the key on stdout: KEY=$(setpoint keys create ci)
    assert "only time" in created.stderr

    listing = setpoint("keys", "list", cwd=project)
    assert listing.returncode == 0, listing.stderr
    assert "ci" in listing.stdout
    assert "active" in listing.stdout
    assert key not in listing.stdout
    store_bytes = b"".join(p.read_bytes() for p in (project / ".setpoint").glob("setpoint.db*"))
    assert key.encode() not in store_bytes

    store = Store.open(project)
    try:
        assert verify_key(store.db, key) == "ci"
        revoked = setpoint("keys", "revoke", "ci", cwd=project)
        assert revoked.returncode == 0, revoked.stderr
        assert verify_key(store.db, key) is None
    finally:
        store.db.dispose()
    assert "revoked" in setpoint("keys", "list", cwd=project).stdout


def test_a_feedback_key_is_made_and_listed_with_its_scope(project: Path) -> None:
    created = setpoint("keys", "create", "--scope", "feedback", "labels", cwd=project)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert "feedback API key 'labels'" in created.stderr
    listing = setpoint("keys", "list", cwd=project)
    row = next(line for line in listing.stdout.splitlines() if "labels" in line)
    assert "feedback" in row
    store = Store.open(project)
    try:
        assert verify_key(store.db, key, scope="feedback") == "labels"
        assert verify_key(store.db, key) is None  # not an admin key
    finally:
        store.db.dispose()
    assert_user_error(
        setpoint("keys", "create", "--scope", "root", "x", cwd=project), "admin", "feedback"
    )


def test_no_keys_yet_says_how_to_make_one(project: Path) -> None:
    listing = setpoint("keys", "list", cwd=project)
    assert listing.returncode == 0, listing.stderr
    assert "setpoint keys create" in listing.stdout


def test_bad_key_commands_fail_cleanly(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert setpoint("keys", "create", "ci", cwd=project).returncode == 0
    assert_user_error(setpoint("keys", "create", "ci", cwd=project), "'ci'", "already exists")
    assert_user_error(setpoint("keys", "create", "no spaces", cwd=project), "'name'", "no spaces")
    assert_user_error(setpoint("keys", "revoke", "nobody", cwd=project), "'nobody'")
    elsewhere = tmp_path_factory.mktemp("empty")
    assert_user_error(setpoint("keys", "list", cwd=elsewhere), "setpoint.yaml", "setpoint init")
