"""The catalog: projects, datasets with their schemas, model versions, aliases and events."""

__all__: list[str] = []
