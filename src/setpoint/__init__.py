"""setpoint keeps production machine-learning models at their quality setpoint.

The package import is deliberately light: import the part you need, e.g.
``from setpoint.project import Project``. ``setpoint.Client`` (the HTTP client
of ``setpoint serve``) is imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Re-exported for type checkers; at run time __getattr__ imports them on first use.
    from setpoint.client import Client as Client
    from setpoint.client import PredictResponse as PredictResponse

__all__ = ["__version__"]  # Client and PredictResponse resolve lazily: see __getattr__

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import ``setpoint.client`` when ``setpoint.Client`` is first used."""
    if name in ("Client", "PredictResponse"):
        import setpoint.client

        return getattr(setpoint.client, name)
    raise AttributeError(f"module 'setpoint' has no attribute {name!r}")
