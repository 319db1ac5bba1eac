"""Serving over HTTP: the prediction server, its router, scorer, admin endpoints and metrics."""

__all__: list[str] = []
