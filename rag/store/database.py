"""The embedded store's source of truth: one SQLite database (meta.sqlite) with documents, chunks and state.

Every change is one transaction that also bumps the generation number (`commit`), so a process killed at any point
leaves the previous or the next committed state. Indexes made before `pages_ocr` / `pages_without_text` existed gain
the two columns when opened (`connect`); nothing else changes, so the index format stays the same.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DocumentConflictError
from ..private_files import touch_private
from ..records import ChunkRecord, DocumentRecord, NewChunk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, title TEXT NOT NULL, format TEXT NOT NULL, lang TEXT NOT NULL,
    sha256 TEXT NOT NULL, labels TEXT NOT NULL, pages INTEGER, chars INTEGER NOT NULL, ingested_at REAL NOT NULL,
    text TEXT NOT NULL, blocks TEXT NOT NULL, pages_ocr TEXT NOT NULL DEFAULT '[]',
    pages_without_text TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, page INTEGER, heading TEXT NOT NULL,
    lang TEXT NOT NULL, content_hash TEXT NOT NULL, text TEXT NOT NULL, tokens TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_ADDED_COLUMNS = {  # columns added after the first release of FORMAT 2: (name, declaration)
    "documents": [("pages_ocr", "TEXT NOT NULL DEFAULT '[]'"), ("pages_without_text", "TEXT NOT NULL DEFAULT '[]'")],
}
_DOCUMENT_COLUMNS = (
    "doc_id, source, title, format, lang, sha256, labels, pages, chars, ingested_at, text, blocks, "
    "pages_ocr, pages_without_text"
)


def connect(directory: Path) -> sqlite3.Connection:
    """The shared connection to `directory`/meta.sqlite (created 0600), schema created or migrated.

    Autocommit mode (transactions are explicit), WAL journal, full fsync, foreign keys on."""
    db = sqlite3.connect(
        touch_private(directory / "meta.sqlite"), timeout=30, check_same_thread=False, isolation_level=None
    )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns an index made by an earlier version lacks (ALTER TABLE ADD COLUMN keeps every row)."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns:
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def read_state(db: sqlite3.Connection, key: str) -> str | None:
    """The state value under `key` (generation, manifest), None when unset."""
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def write_state(db: sqlite3.Connection, key: str, value: str) -> None:
    """Set the state value under `key`, inside the caller's transaction."""
    db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))


def generation(db: sqlite3.Connection) -> int:
    """The last committed generation (0 for a new index)."""
    return int(read_state(db, "generation") or 0)


def commit(
    db: sqlite3.Connection, puts: Iterable[tuple[dict, list[NewChunk]]], deletes: Iterable[str], manifest: dict | None
) -> int:
    """Apply deletes, puts and a new manifest in one transaction; returns the new generation.

    Raises DocumentConflictError (nothing stored) when a put's id belongs to a document from another source."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for doc_id in deletes:
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
        for doc, chunks in puts:
            _put(db, doc, chunks)
        if manifest is not None:
            write_state(db, "manifest", json.dumps(manifest))
        new = generation(db) + 1
        write_state(db, "generation", str(new))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return new


def _put(db: sqlite3.Connection, doc: dict, chunks: list[NewChunk]) -> None:
    stored = db.execute("SELECT source FROM documents WHERE doc_id = ?", (doc["doc_id"],)).fetchone()
    if stored is not None:
        check_source(doc["doc_id"], doc["source"], stored[0])
        db.execute("DELETE FROM documents WHERE doc_id = ?", (doc["doc_id"],))
    marks = ", ".join(f":{c}" for c in _DOCUMENT_COLUMNS.split(", "))
    db.execute(
        f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES ({marks})",
        {
            **doc,
            "labels": json.dumps(list(doc["labels"])),
            "ingested_at": doc.get("ingested_at") or time.time(),  # kept by `rag migrate`
            "pages_ocr": json.dumps(list(doc.get("pages_ocr", ()))),
            "pages_without_text": json.dumps(list(doc.get("pages_without_text", ()))),
        },
    )
    db.executemany(
        'INSERT INTO chunks (doc_id, ordinal, start, "end", page, heading, lang, content_hash, text, '
        "tokens, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                doc["doc_id"],
                c.ordinal,
                c.start,
                c.end,
                c.page,
                json.dumps(list(c.heading_path)),
                c.lang,
                c.content_hash,
                c.text,
                " ".join(c.tokens),
                np.ascontiguousarray(c.vector, dtype=np.float32).tobytes(),
            )
            for c in chunks
        ],
    )


def check_source(doc_id: str, source: str, stored_source: str) -> None:
    """A put replaces only a document from the same source. Ids carry 128 bits of hash, so this refuses only a
    crafted or astronomically unlikely collision, and says nothing about the other document.

    Raises DocumentConflictError."""
    if stored_source != source:
        raise DocumentConflictError(
            f"{source}: its document id {doc_id} belongs to a document from another source, which is left as it "
            "is; rename the file"
        )


def documents(db: sqlite3.Connection) -> list[DocumentRecord]:
    """Every stored document with its chunk count, by id."""
    rows = db.execute(
        "SELECT d.doc_id, source, title, format, d.lang, sha256, labels, pages, chars, ingested_at, "
        "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id), pages_ocr, pages_without_text "
        "FROM documents d ORDER BY d.doc_id"
    ).fetchall()
    return [DocumentRecord.from_row(row, decode=json.loads) for row in rows]


def chunks(db: sqlite3.Connection, ids: list[int]) -> dict[int, ChunkRecord]:
    """The stored chunks among `ids`, by id."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        'SELECT c.id, c.doc_id, ordinal, start, "end", page, heading, c.lang, content_hash, c.text, d.title, '
        f"d.source FROM chunks c JOIN documents d USING (doc_id) WHERE c.id IN ({marks})",
        ids,
    )
    return {row[0]: ChunkRecord.from_row(row, decode=json.loads) for row in rows}


def vector(blob: bytes) -> np.ndarray:
    """A stored vector, (dim,) float32, read-only view of `blob`."""
    return np.frombuffer(blob, dtype=np.float32)
