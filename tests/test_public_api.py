"""The public surface of the package: ``__all__`` in every public module, and ``py.typed``.

A public module is one whose dotted name has no part starting with ``_``
(``setpoint.cli._options`` and ``setpoint.__main__`` are private); the Alembic
migrations are scripts, not modules. Each public module declares ``__all__``;
in every module that declares one, each name in it exists, none is listed
twice, and every public top-level function or class the module defines is in
it: a helper that is not part of the API starts with ``_``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "setpoint"


def _modules() -> list[str]:
    names = ["setpoint"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="setpoint."):
        if info.name == "setpoint.store.migrations" or info.name.startswith(
            "setpoint.store.migrations."
        ):
            continue
        names.append(info.name)
    return sorted(names)


def _source(name: str) -> Path:
    path = SRC.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _cases() -> list[str]:
    return _modules()


def _declares_all(tree: ast.Module) -> bool:
    targets = [
        target
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
    ]
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


@pytest.mark.parametrize("name", _cases())
def test_all_lists_the_public_api(name: str) -> None:
    tree = ast.parse(_source(name).read_text())
    if not _declares_all(tree):
        # Read, not imported: importing setpoint.__main__ would run the command.
        assert not _is_public(name), f"{name} is a public module without __all__"
        return
    module = importlib.import_module(name)
    declared = module.__all__
    assert isinstance(declared, list | tuple), f"{name}.__all__ is a {type(declared).__name__}"
    missing = [n for n in declared if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what the module lacks: {missing}"
    repeated = sorted({n for n in declared if list(declared).count(n) > 1})
    assert not repeated, f"{name}.__all__ lists names twice: {repeated}"
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
    }
    unlisted = sorted(defined - set(declared))
    assert not unlisted, f"{name} defines public {unlisted} but leaves them out of __all__"


def test_the_package_ships_its_type_information() -> None:
    """PEP 561: ``py.typed`` marks the inline annotations as the package's types."""
    assert (SRC / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # The wheel takes the whole package folder, py.typed included.
    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/setpoint"]
