"""Pure statistics: reference summaries, drift tests, realized and estimated performance."""
