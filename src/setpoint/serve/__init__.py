"""Serving: the HTTP server and the durable prediction log (`predlog`)."""
