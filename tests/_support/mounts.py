"""Real disk faults for the store: a small tmpfs, filled up or remounted read-only.

The suite runs as root, whom ``chmod`` does not stop, so a read-only or full disk
has to be a real mount. Where mounting is refused (no privilege, a container
without CAP_SYS_ADMIN), the test is skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["cannot", "fill", "read_only", "tmpfs"]


def cannot(reason: str) -> None:
    """Skip for ``reason``; in CI, where the machine is set up for these tests, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs this: {reason}", pytrace=False)
    pytest.skip(reason)


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        cannot(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


@contextmanager
def tmpfs(where: Path, *, size: str = "64m", content: Path | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``where`` (made if missing), holding a copy of
    ``content``'s files; unmounted afterwards."""
    if shutil.which("mount") is None:
        cannot("no 'mount' command")
    where.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    try:
        if content is not None:
            shutil.copytree(content, where, dirs_exist_ok=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def read_only(where: Path) -> None:
    """Remount the tmpfs at ``where`` read-only."""
    _mount("-o", "remount,ro", str(where))


def fill(where: Path) -> Path:
    """Write a file on ``where``'s filesystem until not one more byte fits; the file."""
    filler = where / "filler"
    size = 1 << 20
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while size:
            try:
                os.write(descriptor, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(descriptor)
    return filler
