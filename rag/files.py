"""Durable writes shared by the index and the model caches."""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk: data written to a file, and a rename inside a folder, survive a
    power cut only once fsynced. Raises OSError."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
