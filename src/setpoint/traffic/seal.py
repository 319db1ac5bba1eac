"""``python -m setpoint.traffic.seal DIRECTORY BELOW``: seal a worker's finished log segments.

The server runs this in a child process at low priority: turning a 64 MiB raw
segment into Parquet decodes every record in Python, and in the serving process
that would hold the GIL for about a second and stall every request meanwhile.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setpoint.traffic.segments import seal_segments

__all__ = ["main"]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m setpoint.traffic.seal DIRECTORY BELOW", file=sys.stderr)
        return 2
    os.nice(10)  # serving comes first
    seal_segments(Path(argv[0]), below=int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
