"""Helpers shared by several test folders (importable because pytest puts tests/ on the path)."""
