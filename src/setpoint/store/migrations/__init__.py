"""Alembic migrations of the metadata store. ``HEAD`` names the newest revision."""

__all__ = ["HEAD"]

HEAD = "0007"
