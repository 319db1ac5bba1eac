"""Rules of the repository itself: settings, errors, the README and CI.

The exports have their own rules, in test_public_api.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import setpoint
from setpoint import errors
from setpoint.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in page, setting.env
        assert setting.help.split(".")[0] in page.replace("`", ""), setting.env


def test_the_cli_reads_the_environment_through_settings() -> None:
    """A command-line option read from the environment is a setting, with its help."""
    import typer

    from setpoint.cli.main import app

    declared = {setting.env: setting for setting in SETTINGS}
    found: set[str] = set()

    # Typer's commands and options (its own copy of click's classes), walked by attribute.
    def walk(command: Any, path: str) -> None:
        for param in command.params:
            envvars = [param.envvar] if isinstance(param.envvar, str) else param.envvar or []
            for envvar in envvars:
                found.add(envvar)
                assert envvar in declared, f"{path} {param.name}: {envvar} is no setting"
                assert param.help == declared[envvar].help, f"{path} {param.name}: its help"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "setpoint")
    assert "SETPOINT_API_KEY" in found, found


def test_error_tree_in_docstring_matches_the_classes() -> None:
    doc = errors.__doc__ or ""
    drawn = set(re.findall(r"^\s*(?:[│ ]*[├└]── )?(\w+Error)\s", doc, re.M))
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.SetpointError)
    }
    assert defined == set(drawn)
    # The rest of __all__ is the functions that map an error to its HTTP status and kind.
    assert {name for name in errors.__all__ if name.endswith("Error")} == defined


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    setup = [b for b in blocks if "pip install" in b and "\n" not in b]
    assert len(setup) == 2, "the README gives exactly two set-up commands"
    quickstart, tests = setup
    assert quickstart.endswith("setpoint quickstart")
    assert tests.endswith("pytest")
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_ci_always_asks_for_postgresql_and_stops_when_it_cannot_start() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    # Exported whatever pg_isready says, so that the store tests fail without it.
    assert re.search(r"^export SETPOINT_TEST_DB_URL=", script, re.M)
    assert re.search(r"^export CI=", script, re.M)
    assert "|| true" not in script


@pytest.mark.parametrize(
    ("database", "message"),
    [
        (None, "CI needs PostgreSQL for the store tests: SETPOINT_TEST_DB_URL is not set"),
        # Port 1: nothing listens there.
        ("postgresql://postgres@127.0.0.1:1/test", "cannot be reached"),
    ],
)
def test_store_tests_fail_in_ci_without_postgresql(database: str | None, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SETPOINT_TEST_DB_URL"}
    env["CI"] = "true"
    if database is not None:
        env["SETPOINT_TEST_DB_URL"] = database
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--durations=0",
            "tests/store/test_db.py::test_reopening_does_not_migrate_again",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert message in run.stdout
    assert "1 passed" in run.stdout  # the SQLite half still runs
    assert "skipped" not in run.stdout


# A test named on docs/security.md, with or without "::" and the test's name.
SECURITY_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")

# Loaded by the collecting pytest below: what it gathered, and whether each is hostile.
HOSTILE_PROBE = """
import json
import os


def pytest_collection_finish(session):
    found = {i.nodeid: i.get_closest_marker("hostile") is not None for i in session.items}
    with open(os.environ["HOSTILE_PROBE_OUT"], "w", encoding="utf-8") as out:
        json.dump(found, out)
"""


def test_every_test_the_security_page_names_is_in_the_hostile_suite(tmp_path: Path) -> None:
    """``pytest -m hostile`` runs every test docs/security.md names as holding a promise.

    Collected by pytest itself, so a mark given any way counts; a file named without a
    test must have all of its tests marked.
    """
    pytest_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = pytest_config["ini_options"]["markers"]
    assert any(m.startswith("hostile: ") for m in registered), f"no hostile marker: {registered}"
    page = (ROOT / "docs" / "security.md").read_text()
    assert "pytest -m hostile" in page, "docs/security.md does not say how to run the suite"
    named = SECURITY_REFERENCE.findall(page)
    files = sorted({path for path, _ in named})
    missing = [path for path in files if not (ROOT / path).is_file()]
    assert not missing, f"docs/security.md names files that do not exist: {missing}"

    (tmp_path / "hostile_probe.py").write_text(HOSTILE_PROBE)
    out = tmp_path / "collected.json"
    paths = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "HOSTILE_PROBE_OUT": str(out), "PYTHONPATH": os.pathsep.join(paths)}
    collect = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "hostile_probe"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *collect, *files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    hostile: dict[str, bool] = json.loads(out.read_text())

    for path, name in named:
        where = f"{path}::{name}" if name else path
        items = {
            node: marked
            for node, marked in hostile.items()
            if (node == where or node.startswith(f"{where}["))
            or (not name and node.startswith(f"{path}::"))
        }
        assert items, f"docs/security.md names {where}, but no such test is collected"
        unmarked = sorted(node for node, marked in items.items() if not marked)
        assert not unmarked, f"docs/security.md names {where}; not marked hostile: {unmarked}"


def test_package_import_is_light() -> None:
    assert setpoint.__all__ == ["__version__"]
