"""Rules of the repository itself: exports, settings, errors, the README and CI."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import setpoint
from setpoint import errors
from setpoint.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "setpoint"


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(SRC)], prefix="setpoint."):
        if ".migrations.versions." in info.name or info.name.endswith("migrations.env"):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_every_module_declares_all_and_it_resolves(name: str) -> None:
    path = SRC.joinpath(*name.split(".")[1:])
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text())
    declared = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    has_code = any(
        isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        for node in tree.body
    )
    if not has_code:
        return
    assert declared, f"{name} defines functions or classes but no __all__"
    module = importlib.import_module(name)
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported!r}"
    public = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
    }
    assert public <= set(module.__all__), (
        f"{name}: public but not exported: {public - set(module.__all__)}"
    )


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in page, setting.env
        assert setting.help.split(".")[0] in page.replace("`", ""), setting.env


def test_error_tree_in_docstring_matches_the_classes() -> None:
    doc = errors.__doc__ or ""
    drawn = set(re.findall(r"^\s*(?:[│ ]*[├└]── )?(\w+Error)\s", doc, re.M))
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.SetpointError)
    }
    assert defined == set(drawn)
    assert set(errors.__all__) == defined


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    setup = [b for b in blocks if "pip install" in b and "\n" not in b]
    assert len(setup) == 2, "the README gives exactly two set-up commands"
    quickstart, tests = setup
    assert quickstart.endswith("setpoint quickstart")
    assert tests.endswith("pytest")
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_package_import_is_light() -> None:
    assert setpoint.__all__ == ["__version__"]
