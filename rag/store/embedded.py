"""The embedded store: one directory, one SQLite database as the source of truth, two derived search structures.

    index/
      manifest.json        format version, embedder identity, chunker settings (mirror of the copy in SQLite)
      meta.sqlite          documents, chunks (text, offsets, tokens, vector), state (generation, manifest)
      dense-*.faiss, lexical-*/, structures.lock, build.lock   search structures per generation
                           (rag/store/generations.py)
      writer.lock          flock held by the one writer

By concern: rag/store/database.py (rows and transactions), rag/store/generations.py (FAISS and BM25 structures of
each generation, built, published and loaded crash-safely), rag/store/manifest.py (identity). This module ties them
into the `Store` interface (rag/store/base.py).

Several processes (server workers, `rag ingest` beside a server) share one index. Within a process, a generation's
rows and structures form one immutable `Snapshot`: the next one is loaded or built without any lock that searches
take, and swapped in whole, so searches keep answering from the previous generation meanwhile and never mix the rows
of one with the structures of another.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Self

import numpy as np

from ..errors import IndexLockedError, NotFoundError, RagError
from ..private_files import private_dir
from ..records import ChunkRecord, DocumentRecord, NewChunk, SearchFilter
from ..settings import DenseIndexSettings
from . import database
from .generations import Snapshot, load_snapshot
from .manifest import stored_manifest, write_manifest_file

log = logging.getLogger("rag.store")
LOCK_POLL_S = 0.1  # how often a waiting writer tries the lock again


def _serialised(method):
    """Run under the store's lock: threads of one process (the HTTP server's) share one SQLite connection, so a
    reader must not run inside a writer's open transaction."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class IndexStore:
    """The embedded `Store` (rag/store/base.py). Open with `IndexStore.open(dir, manifest)`; writers use
    `with store.writer() as w: w.commit(...)`; searches use `store.search(...)`."""

    def __init__(
        self,
        directory: Path,
        db: sqlite3.Connection,
        manifest: dict,
        dense: DenseIndexSettings | None = None,
        *,
        lock_wait_s: float = 0.0,
    ):
        self.directory = directory
        self.db = db
        self.manifest = manifest
        self.dense_settings = dense or DenseIndexSettings()
        self.lock_wait_s = lock_wait_s
        self._lock_handle: IO[str] | None = None
        self.lock = threading.RLock()  # see _serialised
        self._refreshing = threading.Lock()  # held by the one thread loading or building the next Snapshot
        self._current: Snapshot | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        directory: str | Path,
        manifest: dict,
        *,
        check: bool = True,
        dense: DenseIndexSettings | None = None,
        lock_wait_s: float = 0.0,
    ) -> IndexStore:
        """Open or create the index; refuse one built with a different embedder or chunker (IndexMismatchError).
        `dense` chooses the FAISS structure, which is not part of the manifest: the same vectors serve any of them.
        `lock_wait_s`: how long `writer()` waits for another process's writer lock (store.lock_wait_s) before
        IndexLockedError; 0 fails at once."""
        directory = private_dir(Path(directory))  # document text: the owner's only (rag/private_files.py)
        db = database.connect(directory)
        try:
            stored = stored_manifest(db, directory, manifest, check=check)
        except BaseException:
            db.close()
            raise
        return cls(directory, db, stored, dense, lock_wait_s=lock_wait_s)

    @property
    @_serialised
    def generation(self) -> int:
        """The last committed generation."""
        return database.generation(self.db)

    # ---------------------------------------------------------------- writing
    def writer(self) -> _Writer:
        """The one writer of this index (a context manager); IndexLockedError when another writer still holds the
        lock after `lock_wait_s` seconds."""
        self._check_open()
        return _Writer(self)

    def _acquire_lock(self) -> None:
        handle = open(self.directory / "writer.lock", "a+")  # noqa: SIM115 - held until _release_lock
        try:
            self._wait_for_lock(handle)
        except BaseException:  # the deadline, or Ctrl-C while waiting
            handle.close()
            raise
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def _wait_for_lock(self, handle: IO[str]) -> None:
        """Take the exclusive flock on `handle`, trying every LOCK_POLL_S until `lock_wait_s` has passed."""
        deadline = time.monotonic() + self.lock_wait_s
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
            if time.monotonic() >= deadline:
                waited = f" for {self.lock_wait_s:g} s" if self.lock_wait_s else ""
                raise IndexLockedError(
                    f"index {self.directory} is locked by another writer (pid {holder}){waited}; wait for it to "
                    "finish (store.lock_wait_s sets how long a writer waits)"
                )
            if not waiting:
                waiting = True
                log.warning(
                    "index %s is locked by another writer (pid %s); waiting up to %g s",
                    self.directory,
                    holder,
                    self.lock_wait_s,
                )
            time.sleep(LOCK_POLL_S)

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # ---------------------------------------------------------------- reading metadata
    @_serialised
    def documents(self, search_filter: SearchFilter | None = None) -> list[DocumentRecord]:
        """Every stored document the filter admits, by id."""
        return [d for d in database.documents(self.db) if search_filter is None or search_filter.admits(d)]

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        """One document; one the filter hides is reported exactly like one that does not exist (NotFoundError)."""
        docs = [d for d in self.documents(search_filter) if d.doc_id == doc_id]
        if not docs:
            raise NotFoundError(f"no document with id {doc_id!r}; `rag docs` lists the ids")
        return docs[0]

    @_serialised
    def document_sha(self, doc_id: str, source: str) -> tuple[str, tuple[str, ...]] | None:
        """(sha256, labels) of the stored document `doc_id` from `source`, None when there is none.

        Raises DocumentConflictError when the id belongs to a document from another source."""
        row = self.db.execute("SELECT sha256, labels, source FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        database.check_source(doc_id, source, row[2])
        return row[0], tuple(json.loads(row[1]))

    @_serialised
    def same_bytes(self, sha256: str, labels: tuple[str, ...]) -> str | None:
        """The id of the first-ingested stored document with these file bytes (sha256) and labels, or None."""
        row = self.db.execute(
            "SELECT doc_id FROM documents WHERE sha256 = ? AND labels = ? ORDER BY ingested_at, doc_id LIMIT 1",
            (sha256, json.dumps(list(labels))),
        ).fetchone()
        return row[0] if row else None

    @_serialised
    def document_text(self, doc_id: str) -> tuple[str, list[dict]]:
        """The document's extracted text and its blocks; NotFoundError when absent."""
        row = self.db.execute("SELECT text, blocks FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {doc_id!r}")
        return row[0], json.loads(row[1])

    @_serialised
    def cached_vectors(self, doc_id: str) -> dict[str, np.ndarray]:
        """Vectors of a document's current chunks by content hash: unchanged passages are not embedded again."""
        rows = self.db.execute("SELECT content_hash, vector FROM chunks WHERE doc_id = ?", (doc_id,))
        return {h: database.vector(v) for h, v in rows}

    @_serialised
    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        """The stored chunks among `ids`, by id (deleted ones are absent)."""
        return database.chunks(self.db, [int(i) for i in ids])

    def stats(self) -> dict:
        """Figures of the committed generation (loaded first); chunks, vectors and BM25 rows all count its rows."""
        self.refresh()
        snapshot = self.current()
        return {
            "directory": str(self.directory),
            "generation": snapshot.generation,
            "documents": len(snapshot.docs),
            "chunks": len(snapshot.row_ids),
            "vectors": snapshot.dense.size,
            "bm25_rows": snapshot.lexical.size,
            "dense_index": snapshot.dense.describe(),
            "last_refresh_s": snapshot.seconds,
            "languages": dict(sorted(Counter(d.lang for d in snapshot.docs).items())),
            "bytes_on_disk": sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file()),
            "manifest": self.manifest,
        }

    # ---------------------------------------------------------------- searching
    def search(
        self,
        *,
        vector: np.ndarray | None,
        tokens: Sequence[str],
        depth: int,
        search_filter: SearchFilter | None = None,
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(dense, lexical) from one generation's `Snapshot` (see `Store.search`): a commit meanwhile cannot swap
        the rows between the filter's mask being built and being applied."""
        return self.current().search(vector, tokens, depth, search_filter)

    def current(self) -> Snapshot:
        """The generation to search. When a newer one has been committed, it is loaded in a background thread and
        this one answers until it is ready; only the first call, with nothing loaded yet, waits."""
        self._check_open()
        if self._current is None:
            self.refresh()
        elif not self._is_current() and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_in_background, name="rag-refresh", daemon=True).start()
        assert self._current is not None
        return self._current

    def refresh(self) -> None:
        """Load the committed generation, after any refresh another thread is running. Its structures are the
        published files when they load and match its rows, else built from SQLite and published."""
        self._check_open()
        with self._refreshing:
            self._swap()

    def _refresh_in_background(self) -> None:
        """Thread body started by `current`, which acquired `_refreshing` for it."""
        try:
            self._swap()
        except Exception:  # the previous generation keeps answering; the next search tries again
            log.exception("cannot load the search structures of %s; searches keep the previous ones", self.directory)
        finally:
            self._refreshing.release()

    def _swap(self) -> None:
        if not self._is_current():  # one reference swap: searches see the old or the new Snapshot whole
            self._current = load_snapshot(self.directory, int(self.manifest["embedder"]["dim"]), self.dense_settings)

    def _is_current(self) -> bool:
        return self._current is not None and self._current.generation == self.generation

    @property
    def refresh_seconds(self) -> dict[str, float]:
        """What loading or building the current generation took, by step (`rows`, `dense_load`/`dense_build`,
        `lexical_load`/`lexical_build`, `persist`)."""
        return self._current.seconds if self._current is not None else {}

    def close(self) -> None:
        """Release the writer lock and the connection, after a background refresh has finished publishing."""
        with self._refreshing:
            self._closed = True
            self._release_lock()
            self.db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RagError(f"the index {self.directory} was closed; open it again")


class _Writer:
    """Holds the writer lock; each `commit` is one atomic transaction and one new generation."""

    def __init__(self, store: IndexStore):
        self.store = store

    def __enter__(self) -> Self:
        self.store._acquire_lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.store._release_lock()  # the structures are built after it: the next writer need not wait for them
        if exc[0] is None:
            self.store.refresh()

    def commit(
        self,
        puts: Iterable[tuple[dict, list[NewChunk]]] = (),
        deletes: Iterable[str] = (),
        manifest: dict | None = None,
    ) -> int:
        """Replace/add documents (`puts`: document row as dict, its chunks), delete others and optionally swap the
        manifest (reindex), all in one transaction; returns the new generation.

        Raises DocumentConflictError, storing nothing, when a put's id belongs to a stored document from another
        source: a document is replaced only by one from the same source."""
        with self.store.lock:
            generation = database.commit(self.store.db, puts, deletes, manifest)
        if manifest is not None:
            self.store.manifest = manifest
            write_manifest_file(self.store.directory, manifest)
        return generation
