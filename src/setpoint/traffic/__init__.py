"""Served traffic: the durable prediction logs, their feedback, and the history to learn from."""
