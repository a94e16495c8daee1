"""One ingest run: documents in, deduplicated, chunked, embedded and committed to a store in batches.

`Pipeline.ingest` / `ingest_documents` build an `Ingestion` with the pipeline's parts and run it; `Pipeline.reindex`
reuses the document and chunk conversions below. A commit is one store transaction: an ingest stopped by any
exception keeps the batches committed before it and nothing of the one in progress.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from .chunk import Chunk, Chunker
from .embed import Embedder
from .errors import DocumentConflictError, LoadError
from .lexical import tokenize
from .load import Block, Document
from .records import DocumentRecord, NewChunk
from .store import Store, StoreWriter

OnCommit = Callable[[int, list[str]], None]  # (new generation, ids of the documents it committed)


@dataclass
class IngestReport:
    """What an ingest did, per file or document id (the `rag ingest --json` shape, docs/cli.md)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not a regular file, never opened
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, doc_id of the same bytes, not indexed)
    pages_without_text: list[tuple[str, list[int]]] = field(default_factory=list)  # (file, 1-based PDF pages)
    pages_ocr: list[tuple[str, list[int]]] = field(default_factory=list)  # (file, PDF pages read by OCR)
    chunks: int = 0
    chunks_embedded: int = 0
    pages: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


class Bar(Protocol):
    """What the ingest needs of a progress bar (tqdm's interface)."""

    total: float | None

    def update(self, n: float = 1) -> bool | None:
        """Advance the bar by `n` units (files or bytes, as `total` counts them)."""
        ...


@dataclass
class _Pending:
    document: Document
    labels: tuple[str, ...]
    chunks: list[Chunk]
    existed: bool


@dataclass
class Ingestion:
    """The parts and choices of one run; `run` consumes (source, Document or LoadError) pairs.

    `commit_every_chunks` bounds a batch unless `atomic`, which commits everything in one transaction (an upload is
    stored entirely or not at all). `on_commit(generation, doc_ids)` runs after each commit."""

    store: Store
    chunker: Chunker
    embedder: Embedder
    labels: tuple[str, ...]
    commit_every_chunks: int
    progress: bool = False
    on_commit: OnCommit | None = None
    atomic: bool = False

    def run(self, parsed: Iterable[tuple[str, Document | LoadError]], total: int) -> IngestReport:
        """Ingest every pair; the bars and the writer lock are released whatever ends the run."""
        report = IngestReport()
        started = time.perf_counter()
        with (
            tqdm(total=total, unit="file", desc="parse", disable=not self.progress, dynamic_ncols=True) as files,
            tqdm(unit="chunk", desc="embed", disable=not self.progress, dynamic_ncols=True) as chunk_bar,
            self.store.writer() as writer,
        ):
            pending: list[_Pending] = []
            first_copy: dict[str, str] = {}  # sha256 -> doc_id of the first file with these bytes in this run
            for source, document in parsed:
                files.update(1)
                item = self._admit(source, document, report, first_copy)
                if item is None:
                    continue
                chunk_bar.total = (chunk_bar.total or 0) + len(item.chunks)  # grows as files are parsed: rate, ETA
                pending.append(item)
                if not self.atomic and sum(len(p.chunks) for p in pending) >= self.commit_every_chunks:
                    self._commit(writer, pending, report, chunk_bar)
                    pending = []
            if pending:
                self._commit(writer, pending, report, chunk_bar)
        report.seconds = time.perf_counter() - started
        return report

    def _admit(
        self, source: str, document: Document | LoadError, report: IngestReport, first_copy: dict[str, str]
    ) -> _Pending | None:
        """The document chunked and ready to embed, or None when it failed, is unchanged or a duplicate."""
        if isinstance(document, LoadError):
            report.failed.append((source, str(document)))
            if self.progress:
                tqdm.write(f"failed: {document}")
            return None
        if document.pages_without_text:  # scanned pages: what a search cannot find must be said
            report.pages_without_text.append((source, document.pages_without_text))
        if document.pages_ocr:
            report.pages_ocr.append((source, document.pages_ocr))
        try:
            previous = self.store.document_sha(document.doc_id, document.source)
        except DocumentConflictError as exc:
            if self.atomic:
                raise
            report.failed.append((source, str(exc)))
            return None
        if previous == (document.sha256, self.labels):
            report.unchanged.append(document.doc_id)
            return None
        original = (
            None if previous else first_copy.get(document.sha256) or self.store.same_bytes(document.sha256, self.labels)
        )
        if original is not None:  # a byte-identical copy under the same labels: indexing it adds nothing
            report.duplicates.append((source, original))
            return None
        first_copy.setdefault(document.sha256, document.doc_id)
        return _Pending(document, self.labels, self.chunker.split(document), previous is not None)

    def _commit(self, writer: StoreWriter, pending: list[_Pending], report: IngestReport, chunk_bar: Bar) -> None:
        puts = []
        for item in pending:
            new_chunks = self._embed_chunks(item.document.doc_id, item.chunks, report, chunk_bar)
            puts.append((document_row(item.document, item.labels), new_chunks))
        generation = writer.commit(puts)
        for item in pending:
            (report.updated if item.existed else report.added).append(item.document.doc_id)
            report.chunks += len(item.chunks)
            report.pages += item.document.pages or 0
        if self.on_commit is not None:
            self.on_commit(generation, [item.document.doc_id for item in pending])

    def _embed_chunks(self, doc_id: str, chunks: list[Chunk], report: IngestReport, chunk_bar: Bar) -> list[NewChunk]:
        """The chunks with their vectors; a passage already stored for this document keeps its vector."""
        cached = self.store.cached_vectors(doc_id)
        missing = [c for c in chunks if c.content_hash not in cached]
        if missing:
            vectors = self.embedder.encode([c.embed_text for c in missing], progress=chunk_bar, background=True)
            cached.update({c.content_hash: v for c, v in zip(missing, vectors, strict=True)})
            report.chunks_embedded += len(missing)
        return [new_chunk(c, cached[c.content_hash]) for c in chunks]


def document_row(document: Document, labels: Sequence[str]) -> dict:
    """The document dict a `StoreWriter.commit` takes (rag/store/base.py)."""
    return {
        "doc_id": document.doc_id,
        "source": document.source,
        "title": document.title,
        "format": document.format,
        "lang": document.lang,
        "sha256": document.sha256,
        "labels": list(labels),
        "pages": document.pages,
        "chars": len(document.text),
        "text": document.text,
        "blocks": json.dumps([[b.start, b.end, list(b.heading_path), b.page] for b in document.blocks]),
        "pages_ocr": list(document.pages_ocr),
        "pages_without_text": list(document.pages_without_text),
    }


def stored_document(store: Store, record: DocumentRecord) -> Document:
    """A stored document as the `Document` it was extracted as (text, blocks, pages), for re-chunking."""
    text, blocks = store.document_text(record.doc_id)
    return Document(
        source=record.source,
        title=record.title,
        text=text,
        format=record.format,
        lang=record.lang,
        sha256=record.sha256,
        blocks=[Block(s, e, tuple(h), p) for s, e, h, p in blocks],
        pages=record.pages,
        pages_ocr=list(record.pages_ocr),
        pages_without_text=list(record.pages_without_text),
    )


def new_chunk(chunk: Chunk, vector: np.ndarray) -> NewChunk:
    """What the store keeps of a chunk: its passage, lexical tokens (in its language) and unit vector (dim,)."""
    return NewChunk(
        ordinal=chunk.ordinal,
        start=chunk.start,
        end=chunk.end,
        page=chunk.page,
        heading_path=chunk.heading_path,
        lang=chunk.lang,
        content_hash=chunk.content_hash,
        text=chunk.text,
        tokens=tokenize(chunk.embed_text, chunk.lang),
        vector=vector,
    )
