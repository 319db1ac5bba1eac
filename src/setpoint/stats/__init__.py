"""Pure statistics: reference summaries, drift tests, realized and estimated performance."""

__all__: list[str] = []
