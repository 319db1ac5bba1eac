"""The ``setpoint`` command line: a thin layer of Typer commands over ``setpoint.project``."""

__all__: list[str] = []
