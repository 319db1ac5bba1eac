"""The project spec, ``setpoint.yaml``: its model, loader and starter template."""
