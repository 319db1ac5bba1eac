"""Monitoring: summaries of a reference frame and drift between it and a current window."""
