"""The kind of a registered version, by the name the registry stores."""

from __future__ import annotations

from setpoint.errors import ConfigError
from setpoint.kinds.protocol import ModelKind
from setpoint.kinds.tabular import TABULAR

__all__ = ["KINDS", "get_kind"]

KINDS: dict[str, ModelKind] = {TABULAR.name: TABULAR}


def get_kind(name: str) -> ModelKind:
    """The kind called ``name``; ``ConfigError`` naming the known ones otherwise."""
    found = KINDS.get(name)
    if found is None:
        raise ConfigError(
            f"No kind of model called {name!r} is installed (known: {sorted(KINDS)}).", kind=name
        )
    return found
