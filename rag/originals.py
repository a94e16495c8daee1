"""The original bytes of ingested files, for downloads and PDF page images.

The index keeps each document's extracted text and blocks, not its file. Uploads have no file anywhere else, so their
bytes are kept in `<index_dir>/originals/<sha256>` (mode 0600, written atomically, one copy per distinct content).
A document ingested from a path (`rag ingest`) is read from that path as long as the file there still has the
recorded sha256. Files no document refers to any more are removed by `prune` after every delete and upload.

Several writers may share the folder (server workers, replicas on one host). An upload keeps its files from before
its commit until after it (`kept`, a shared lock on `.lock`), because until then no document refers to them; `prune`
runs under the exclusive lock and skips when any upload holds its files, so it never removes the files of an upload
that has not committed yet: the last upload to finish prunes for all.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .private_files import open_private
from .store import DocumentRecord

_SHA256 = re.compile(r"[0-9a-f]{64}")
_LOCK = ".lock"  # flock: shared while an upload holds files it has not committed, exclusive while pruning


class Originals:
    """The `originals/` folder of one index."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def put(self, data: bytes) -> str:
        """Keep `data` under its sha256 (idempotent); returns the sha256."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.directory / sha
        if target.exists():
            return sha
        tmp = self.directory / f".{sha}.{os.getpid()}-{secrets.token_hex(4)}.tmp"  # a name no other writer uses
        fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)  # 0600, in a 0700 folder (missing parents included)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return sha

    @contextlib.contextmanager
    def kept(self, contents: Iterable[bytes]) -> Iterator[list[str]]:
        """Put every file of `contents` (their sha256 are yielded) and hold them from any prune, of this process or
        another, until the block ends: an upload commits its documents inside it. Raises OSError."""
        fd = open_private(self.directory / _LOCK, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only for a prune in progress
            yield [self.put(data) for data in contents]
        finally:
            os.close(fd)  # releases the lock

    def read(self, record: DocumentRecord) -> bytes | None:
        """The file the document was made from, or None when it is kept nowhere (or the file at its path changed)."""
        for candidate in (self.directory / record.sha256, Path(record.source)):
            try:
                data = candidate.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == record.sha256:
                return data
        return None

    def prune(self, *, keep: Callable[[], Iterable[str]]) -> int:
        """Remove the kept files whose sha256 is not among `keep()` (the stored documents' sha256, read once the
        exclusive lock is held); returns how many. Removes nothing (0) while an upload holds its files (`kept`): that
        upload prunes after its commit."""
        if not self.directory.is_dir():
            return 0
        fd = open_private(self.directory / _LOCK, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            wanted = set(keep())
            stale = [p for p in self.directory.iterdir() if _SHA256.fullmatch(p.name) and p.name not in wanted]
            for path in stale:
                path.unlink(missing_ok=True)
            return len(stale)
        finally:
            os.close(fd)
