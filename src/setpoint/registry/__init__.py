"""The catalog: projects, datasets with their schemas, model versions, aliases and events."""
