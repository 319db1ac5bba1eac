"""Watching production traffic: the prediction log cut into windows and monitored."""
