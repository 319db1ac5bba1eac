"""The import rule of docs/architecture.md: a layer imports only the layers before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "setpoint"

BASE = {"errors", "settings", "_json", "_console"}
# Each layer may import itself and the layers before it (docs/architecture.md).
ORDER = [
    "config",
    "store",
    "data",
    "train",
    "stats",
    "kinds",
    "registry",
    "traffic",
    "project",
    "monitor",
    "autopilot",
    "quickstart",
    "ui",
    "serve",
]
ALLOWED: dict[str, set[str]] = {
    "base": {"errors"},
    **{layer: BASE | set(ORDER[: i + 1]) for i, layer in enumerate(ORDER)},
    "client": {"errors", "_json", "client"},
    # the package's __init__ only resolves setpoint.Client lazily
    "__init__": {"client"},
    "cli": BASE | set(ORDER) | {"client", "cli"},
    "__main__": {"cli"},
}


def _layer(path: Path) -> str:
    part = path.relative_to(SRC).parts[0].removesuffix(".py")
    if part == "__init__":
        return "__init__"
    if part in BASE:
        return "base"
    return part


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("setpoint."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("setpoint."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"{path}: layer {layer!r} is not in docs/architecture.md"
    wrong = _imports(path) - ALLOWED[layer]
    assert not wrong, f"{path} ({layer}) imports {sorted(wrong)}"
