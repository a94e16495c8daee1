"""Files that hold document text, questions, key hashes or the audit trail, and the folders around them, are created
readable by their owner only: folders 0700, files 0600.

The mode is given to the `mkdir`/`open` call that creates them (the umask can only remove bits from it), never by
changing the process umask, which every thread shares. Files and folders that already exist are left as the operator
set them.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as an existing folder; every folder this call creates, missing parents included, is 0700.

    Raises OSError (e.g. PermissionError) when a folder cannot be created."""
    missing, folder = [], Path(path)
    while not folder.is_dir() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process or thread
            if not folder.is_dir():
                raise
    return Path(path)


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT)` with the file created 0600 (and its folder 0700) if it does not exist; returns
    the file descriptor, which the caller closes. Raises OSError."""
    private_dir(Path(path).parent)
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def touch_private(path: Path) -> Path:
    """Create `path` empty and 0600 if it does not exist yet (for files another library opens, such as SQLite's,
    which then keeps the mode; SQLite gives its -wal and -shm files the database's mode). Raises OSError."""
    os.close(open_private(path, os.O_WRONLY))
    return Path(path)
