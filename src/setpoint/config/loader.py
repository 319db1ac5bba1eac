"""Load ``setpoint.yaml`` and report errors with the file, the line and the key.

PyYAML's composer keeps the position of every node, so a pydantic error's
location (a tuple of keys) can be walked down the node tree to the line the
user has to edit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from setpoint.config.spec import ProjectSpec
from setpoint.errors import SpecError

__all__ = ["SPEC_FILE", "dump_spec", "load_spec", "parse_spec"]

SPEC_FILE = "setpoint.yaml"


def load_spec(path: str | Path) -> ProjectSpec:
    """Read and validate a spec file."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            "no spec file here; run 'setpoint init' to write one", path=str(path)
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start})", path=str(path)) from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, *, source: str = SPEC_FILE) -> ProjectSpec:
    """Validate spec text; ``source`` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise SpecError(f"invalid YAML: {exc.problem}", path=source, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", path=source) from None
    if not isinstance(data, dict):
        raise SpecError("the spec must be a mapping of keys to values", path=source, line=1)
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc) or "(root)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        if not loc:
            # Cross-field checks run on the whole model; they name their key first.
            loc, key = _leading_key(message, loc, key)
            message = message.removeprefix(key).lstrip(" :") if loc else message
        if len(exc.errors()) > 1:
            message += f" (and {len(exc.errors()) - 1} more problem(s))"
        raise SpecError(message, path=source, line=_line_of(root, loc), key=key) from None


_KEY = re.compile(r"^([A-Za-z_]+)(?:\[(\d+)\])?((?:\.[A-Za-z_]+)*)\b")


def _leading_key(message: str, loc: tuple[Any, ...], key: str) -> tuple[tuple[Any, ...], str]:
    """``joins[0].source 'w' is ...`` -> (("joins", 0, "source"), "joins[0].source")."""
    match = _KEY.match(message)
    if match is None or match.group(1) not in ProjectSpec.model_fields:
        return loc, key
    name, index, sub = match.groups()
    parts: tuple[Any, ...] = (name,)
    if index is not None:
        parts += (int(index),)
    if sub:
        parts += tuple(sub.lstrip(".").split("."))
    return parts, match.group(0)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest node that ``loc`` reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def dump_spec(spec: ProjectSpec) -> str:
    """YAML text of a spec, keeping only what differs from the defaults."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False)
