"""The ``setpoint`` command line: a thin layer of Typer commands over ``setpoint.project``."""
