"""Load ``setpoint.yaml`` and report errors with the file, the line and the key.

PyYAML's composer keeps the position of every node, so a pydantic error's
location (a tuple of keys) can be walked down the node tree to the line the
user has to edit.

A spec is small, so the loader refuses what only an accident or an attack makes:
a file over ``MAX_SPEC_BYTES``, nesting deeper than ``MAX_DEPTH``, more than
``MAX_ALIASES`` alias uses, or aliases that expand to more than ``MAX_VALUES``
values (the "billion laughs": a few lines that are a billion values once
expanded, which every later step, from validation to the lineage's JSON, expands).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from setpoint.config.spec import ProjectSpec
from setpoint.errors import SpecError

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_SPEC_BYTES",
    "MAX_VALUES",
    "SPEC_FILE",
    "dump_spec",
    "load_spec",
    "parse_spec",
]

SPEC_FILE = "setpoint.yaml"
MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_VALUES = 100_000


def load_spec(path: str | Path) -> ProjectSpec:
    """Read and validate a spec file."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    try:
        with path.open("rb") as handle:
            # Never more than the limit in memory, whatever the file's size.
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(
            "no spec file here; run 'setpoint init' to write one", path=str(path)
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _too_large(raw, source=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start})", path=str(path)) from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, *, source: str = SPEC_FILE) -> ProjectSpec:
    """Validate spec text; ``source`` names it in error messages."""
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) > MAX_SPEC_BYTES:
        raise _too_large(encoded, source=source)
    try:
        _check_shape(text, source=source)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_expansion(root, source=source)
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


def _too_large(raw: bytes, *, source: str) -> SpecError:
    line = raw[:MAX_SPEC_BYTES].count(b"\n") + 1
    return SpecError(
        f"the spec is over {MAX_SPEC_BYTES:,} bytes from this line on; a spec may be at "
        f"most {MAX_SPEC_BYTES:,} bytes (is this the right file?)",
        path=source,
        line=line,
    )


def _line(mark: object) -> int | None:
    """The 1-based line of a mark (PyYAML's pure or C one), if there is one."""
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else None


def _check_shape(text: str, *, source: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` and more than ``MAX_ALIASES`` aliases.

    Read from the parser's events, before the composer builds any node: the
    composer recurses once per level, so a deep enough file would exhaust the stack.
    """
    depth = 0
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(
                    f"nested {depth} levels deep here; a spec may nest at most {MAX_DEPTH}",
                    path=source,
                    line=_line(event.start_mark),
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise SpecError(
                    f"alias *{event.anchor} is alias use number {aliases}; a spec may use "
                    f"aliases at most {MAX_ALIASES} times",
                    path=source,
                    line=_line(event.start_mark),
                )


def _check_expansion(root: yaml.Node | None, *, source: str) -> None:
    """Refuse aliases that expand to more than ``MAX_VALUES`` values, or hold themselves.

    An alias is the node of its anchor, shared: each distinct node is counted once
    and its count reused, so the check takes time in the file's size, not in the
    expansion's.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise SpecError(
                "an alias here refers to a node that holds it: it expands without end",
                path=source,
                line=_line(node.start_mark),
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_VALUES:
            raise SpecError(
                f"this expands to {total:,} values once its aliases are expanded; a spec "
                f"may hold at most {MAX_VALUES:,}",
                path=source,
                line=_line(node.start_mark),
            )
        sizes[key] = total
        return total

    if root is not None:
        size(root)


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
