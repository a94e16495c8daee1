"""The store interface: what the pipeline, retriever, server and evaluation ask of an index, whatever holds it.

A backend is one module implementing `Store` (rag/store/embedded.py: SQLite + FAISS + BM25 in one directory);
`open_store` chooses it from the settings. Records are in rag/records.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import RagError
from ..records import ChunkRecord, DocumentRecord, NewChunk, SearchFilter

if TYPE_CHECKING:
    from ..settings import Settings


class StoreWriter(Protocol):
    """The one way to change a store; obtained from `Store.writer()`."""

    def commit(
        self,
        puts: Iterable[tuple[dict, list[NewChunk]]] = (),
        deletes: Iterable[str] = (),
        manifest: dict | None = None,
    ) -> int:
        """Replace or add documents, delete others and optionally swap the manifest, in one transaction.

        Each put is (document dict, its chunks); the dict has the keys doc_id, source, title, format, lang, sha256,
        labels (list), pages, chars, text, blocks (JSON text) and optionally pages_ocr and pages_without_text
        (lists of 1-based pages; missing = empty) and ingested_at (Unix seconds, kept by `rag migrate`; missing =
        now). Returns the new generation. Raises DocumentConflictError, storing
        nothing, when a put's id belongs to a stored document from another source."""
        ...


class Store(Protocol):
    """An index backend. Guarantees every backend gives:

    - atomic commits: after any crash/kill a document is fully present (document row, all chunks, vectors, lexical
      rows) or absent; counts agree (stats(): chunks == vectors == bm25_rows).
    - filters inside the search: `search` returns up to `depth` *admitted* hits per retriever even when a filter
      admits few rows.
    - a deleted document's text and vectors are gone in the same commit.
    - a document id is replaced only by a document from the same source (DocumentConflictError otherwise).
    """

    manifest: dict  # embedder + chunker identity; opening refuses a mismatch (IndexMismatchError)

    @property
    def generation(self) -> int:
        """The last committed generation (monotonic)."""
        ...

    def documents(self, search_filter: SearchFilter | None = None) -> list[DocumentRecord]:
        """Every stored document the filter admits, by id."""
        ...

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        """One document; raises NotFoundError when absent or hidden by the filter (same message)."""
        ...

    def document_sha(self, doc_id: str, source: str) -> tuple[str, tuple[str, ...]] | None:
        """(sha256, labels) of the stored `doc_id` from `source`, None when absent; DocumentConflictError when the
        id belongs to a document from another source."""
        ...

    def same_bytes(self, sha256: str, labels: tuple[str, ...]) -> str | None:
        """The id of the first-ingested document with these file bytes and labels, or None."""
        ...

    def document_text(self, doc_id: str) -> tuple[str, list[dict]]:
        """The extracted text and its blocks ([start, end, heading path, page] lists); NotFoundError when absent."""
        ...

    def cached_vectors(self, doc_id: str) -> dict[str, np.ndarray]:
        """content_hash -> unit vector (dim,) float32 of the document's stored chunks."""
        ...

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        """The stored chunks among `ids`, by id (deleted ones are absent)."""
        ...

    def search(
        self,
        *,
        vector: np.ndarray | None,
        tokens: Sequence[str],
        depth: int,
        search_filter: SearchFilter | None = None,
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(dense, lexical): (chunk id, score) best first, each at most `depth`, filtered inside the search, both from
        one consistent committed generation. `vector` None -> dense []; `tokens` empty -> lexical [].

        Dense score: cosine (inner product of unit vectors). Lexical score: BM25 (k1=1.5, b=0.75, as rag/lexical.py)
        over `tokens`, already tokenised by `rag.lexical.tokenize(query, lang)`."""
        ...

    def stats(self) -> dict:
        """Keys: directory or dsn (redacted), generation, documents, chunks, vectors, bm25_rows, languages,
        manifest, plus backend-specific extras."""
        ...

    def refresh(self) -> None:
        """Make the newest committed generation searchable (may be a no-op)."""
        ...

    def writer(self) -> AbstractContextManager[StoreWriter]:
        """The writer; raises IndexLockedError when the backend allows one writer and another holds it."""
        ...

    def close(self) -> None:
        """Release connections, locks and threads; the store is unusable afterwards."""
        ...


def open_store(settings: Settings, manifest: dict, *, check: bool = True) -> Store:
    """The store `settings` name (`store.backend`, `embedded` when not configured) for `manifest`.

    `check=False` opens an index built with another embedder or chunker (reindex). Raises IndexMismatchError on a
    mismatch, RagError for an unknown backend."""
    backend = settings.store.backend
    if backend == "postgres":  # psycopg loads only for this backend (the `postgres` extra)
        from .postgres import open_postgres

        return open_postgres(settings, manifest, check=check)
    if backend == "embedded":  # FAISS and bm25s load only when an index is opened
        from .embedded import IndexStore

        return IndexStore.open(
            settings.index_dir,
            manifest,
            check=check,
            dense=settings.retrieval.dense_index,
            lock_wait_s=settings.store.lock_wait_s,
        )
    raise RagError(f"store.backend {backend!r} is not available; use 'embedded' or 'postgres'")
