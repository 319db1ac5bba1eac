"""A real, small tmpfs to fill up: what a full disk does to the code that writes there."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def cannot(reason: str) -> None:
    """Skip for ``reason``; in CI, where the environment is set up for these tests, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs this: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def tmpfs(folder: Path, *, size: str) -> Iterator[Path]:
    """``folder`` as a tmpfs of ``size`` (``mount -o size=``) until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        cannot("there is no mount command")
    if mounted.returncode != 0:
        cannot(f"a tmpfs cannot be mounted here (root is needed): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of ``folder``'s file system; delete it to free them."""
    filler = folder / "filler"
    chunk = bytes(64 * 2**10)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler
