"""The project spec, ``setpoint.yaml``: its pydantic model, loader, durations and template."""

__all__: list[str] = []
