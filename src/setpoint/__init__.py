"""setpoint keeps production machine-learning models at their quality setpoint.

The package import is deliberately light: import the part you need, e.g.
``from setpoint.project import Project``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
