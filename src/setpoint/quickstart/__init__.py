"""The quickstart: a real project on the NYC flights 2013 data, with no set-up."""

__all__: list[str] = []
