"""Run the ``setpoint`` command as a user does: a real process, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["run"]


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m setpoint *args`` in ``cwd``, with no inherited SETPOINT_* setting."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SETPOINT_")}
    return subprocess.run(
        [sys.executable, "-m", "setpoint", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "250", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
