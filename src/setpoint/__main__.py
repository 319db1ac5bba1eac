"""``python -m setpoint`` is the ``setpoint`` command."""

from setpoint.cli.main import main

main()
