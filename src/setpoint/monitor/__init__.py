"""Monitoring served traffic: each window of the prediction log against the model's reference."""

__all__: list[str] = []
