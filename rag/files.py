"""Durable writes shared by the index and the model caches."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from .private_files import private_dir


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk: data written to a file, and a rename inside a folder, survive a
    power cut only once fsynced. Raises OSError."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def create_once(path: Path, make: Callable[[Path], None]) -> None:
    """Create `path` once, atomically, with `make(temporary path)`: several processes starting together (server
    workers, replicas sharing a data folder) make it once, the others wait for its file instead of reading it half
    written or redoing it. The folder is created 0700 (it holds model files beside keys and the audit log). Raises
    what `make` raises, and OSError."""
    if path.is_file():
        return
    private_dir(path.parent)
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return
        for stale in path.parent.glob(".*.tmp*"):  # left by a killed writer; nobody else writes while we hold the lock
            stale.unlink()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            make(tmp)
            fsync(tmp)
            os.replace(tmp, path)
            fsync(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
