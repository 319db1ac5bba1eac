"""Persistence: the metadata database (SQLAlchemy) and the artifact store (fsspec)."""

__all__: list[str] = []
