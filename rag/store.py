"""The on-disk index: one directory, one SQLite database as the source of truth, two derived search structures.

    index/
      manifest.json        format version, embedder identity, chunker settings (mirror of the copy in SQLite)
      meta.sqlite          documents, chunks (text, offsets, tokens, vector), state (generation, manifest)
      dense-<gen>-<structure>.faiss   FAISS structure over generation <gen>'s vectors, ids = chunk ids; <structure>
                           names its type and build parameters (flat, ivf-2000, hnsw-m32-efc64: rag/dense.py)
      lexical-<gen>/       BM25 matrix of generation <gen>
      writer.lock          flock held by the one writer
      structures.lock      flock: shared while a process loads search structures, exclusive while one publishes or
                           removes them; distinct from the writer lock, so a writer never waits for either
      build.lock           flock held while a process builds and publishes a generation's structures, so that the
                           others load them rather than build them again

Why it is crash-safe: every change is one SQLite transaction that also bumps the generation number. The FAISS and
BM25 files carry the generation they were built from in their names and are written under a temporary name of the
writing process (pid and a random suffix), fsynced, then renamed. A reader that finds no usable files for the
committed generation (missing, truncated, or not matching its rows) rebuilds them from SQLite, so a process killed at
any point leaves either the previous or the next committed state, never a mix.

Several processes (server workers, `rag ingest` beside a server) share one index: each builds the structures of a
generation from its own read transaction (one process at a time, under `build.lock`; the others then load its
files), publishes them under `structures.lock` unless a newer generation is already there, and removes only
structures of older generations and temporary files of processes that have ended.
Within a process, a generation's rows and structures form one immutable `Snapshot`: the next one is loaded or built
without any lock that searches take, and swapped in whole, so searches keep answering from the previous generation
meanwhile and never mix the rows of one with the structures of another.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from . import __version__
from .dense import DenseIndex, describe
from .errors import DocumentConflictError, IndexLockedError, IndexMismatchError, NotFoundError
from .files import fsync
from .lexical import LexicalIndex, top_k
from .private_files import private_dir, touch_private
from .settings import DenseIndexSettings

FORMAT = "sovereign-rag-index/2"  # 2: document ids carry 128 bits of sha256 (rag/load.py); 1: 32 bits of sha1
_MASKS_KEPT = 32  # filters whose row masks are kept (1 MB each at a million chunks)
_DENSE_FILE = re.compile(r"dense-(\d+)-(.+)\.faiss")
_LEXICAL_DIR = re.compile(r"lexical-(\d+)")
_TEMPORARY = re.compile(r".+\.tmp-(\d+)-[0-9a-f]+")  # see _temporary

log = logging.getLogger("rag.store")
_Structure = TypeVar("_Structure", DenseIndex, LexicalIndex)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, title TEXT NOT NULL, format TEXT NOT NULL, lang TEXT NOT NULL,
    sha256 TEXT NOT NULL, labels TEXT NOT NULL, pages INTEGER, chars INTEGER NOT NULL, ingested_at REAL NOT NULL,
    text TEXT NOT NULL, blocks TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, page INTEGER, heading TEXT NOT NULL,
    lang TEXT NOT NULL, content_hash TEXT NOT NULL, text TEXT NOT NULL, tokens TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    source: str
    title: str
    format: str
    lang: str
    sha256: str
    labels: tuple[str, ...]
    pages: int | None
    chars: int
    ingested_at: float
    chunks: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "labels": list(self.labels)}


@dataclass(frozen=True)
class _Passage:
    """Where a chunk sits in its document and what it says; shared by stored and to-be-stored chunks."""

    ordinal: int
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...]
    lang: str
    content_hash: str
    text: str


@dataclass(frozen=True)
class ChunkRecord(_Passage):
    id: int
    doc_id: str
    title: str
    source: str


@dataclass(frozen=True)
class NewChunk(_Passage):
    """What a writer stores per chunk: the passage, its lexical tokens and its unit vector."""

    tokens: list[str]
    vector: np.ndarray


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions applied inside both searches; `labels` is what the caller holds (None: no restriction)."""

    doc_ids: frozenset[str] | None = None
    langs: frozenset[str] | None = None
    labels: frozenset[str] | None = None

    def admits(self, doc: DocumentRecord) -> bool:
        return (
            (self.doc_ids is None or doc.doc_id in self.doc_ids)
            and (self.langs is None or doc.lang in self.langs)
            and (self.labels is None or set(doc.labels) <= self.labels)
        )


def _serialised(method):
    """Run under the store's lock: threads of one process (the HTTP server's) share one SQLite connection, so a
    reader must not run inside a writer's open transaction."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class Snapshot:
    """One generation's rows and search structures, never changed once built: whoever holds it searches one
    generation's rows, masks and structures, whatever other threads or processes commit or load meanwhile.

    Row i is the i-th chunk in id order: `row_ids[i]` its chunk id, `row_doc[i]` its document's index in `docs`."""

    def __init__(self, *, generation: int, docs: list[DocumentRecord], row_ids: np.ndarray, row_doc: np.ndarray,
                 dense: DenseIndex, lexical: LexicalIndex, seconds: dict[str, float]):
        self.generation = generation
        self.docs = docs
        self.row_ids = row_ids
        self.row_doc = row_doc
        self.dense = dense
        self.lexical = lexical
        self.seconds = seconds  # what loading or building it took, by step
        self._lock = threading.Lock()  # the structures and the mask cache serve one thread at a time
        self._masks: dict[SearchFilter, np.ndarray] = {}

    def allowed_rows(self, search_filter: SearchFilter | None) -> np.ndarray | None:
        """Boolean mask over the rows (read-only), or None when nothing is filtered.

        Kept per filter: callers hold few distinct filters (one per API key's labels), and judging every document
        in Python took 11 ms per search at 31k documents (docs/benchmarks.md)."""
        if search_filter is None or search_filter == SearchFilter():
            return None
        with self._lock:
            mask = self._masks.get(search_filter)
            if mask is None:
                admitted = np.fromiter((search_filter.admits(d) for d in self.docs), dtype=bool, count=len(self.docs))
                mask = admitted[self.row_doc] if len(self.row_doc) else np.zeros(0, dtype=bool)
                mask.flags.writeable = False
                if len(self._masks) >= _MASKS_KEPT:
                    self._masks.pop(next(iter(self._masks)))
                self._masks[search_filter] = mask
        return mask

    def dense_search(self, vector: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the k nearest admitted rows, best first."""
        with self._lock:
            return self.dense.search(vector, k, mask)

    def lexical_search(self, tokens: list[str], k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the k best admitted rows sharing a term with `tokens`, best first."""
        with self._lock:
            scores = self.lexical.scores(tokens, mask)
        if not len(scores):
            return []
        return [(int(self.row_ids[i]), float(scores[i])) for i in top_k(scores, k) if scores[i] > 0]


class IndexStore:
    """Open with `IndexStore.open(dir, manifest)`; writers use `with store.writer(): ...`; searches use
    `store.current()`."""

    def __init__(
        self, directory: Path, db: sqlite3.Connection, manifest: dict, dense: DenseIndexSettings | None = None
    ):
        self.directory = directory
        self.db = db
        self.manifest = manifest
        self.dense_settings = dense or DenseIndexSettings()
        self._lock_handle = None
        self.lock = threading.RLock()  # see _serialised
        self._refreshing = threading.Lock()  # held by the one thread loading or building the next Snapshot
        self._current: Snapshot | None = None

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, directory: str | Path, manifest: dict, *, check: bool = True, dense: DenseIndexSettings | None = None
    ) -> IndexStore:
        """Open or create the index; refuse one built with a different embedder or chunker. `dense` chooses the
        FAISS structure, which is not part of the manifest: the same vectors serve any of them."""
        directory = private_dir(Path(directory))  # document text: the owner's only (rag/private_files.py)
        db = sqlite3.connect(touch_private(directory / "meta.sqlite"), timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        stored = _read_state(db, "manifest")
        if stored is None:
            _write_initial_manifest(db, directory, manifest)
            stored = manifest
        else:
            stored = json.loads(stored)
            if check:
                _check_manifest(directory, stored, manifest)
        return cls(directory, db, stored, dense)

    @property
    @_serialised
    def generation(self) -> int:
        """The last committed generation."""
        return int(_read_state(self.db, "generation") or 0)

    # ---------------------------------------------------------------- writing
    def writer(self) -> _Writer:
        return _Writer(self)

    def _acquire_lock(self) -> None:
        handle = open(self.directory / "writer.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise IndexLockedError(
                f"index {self.directory} is locked by another writer (pid {holder}); wait for it to finish"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # ---------------------------------------------------------------- reading metadata
    @_serialised
    def documents(self, search_filter: SearchFilter | None = None) -> list[DocumentRecord]:
        return [d for d in _documents(self.db) if search_filter is None or search_filter.admits(d)]

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        """One document; one the filter hides is reported exactly like one that does not exist."""
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
        _check_source(doc_id, source, row[2])
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
        row = self.db.execute("SELECT text, blocks FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {doc_id!r}")
        return row[0], json.loads(row[1])

    @_serialised
    def cached_vectors(self, doc_id: str) -> dict[str, np.ndarray]:
        """Vectors of a document's current chunks by content hash: unchanged passages are not embedded again."""
        rows = self.db.execute("SELECT content_hash, vector FROM chunks WHERE doc_id = ?", (doc_id,))
        return {h: np.frombuffer(v, dtype=np.float32) for h, v in rows}

    @_serialised
    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        if not len(ids):
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT c.id, c.doc_id, ordinal, start, \"end\", page, heading, c.lang, content_hash, c.text, d.title, "
            f"d.source FROM chunks c JOIN documents d USING (doc_id) WHERE c.id IN ({marks})",
            [int(i) for i in ids],
        )
        return {row[0]: _chunk(row) for row in rows}

    def stats(self) -> dict:
        """Figures of the committed generation (loaded first); chunks, vectors and BM25 rows all count its rows."""
        self.refresh()
        snapshot = self._current
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
    def current(self) -> Snapshot:
        """The generation to search. When a newer one has been committed, it is loaded in a background thread and
        this one answers until it is ready; only the first call, with nothing loaded yet, waits."""
        if self._current is None:
            self.refresh()
        elif not self._is_current() and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_in_background, name="rag-refresh", daemon=True).start()
        return self._current

    def refresh(self) -> None:
        """Load the committed generation, after any refresh another thread is running. Its structures are the
        published files when they load and match its rows, else built from SQLite and published (`_load`)."""
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
        if not self._is_current():
            self._current = self._load()  # one reference swap: searches see the old or the new Snapshot whole

    def _is_current(self) -> bool:
        return self._current is not None and self._current.generation == self.generation

    @property
    def refresh_seconds(self) -> dict[str, float]:
        """What loading or building the current generation took, by step (`rows`, `dense_load`/`dense_build`,
        `lexical_load`/`lexical_build`, `persist`)."""
        return self._current.seconds if self._current is not None else {}

    def _load(self) -> Snapshot:
        """The committed generation, read in one transaction of a private connection (the shared one stays free
        for the other threads), so its rows, vectors and tokens are one generation's whatever others commit.

        Its structures come from the published files when they load and fit the rows. Otherwise they are built
        under `build.lock`, so that one process builds a generation while the others wait for it and then load
        what it published (looking again once they hold the lock)."""
        timer = _Timer()
        db = sqlite3.connect(self.directory / "meta.sqlite", timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN")
            generation = int(_read_state(db, "generation") or 0)
            with timer("rows"):
                docs, row_ids, row_doc = _rows(db)
            name = describe(self.dense_settings, len(row_ids))
            dense_path = self.directory / f"dense-{generation}-{name}.faiss"
            lexical_path = self.directory / f"lexical-{generation}"

            def published(dense: DenseIndex | None, lexical: LexicalIndex | None):
                """Whichever of the two is still None, from its file; no file disappears while it is read."""
                with _flock(self.directory / "structures.lock", fcntl.LOCK_SH):
                    if dense is None:
                        dense = _published(timer, "dense_load", dense_path,
                                           lambda: DenseIndex.load(dense_path, self.dense_settings, name),
                                           lambda d: np.array_equal(d.ids, row_ids))
                    if lexical is None:
                        lexical = _published(timer, "lexical_load", lexical_path,
                                             lambda: LexicalIndex.load(lexical_path), lambda b: b.size == len(row_ids))
                return dense, lexical

            dense, lexical = published(None, None)
            missing = dense is None or lexical is None
            with _flock(self.directory / "build.lock", fcntl.LOCK_EX) if missing else contextlib.nullcontext():
                dense, lexical = published(dense, lexical)
                built: dict[Path, DenseIndex | LexicalIndex] = {}
                if dense is None:
                    with timer("dense_build"):
                        dense = built[dense_path] = self._build_dense(db, len(row_ids))
                if lexical is None:
                    with timer("lexical_build"):
                        lexical = built[lexical_path] = LexicalIndex.build(t for (t,) in _stored(db, "tokens"))
                with timer("persist"):
                    _publish(self.directory, generation, dense_path, built)
        finally:
            db.close()  # ends the read transaction
        return Snapshot(generation=generation, docs=docs, row_ids=row_ids, row_doc=row_doc, dense=dense,
                        lexical=lexical, seconds=timer.seconds)

    def _build_dense(self, db: sqlite3.Connection, count: int) -> DenseIndex:
        dense = DenseIndex.create(int(self.manifest["embedder"]["dim"]), count, self.dense_settings)
        if dense.training_rows:  # IVF: cluster an evenly spread sample first
            every = max(1, count // dense.training_rows)
            sample = itertools.islice(_stored(db, "vector"), 0, None, every)
            dense.train(np.vstack([_vector(v) for v, in sample][: dense.training_rows]))
        rows = _stored(db, "id, vector")
        while batch := rows.fetchmany(65536):
            dense.add(np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch)),
                      np.vstack([_vector(r[1]) for r in batch]))
        return dense

    def search(self, *, vector: np.ndarray | None, tokens: Sequence[str], depth: int,
               search_filter: SearchFilter | None = None) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(dense, lexical) (chunk id, score) lists of one Snapshot, filtered inside each search (store Protocol)."""
        snapshot = self.current()
        mask = snapshot.allowed_rows(search_filter)
        dense = snapshot.dense_search(vector, depth, mask) if vector is not None else []
        return dense, snapshot.lexical_search(list(tokens), depth, mask) if tokens else []

    def allowed_rows(self, search_filter: SearchFilter | None) -> np.ndarray | None:
        """`Snapshot.allowed_rows` of the current generation; callers combining a mask with searches use one
        `current()` Snapshot for all of them."""
        return self.current().allowed_rows(search_filter)

    def dense_search(self, vector: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        return self.current().dense_search(vector, k, mask)

    def lexical_search(self, tokens: list[str], k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        return self.current().lexical_search(tokens, k, mask)

    def close(self) -> None:
        """Release the writer lock and the connection, after a background refresh has finished publishing."""
        with self._refreshing:
            self._release_lock()
            self.db.close()


class _Writer:
    """Holds the writer lock; each `commit` is one atomic transaction and one new generation."""

    def __init__(self, store: IndexStore):
        self.store = store
        self.db = store.db

    def __enter__(self) -> _Writer:
        self.store._acquire_lock()
        return self

    def __exit__(self, *exc) -> None:
        self.store._release_lock()  # the structures are built after it: the next writer need not wait for them
        if exc[0] is None:
            self.store.refresh()

    def commit(
        self, puts: Iterable[tuple[dict, list[NewChunk]]] = (), deletes: Iterable[str] = (), manifest: dict | None = None
    ) -> int:
        """Replace/add documents (`puts`: document row as dict, its chunks), delete others and optionally swap the
        manifest (reindex), all in one transaction; returns the new generation.

        Raises DocumentConflictError, storing nothing, when a put's id belongs to a stored document from another
        source: a document is replaced only by one from the same source."""
        with self.store.lock:
            return self._commit(puts, deletes, manifest)

    def _commit(self, puts, deletes, manifest) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for doc_id in deletes:
                db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            for doc, chunks in puts:
                stored = db.execute("SELECT source FROM documents WHERE doc_id = ?", (doc["doc_id"],)).fetchone()
                if stored is not None:
                    _check_source(doc["doc_id"], doc["source"], stored[0])
                    db.execute("DELETE FROM documents WHERE doc_id = ?", (doc["doc_id"],))
                db.execute(
                    "INSERT INTO documents VALUES (:doc_id, :source, :title, :format, :lang, :sha256, :labels, "
                    ":pages, :chars, :ingested_at, :text, :blocks)",
                    {**doc, "labels": json.dumps(list(doc["labels"])), "ingested_at": time.time()},
                )
                db.executemany(
                    "INSERT INTO chunks (doc_id, ordinal, start, \"end\", page, heading, lang, content_hash, text, "
                    "tokens, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (doc["doc_id"], c.ordinal, c.start, c.end, c.page, json.dumps(list(c.heading_path)),
                         c.lang, c.content_hash, c.text, " ".join(c.tokens),
                         np.ascontiguousarray(c.vector, dtype=np.float32).tobytes())
                        for c in chunks
                    ],
                )
            if manifest is not None:
                _write_state(db, "manifest", json.dumps(manifest))
            generation = int(_read_state(db, "generation") or 0) + 1
            _write_state(db, "generation", str(generation))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if manifest is not None:
            self.store.manifest = manifest
            _write_manifest_file(self.store.directory, manifest)
        return generation


def _check_source(doc_id: str, source: str, stored_source: str) -> None:
    """A put replaces only a document from the same source. Ids carry 128 bits of hash, so this refuses only a
    crafted or astronomically unlikely collision, and says nothing about the other document."""
    if stored_source != source:
        raise DocumentConflictError(
            f"{source}: its document id {doc_id} belongs to a document from another source, which is left as it "
            "is; rename the file"
        )


# -------------------------------------------------------------------- search structures on disk
def _rows(db: sqlite3.Connection) -> tuple[list[DocumentRecord], np.ndarray, np.ndarray]:
    """Documents, and each row's chunk id and document index, in chunk id order. Ids come from the covering index
    by document (a million rows: 1-2 s, against 5-6 s for a scan of the table, whose rows carry text and vectors),
    in the documents' order."""
    docs = _documents(db)
    ids = np.fromiter((i for i, in db.execute("SELECT id FROM chunks INDEXED BY chunks_by_doc ORDER BY doc_id")),
                      np.int64)
    doc = np.repeat(np.arange(len(docs), dtype=np.int32), [d.chunks for d in docs])
    order = np.argsort(ids)
    return docs, ids[order], doc[order]


def _stored(db: sqlite3.Connection, columns: str) -> sqlite3.Cursor:
    """Every chunk's `columns`, in row (id) order."""
    return db.execute(f"SELECT {columns} FROM chunks ORDER BY id")


def _published(timer: _Timer, step: str, path: Path, load: Callable[[], _Structure],
               fits: Callable[[_Structure], bool]) -> _Structure | None:
    """The structure at `path` if it exists, loads and `fits` the rows; None (rebuild it) otherwise."""
    if not path.exists():
        return None
    with timer(step):
        try:
            structure = load()
        except Exception as exc:  # any failure of FAISS/bm25s/json on a damaged file: SQLite rebuilds it
            log.warning("%s cannot be loaded (%s: %s); rebuilding it from SQLite", path, type(exc).__name__, exc)
            return None
    if not fits(structure):
        log.warning("%s does not match its generation's rows; rebuilding it from SQLite", path)
        return None
    return structure


def _publish(directory: Path, generation: int, dense_path: Path, built: dict[Path, DenseIndex | LexicalIndex]):
    """Make freshly built structures visible to other processes, and remove what no process needs any more.

    Each is saved under a temporary name of this process and fsynced before the structures lock is taken; under
    it, each is renamed into place unless that name exists or a newer generation is published already (stale on
    arrival: dropped). Then structures of older generations go (and another dense structure of this one), never a
    newer one, and temporary files of processes that no longer run. Best effort: a process that cannot write
    (read-only volume, disk full) keeps the structures in memory only."""
    staged: dict[Path, Path] = {}
    try:
        for path, structure in built.items():
            staged[path] = _temporary(path)
            structure.save(staged[path])
        if not staged and not _stale(directory, generation, dense_path):
            return
        with _flock(directory / "structures.lock", fcntl.LOCK_EX):
            if max(_generations(directory), default=-1) <= generation:
                for path, temporary in staged.items():
                    if not path.exists():
                        os.rename(temporary, path)
                fsync(directory)
            for path in _stale(directory, generation, dense_path):
                _remove(path)
    except OSError as exc:
        log.warning("cannot publish the search structures of generation %d in %s: %s", generation, directory, exc)
    finally:
        for temporary in staged.values():
            _remove(temporary)  # those not renamed


def _temporary(path: Path) -> Path:
    """A name no other process or thread writes: `<name>.tmp-<pid>-<random>`."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _generations(directory: Path) -> list[int]:
    """The generations whose structures are published."""
    found = (_DENSE_FILE.fullmatch(p.name) or _LEXICAL_DIR.fullmatch(p.name) for p in directory.iterdir())
    return [int(match.group(1)) for match in found if match]


def _stale(directory: Path, generation: int, dense_path: Path) -> list[Path]:
    """Structures of generations before `generation`, dense structures of `generation` other than `dense_path`
    (built with other parameters), and temporary files of processes that have ended."""
    stale = []
    for path in directory.iterdir():
        if match := _DENSE_FILE.fullmatch(path.name):
            old = int(match.group(1)) < generation or (int(match.group(1)) == generation and path != dense_path)
        elif match := _LEXICAL_DIR.fullmatch(path.name):
            old = int(match.group(1)) < generation
        else:
            match = _TEMPORARY.fullmatch(path.name)
            old = match is not None and not _running(int(match.group(1)))
        if old:
            stale.append(path)
    return stale


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file, or a folder by first renaming it to a temporary name (a crash midway leaves a name that the
    next `_publish` removes, never a half-deleted structure under a published name)."""
    if path.is_dir():
        doomed = path if _TEMPORARY.fullmatch(path.name) else _temporary(path)
        if doomed != path:
            os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _flock(path: Path, mode: int):
    """flock of the file `path` (`fcntl.LOCK_SH` or `LOCK_EX`, waiting for it). Without a writable folder there is
    nobody to exclude: nothing can be published or removed there either."""
    try:
        handle = open(path, "a+")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, mode)
        yield


def _documents(db: sqlite3.Connection) -> list[DocumentRecord]:
    rows = db.execute(
        "SELECT d.doc_id, source, title, format, d.lang, sha256, labels, pages, chars, ingested_at, "
        "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) FROM documents d ORDER BY d.doc_id"
    ).fetchall()
    return [_document(row) for row in rows]


class _Timer:
    """Seconds per named step: `with timer("step"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        started = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - started, 3)


def _vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


def _read_state(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _write_state(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))


def _write_initial_manifest(db: sqlite3.Connection, directory: Path, manifest: dict) -> None:
    db.execute("BEGIN IMMEDIATE")
    if _read_state(db, "manifest") is None:
        _write_state(db, "manifest", json.dumps(manifest))
    db.execute("COMMIT")
    _write_manifest_file(directory, manifest)


def _write_manifest_file(directory: Path, manifest: dict) -> None:
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / "manifest.json")


def _check_manifest(directory: Path, stored: dict, wanted: dict) -> None:
    if stored.get("format") != FORMAT:
        raise IndexMismatchError(
            f"index {directory} has format {stored.get('format')!r}, this version reads {FORMAT!r}; run `rag reindex`"
        )
    for part in ("embedder", "chunking"):
        if stored.get(part) != wanted.get(part):
            raise IndexMismatchError(
                f"index {directory} was built with {part} {_describe(stored.get(part))}, the configuration asks for "
                f"{_describe(wanted.get(part))}; run `rag reindex` to rebuild it with the current settings"
            )


def _describe(part: dict | None) -> str:
    if not part:
        return "(none)"
    return ", ".join(f"{k}={str(v)[:16]}" for k, v in sorted(part.items()))


def new_manifest(embedder: dict, chunking: dict) -> dict:
    return {"format": FORMAT, "project_version": __version__, "embedder": embedder, "chunking": chunking}


def _document(row) -> DocumentRecord:
    return DocumentRecord(
        doc_id=row[0], source=row[1], title=row[2], format=row[3], lang=row[4], sha256=row[5],
        labels=tuple(json.loads(row[6])), pages=row[7], chars=row[8], ingested_at=row[9], chunks=row[10],
    )


def _chunk(row) -> ChunkRecord:
    return ChunkRecord(
        id=row[0], doc_id=row[1], ordinal=row[2], start=row[3], end=row[4], page=row[5],
        heading_path=tuple(json.loads(row[6])), lang=row[7], content_hash=row[8], text=row[9], title=row[10],
        source=row[11],
    )
