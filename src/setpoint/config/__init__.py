"""The project spec, ``setpoint.yaml``: its pydantic model, loader, durations and template."""
