"""A real small disk for storage-fault tests: a tmpfs mounted on a tmp dir (needs root), that a
test can fill to the last byte and grow again, as a full disk does when space is freed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Tmpfs:
    path: Path

    def resize(self, size: str) -> None:
        run = subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.path)], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> Path:
        """Take every free byte with a filler file; returns it."""
        filler = self.path / "filler"
        with open(filler, "ab", buffering=0) as f:
            for chunk in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * chunk)
        assert self.free() == 0
        return filler


@pytest.fixture
def tmpfs(tmp_path):
    """A 16 MiB tmpfs on a fresh directory, unmounted at teardown; skips if it cannot mount."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if run.returncode:
        pytest.skip(f"cannot mount a tmpfs: {run.stderr.strip()}")
    try:
        yield Tmpfs(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
