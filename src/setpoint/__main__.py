"""``python -m setpoint`` is the ``setpoint`` command."""

from setpoint.cli.app import main

main()
