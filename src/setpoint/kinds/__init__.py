"""Kinds of model: what each gives the lifecycle (``protocol.py``), and the tabular kind."""

__all__: list[str] = []
