"""Served traffic: the durable prediction logs, their feedback, and the history to learn from."""

__all__: list[str] = []
