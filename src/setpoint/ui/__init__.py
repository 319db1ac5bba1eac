"""The web dashboard: every model's state, drift, live quality and the loop's decisions."""

__all__: list[str] = []
