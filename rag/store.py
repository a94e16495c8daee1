"""The on-disk index: one directory, one SQLite database as the source of truth, two derived search structures.

    index/
      manifest.json        format version, embedder identity, chunker settings (mirror of the copy in SQLite)
      meta.sqlite          documents, chunks (text, offsets, tokens, vector), state (generation, manifest)
      dense-<gen>-<structure>.faiss   FAISS structure over generation <gen>'s vectors, ids = chunk ids; <structure>
                           names its type and build parameters (flat, ivf-2000, hnsw-m32-efc64: rag/dense.py)
      lexical-<gen>/       BM25 matrix of generation <gen>
      writer.lock          flock held by the one writer

Why it is crash-safe: every change is one SQLite transaction that also bumps the generation number. The FAISS and
BM25 files carry the generation they were built from in their names and are written to a temporary name and then
renamed. A reader that finds no files for the current generation rebuilds them from SQLite, so a process killed at any
point leaves either the previous or the next committed state, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .dense import DenseIndex, describe
from .errors import IndexCorruptError, IndexLockedError, IndexMismatchError, NotFoundError
from .lexical import LexicalIndex, top_k
from .private_files import private_dir, touch_private
from .settings import DenseIndexSettings

FORMAT = "sovereign-rag-index/1"
_MASKS_KEPT = 32  # filters whose row masks are kept (1 MB each at a million chunks)

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
    """Run under the store's lock. Threads of one process (the HTTP server's) share one SQLite connection, so a reader
    must not run inside a writer's open transaction, and a search must see one generation's rows, mask and
    structures, which `refresh` swaps as a whole."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class IndexStore:
    """Open with `IndexStore.open(dir, manifest)`; writers use `with store.writer(): ...`."""

    def __init__(
        self, directory: Path, db: sqlite3.Connection, manifest: dict, dense: DenseIndexSettings | None = None
    ):
        self.directory = directory
        self.db = db
        self.manifest = manifest
        self.dense_settings = dense or DenseIndexSettings()
        self._lock_handle = None
        self.lock = threading.RLock()  # see _serialised
        self._loaded_generation = -1
        self._dense: DenseIndex | None = None
        self._lexical: LexicalIndex | None = None
        self.refresh_seconds: dict[str, float] = {}  # what the last refresh spent, by step
        self._row_ids = np.zeros(0, dtype=np.int64)  # chunk id of each BM25 row
        self._row_doc = np.zeros(0, dtype=np.int32)  # index into self._docs of each row
        self._docs: list[DocumentRecord] = []
        self._masks: dict[SearchFilter, np.ndarray] = {}  # allowed_rows per filter, this generation

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
        rows = self.db.execute(
            "SELECT d.doc_id, source, title, format, d.lang, sha256, labels, pages, chars, ingested_at, "
            "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) FROM documents d ORDER BY d.doc_id"
        ).fetchall()
        docs = [_document(row) for row in rows]
        return [d for d in docs if search_filter is None or search_filter.admits(d)]

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        """One document; one the filter hides is reported exactly like one that does not exist."""
        docs = [d for d in self.documents(search_filter) if d.doc_id == doc_id]
        if not docs:
            raise NotFoundError(f"no document with id {doc_id!r}; `rag docs` lists the ids")
        return docs[0]

    @_serialised
    def document_sha(self, doc_id: str) -> tuple[str, tuple[str, ...]] | None:
        row = self.db.execute("SELECT sha256, labels FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return None if row is None else (row[0], tuple(json.loads(row[1])))

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

    @_serialised
    def stats(self) -> dict:
        self.refresh()
        docs, chunks = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)"
        ).fetchone()
        langs = dict(self.db.execute("SELECT lang, COUNT(*) FROM documents GROUP BY lang").fetchall())
        size = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
        return {
            "directory": str(self.directory),
            "generation": self.generation,
            "documents": docs,
            "chunks": chunks,
            "vectors": self._dense.size if self._dense is not None else 0,
            "bm25_rows": self._lexical.size if self._lexical is not None else 0,
            "dense_index": self._dense.describe() if self._dense is not None else None,
            "last_refresh_s": self.refresh_seconds,
            "languages": langs,
            "bytes_on_disk": size,
            "manifest": self.manifest,
        }

    # ---------------------------------------------------------------- searching
    @_serialised
    def refresh(self) -> None:
        """Load the search structures of the current generation, building the missing ones from SQLite."""
        if self.generation == self._loaded_generation:
            return
        self.db.execute("BEGIN")  # one snapshot: rows and structures of one generation, whatever others commit
        try:
            self._load_generation(self.generation)
        finally:
            self.db.execute("COMMIT")

    def _load_generation(self, generation: int) -> None:
        timer = _Timer()
        with timer("rows"):
            self._load_rows()
        name = describe(self.dense_settings, len(self._row_ids))
        dense_path = self.directory / f"dense-{generation}-{name}.faiss"
        lexical_path = self.directory / f"lexical-{generation}"
        with timer("dense_load" if dense_path.is_file() else "dense_build"):
            if dense_path.is_file():
                self._dense = DenseIndex.load(dense_path, self.dense_settings, name)
            else:
                self._dense = self._build_dense(name)
        with timer("lexical_load" if (lexical_path / "lexical.json").is_file() else "lexical_build"):
            if (lexical_path / "lexical.json").is_file():
                self._lexical = LexicalIndex.load(lexical_path)
            else:
                self._lexical = LexicalIndex.build(tokens for (tokens,) in self._stored("tokens"))
        if self._dense.size != len(self._row_ids) or self._lexical.size != len(self._row_ids):
            raise IndexCorruptError(
                f"index {self.directory}: {len(self._row_ids)} chunks but {self._dense.size} vectors and "
                f"{self._lexical.size} BM25 rows; delete dense-*/lexical-* files to rebuild them"
            )
        with timer("persist"):
            self._persist_structures(generation, dense_path, lexical_path)
        self.refresh_seconds = timer.seconds
        self._loaded_generation = generation

    def _load_rows(self) -> None:
        """Row order is chunk id order; ids come from the covering index by document (a million rows: 1-2 s, against
        5-6 s for a scan of the table, whose rows carry text and vectors), in the documents' order."""
        self._masks = {}
        self._docs = self.documents()
        ids = np.fromiter(
            (i for i, in self.db.execute("SELECT id FROM chunks INDEXED BY chunks_by_doc ORDER BY doc_id")), np.int64
        )
        doc = np.repeat(np.arange(len(self._docs), dtype=np.int32), [d.chunks for d in self._docs])
        order = np.argsort(ids)
        self._row_ids, self._row_doc = ids[order], doc[order]

    def _stored(self, columns: str) -> Iterable[tuple]:
        """Every chunk's `columns`, in row (id) order."""
        return self.db.execute(f"SELECT {columns} FROM chunks ORDER BY id")

    def _build_dense(self, name: str) -> DenseIndex:
        count = len(self._row_ids)
        dense = DenseIndex.create(int(self.manifest["embedder"]["dim"]), count, self.dense_settings)
        if dense.training_rows:  # IVF: cluster an evenly spread sample first
            every = max(1, count // dense.training_rows)
            sample = itertools.islice(self._stored("vector"), 0, None, every)
            dense.train(np.vstack([_vector(v) for v, in sample][: dense.training_rows]))
        rows = self._stored("id, vector")
        while batch := rows.fetchmany(65536):
            dense.add(np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch)),
                      np.vstack([_vector(r[1]) for r in batch]))
        return dense

    def _persist_structures(self, generation: int, dense_path: Path, lexical_path: Path) -> None:
        """Best effort: a reader that cannot write (read-only volume) keeps them in memory only."""
        try:
            if not dense_path.is_file():
                self._dense.save(dense_path)
            if not lexical_path.exists():
                self._lexical.save(lexical_path)
        except OSError:
            return
        self._remove_stale_structures(dense_path, lexical_path)

    def _remove_stale_structures(self, dense_path: Path, lexical_path: Path) -> None:
        for path in self.directory.glob("dense-*"):
            if path != dense_path:
                path.unlink(missing_ok=True)
        for path in self.directory.glob("lexical-*"):
            if path != lexical_path:
                shutil.rmtree(path, ignore_errors=True)

    @_serialised
    def allowed_rows(self, search_filter: SearchFilter | None) -> np.ndarray | None:
        """Boolean mask over the current generation's rows (read-only), or None when nothing is filtered.

        Kept per filter until the next generation: callers hold few distinct filters (one per API key's labels),
        and judging every document in Python took 11 ms per search at 31k documents (docs/benchmarks.md)."""
        if search_filter is None or search_filter == SearchFilter():
            return None
        self.refresh()
        mask = self._masks.get(search_filter)
        if mask is None:
            admitted = np.fromiter((search_filter.admits(d) for d in self._docs), dtype=bool, count=len(self._docs))
            mask = admitted[self._row_doc] if len(self._row_doc) else np.zeros(0, dtype=bool)
            mask.flags.writeable = False
            if len(self._masks) >= _MASKS_KEPT:
                self._masks.pop(next(iter(self._masks)))
            self._masks[search_filter] = mask
        return mask

    @_serialised
    def dense_search(self, vector: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        self.refresh()
        return self._dense.search(vector, k, mask)

    @_serialised
    def lexical_search(self, tokens: list[str], k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        self.refresh()
        scores = self._lexical.scores(tokens, mask)
        if not len(scores):
            return []
        return [(int(self._row_ids[i]), float(scores[i])) for i in top_k(scores, k) if scores[i] > 0]

    def close(self) -> None:
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
        try:
            if exc[0] is None:
                self.store.refresh()  # write the structures for the final generation
        finally:
            self.store._release_lock()

    def commit(
        self, puts: Iterable[tuple[dict, list[NewChunk]]] = (), deletes: Iterable[str] = (), manifest: dict | None = None
    ) -> int:
        """Replace/add documents (`puts`: document row as dict, its chunks), delete others and optionally swap the
        manifest (reindex), all in one transaction."""
        with self.store.lock:
            return self._commit(puts, deletes, manifest)

    def _commit(self, puts, deletes, manifest) -> int:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for doc_id in deletes:
                db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            for doc, chunks in puts:
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
            generation = self.store.generation + 1
            _write_state(db, "generation", str(generation))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if manifest is not None:
            self.store.manifest = manifest
            _write_manifest_file(self.store.directory, manifest)
        return generation


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
