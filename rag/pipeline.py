"""The one object every front door (CLI, chat, HTTP API, evaluation) talks to.

Models load lazily on first use and once per `Pipeline`; the index is opened on first use. Nothing happens at import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from tqdm import tqdm

from .answer import Answer, Answerer, Event
from .chunk import Chunk, Chunker
from .embed import Embedder
from .errors import DocumentConflictError, IndexMismatchError, LoadError, NotFoundError, RagError
from .generate import LLM, create_llm
from .lexical import tokenize
from . import load
from .load import Block, Document
from .originals import Originals
from .provenance import verify_embedder, verify_llm
from .parse_pool import ParsePool
from .retrieve import Hit, Mode, Retriever
from .settings import Settings
from .store import ChunkRecord, DocumentRecord, IndexStore, NewChunk, SearchFilter, new_manifest


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, doc_id of the same bytes, not indexed)
    pages_without_text: list[tuple[str, list[int]]] = field(default_factory=list)  # (file, 1-based PDF pages)
    pages_ocr: list[tuple[str, list[int]]] = field(default_factory=list)  # (file, PDF pages read by OCR)
    chunks: int = 0
    chunks_embedded: int = 0
    pages: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Pending:
    document: Document
    labels: tuple[str, ...]
    chunks: list[Chunk]
    existed: bool


class Pipeline:
    def __init__(self, settings: Settings):
        self.settings = settings

    # ------------------------------------------------------------------ components
    @cached_property
    def embedder(self) -> Embedder:
        verify_embedder(self.settings)  # pins required (sovereignty.require_pins) and checked before any load
        return Embedder(self.settings.embedder, self.settings.data_dir)

    @cached_property
    def chunker(self) -> Chunker:
        window = self.embedder.info.max_tokens
        budget = self.settings.chunking.max_tokens
        if budget > window:
            raise RagError(
                f"chunking.max_tokens is {budget} but the embedder reads at most {window} tokens; lower it to {window}"
            )
        return Chunker(self.embedder.count_tokens, budget, self.settings.chunking.overlap_tokens)

    def for_index(self, index_dir: Path) -> Pipeline:
        """The same settings and loaded embedder over another index (the evaluation's scratch indexes)."""
        other = Pipeline(self.settings.model_copy(update={"index_dir": index_dir}))
        other.embedder = self.embedder
        return other

    def manifest(self) -> dict:
        return new_manifest(embedder=self.embedder.info.manifest(), chunking=self.settings.chunking.model_dump())

    @cached_property
    def store(self) -> IndexStore:
        if self.settings.store.backend == "postgres":  # the lead folds this into rag.store.open_store
            from .store_postgres import open_postgres
            return open_postgres(self.settings, self.manifest())
        return IndexStore.open(self.settings.index_dir, self.manifest(), dense=self.settings.retrieval.dense_index)

    @cached_property
    def retriever(self) -> Retriever:
        return Retriever(self.store, self.embedder, self.settings.retrieval)

    @cached_property
    def originals(self) -> Originals:
        """The uploaded files' bytes, kept beside the index (rag/originals.py)."""
        return Originals(self.settings.index_dir / "originals")

    @cached_property
    def llm(self) -> LLM:
        verify_llm(self.settings)  # likewise; the hashes are memoised, so the loader's own check reads nothing again
        return create_llm(self.settings)

    @cached_property
    def answerer(self) -> Answerer:
        return Answerer(self.search, lambda: self.llm, self.embedder.encode, self.settings)

    # ------------------------------------------------------------------ ingestion
    def ingest(
        self, paths: Sequence[str | Path], labels: Sequence[str] | None = None, progress: bool = True,
        on_commit=None,
    ) -> IngestReport:
        """Add or update every readable file under `paths`; unreadable ones are reported, not fatal.

        Files are parsed in worker processes (rag/parse_pool.py) while the embedder works; a file that fails, hangs
        past `ingest.parse_timeout_s` or needs more than `ingest.parse_memory_mb` is one entry of `failed`."""
        labels = tuple(sorted(labels or self.settings.default_labels))
        files = [p.resolve() for p in load.iter_input_files([Path(p) for p in paths])]
        with ParsePool(self.settings.ingest) as pool:
            parsed = pool.parse_files(files, ahead=self.settings.ingest.parse_ahead)
            return self._ingest_documents(parsed, len(files), labels, progress, on_commit, atomic=False)

    def ingest_documents(
        self, documents: Sequence[Document], labels: Sequence[str] | None = None, progress: bool = False,
        on_commit=None, atomic: bool = False,
    ) -> IngestReport:
        """Already-parsed documents (uploads, evaluation corpora). `atomic` commits them all in one transaction,
        whatever `ingest.commit_every_chunks` says: an upload is stored entirely or not at all."""
        labels = tuple(sorted(labels or self.settings.default_labels))
        return self._ingest_documents(((d.source, d) for d in documents), len(documents), labels, progress,
                                      on_commit, atomic)

    def _ingest_documents(self, parsed, total, labels, progress, on_commit, atomic: bool) -> IngestReport:
        report = IngestReport()
        started = time.perf_counter()
        pending: list[_Pending] = []
        first_copy: dict[str, str] = {}  # sha256 -> doc_id of the first file with these bytes in this run
        store = self.store
        files_bar = tqdm(total=total, unit="file", desc="parse", disable=not progress, dynamic_ncols=True)
        chunk_bar = tqdm(unit="chunk", desc="embed", disable=not progress, dynamic_ncols=True)
        with store.writer() as writer:
            for source, document in parsed:
                files_bar.update(1)
                if isinstance(document, LoadError):
                    report.failed.append((source, str(document)))
                    tqdm.write(f"skipped: {document}") if progress else None
                    continue
                if document.pages_without_text:  # scanned pages: what a search cannot find must be said
                    report.pages_without_text.append((source, document.pages_without_text))
                if document.pages_ocr:
                    report.pages_ocr.append((source, document.pages_ocr))
                try:
                    previous = store.document_sha(document.doc_id, document.source)
                except DocumentConflictError as exc:
                    if atomic:
                        raise
                    report.failed.append((source, str(exc)))
                    continue
                if previous == (document.sha256, labels):
                    report.unchanged.append(document.doc_id)
                    continue
                original = None if previous else first_copy.get(document.sha256) or store.same_bytes(
                    document.sha256, labels)
                if original is not None:  # a byte-identical copy under the same labels: indexing it adds nothing
                    report.duplicates.append((source, original))
                    continue
                first_copy.setdefault(document.sha256, document.doc_id)
                chunks = self.chunker.split(document)
                chunk_bar.total = (chunk_bar.total or 0) + len(chunks)  # grows as files are parsed: rate and ETA
                pending.append(_Pending(document, labels, chunks, previous is not None))
                if not atomic and sum(len(p.chunks) for p in pending) >= self.settings.ingest.commit_every_chunks:
                    self._commit(writer, pending, report, chunk_bar, on_commit)
                    pending = []
            if pending:
                self._commit(writer, pending, report, chunk_bar, on_commit)
        files_bar.close()
        chunk_bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def _commit(self, writer, pending: list[_Pending], report: IngestReport, chunk_bar, on_commit) -> None:
        puts = []
        for item in pending:
            new_chunks = self._embed_chunks(item.document.doc_id, item.chunks, report, chunk_bar)
            puts.append((_document_row(item.document, item.labels), new_chunks))
        generation = writer.commit(puts)
        for item in pending:
            (report.updated if item.existed else report.added).append(item.document.doc_id)
            report.chunks += len(item.chunks)
            report.pages += item.document.pages or 0
        if on_commit is not None:
            on_commit(generation, [item.document.doc_id for item in pending])

    def _embed_chunks(self, doc_id: str, chunks: list[Chunk], report: IngestReport, chunk_bar) -> list[NewChunk]:
        cached = self.store.cached_vectors(doc_id)
        missing = [c for c in chunks if c.content_hash not in cached]
        if missing:
            vectors = self.embedder.encode([c.embed_text for c in missing], progress=chunk_bar, background=True)
            cached.update({c.content_hash: v for c, v in zip(missing, vectors)})
            report.chunks_embedded += len(missing)
        return [_new_chunk(c, cached[c.content_hash]) for c in chunks]

    # ------------------------------------------------------------------ reading
    def search(
        self, query: str, k: int | None = None, mode: Mode | None = None, search_filter: SearchFilter | None = None,
    ) -> list[Hit]:
        return self.retriever.search(query, k=k, mode=mode, search_filter=search_filter)

    def ask(
        self, question: str, k: int | None = None, mode: str | None = None,
        search_filter: SearchFilter | None = None, history: Sequence[str] = (),
    ) -> Answer:
        """A verified answer or an abstention; `history` holds the previous questions of a conversation. Ingestion in
        this process (an upload in the server) waits meanwhile (`Embedder.priority`)."""
        with self.embedder.priority():
            return self.answerer.ask(question, k=k, mode=mode, search_filter=search_filter, history=history)

    def stream(
        self, question: str, k: int | None = None, mode: str | None = None,
        search_filter: SearchFilter | None = None, history: Sequence[str] = (),
    ) -> Iterator[Event]:
        """`Token`s as they are generated, then the authoritative `Answer` (see rag/answer.py); ingestion in this
        process waits until the stream is exhausted or closed, as for `ask`."""
        with self.embedder.priority():
            yield from self.answerer.stream(question, k=k, mode=mode, search_filter=search_filter, history=history)

    def documents(self, search_filter: SearchFilter | None = None) -> list[DocumentRecord]:
        return self.store.documents(search_filter)

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        return self.store.document(doc_id, search_filter)

    def passage(
        self, chunk_id: int, search_filter: SearchFilter | None = None,
    ) -> tuple[ChunkRecord, DocumentRecord, str]:
        """A stored passage, its document and the document's extracted text; a passage of a document the filter
        hides is reported exactly like one that does not exist, naming only the passage id."""
        chunk = self.store.chunks([chunk_id]).get(chunk_id)
        records = [d for d in self.store.documents(search_filter) if chunk and d.doc_id == chunk.doc_id]
        if not records:
            raise NotFoundError(f"no passage with id {chunk_id}")
        return chunk, records[0], self.store.document_text(chunk.doc_id)[0]

    def stats(self) -> dict:
        return self.store.stats()

    # ------------------------------------------------------------------ maintenance
    def delete(self, doc_ids: Sequence[str], search_filter: SearchFilter | None = None) -> list[str]:
        """Remove documents from every part of the index; unknown (or hidden) ids raise NotFoundError."""
        for doc_id in doc_ids:
            self.store.document(doc_id, search_filter)
        with self.store.writer() as writer:
            writer.commit(deletes=doc_ids)
        self.prune_originals()
        return list(doc_ids)

    def prune_originals(self) -> None:
        """Forget the kept files of contents no document has any more (after a delete or a replacing upload)."""
        self.originals.prune(keep={d.sha256 for d in self.store.documents()})

    def reindex(self, progress: bool = True) -> IngestReport:
        """Re-chunk and re-embed every stored document with the current settings, in one atomic swap; documents
        whose id was derived by an older index format get the current one (rag/load.py `document_id`)."""
        store = IndexStore.open(
            self.settings.index_dir, self.manifest(), check=False, dense=self.settings.retrieval.dense_index
        )
        self.__dict__["store"] = store
        report = IngestReport()
        started = time.perf_counter()
        docs = store.documents()
        with store.writer() as writer:
            puts, renamed = [], []
            bar = tqdm(total=sum(d.chunks for d in docs), unit="chunk", desc="reindex", disable=not progress)
            for record in docs:
                document = _stored_document(store, record)
                chunks = self.chunker.split(document)
                vectors = self.embedder.encode([c.embed_text for c in chunks], progress=bar, background=True)
                puts.append((_document_row(document, record.labels), [_new_chunk(c, v) for c, v in zip(chunks, vectors)]))
                if document.doc_id != record.doc_id:
                    renamed.append(record.doc_id)
                report.updated.append(document.doc_id)
                report.chunks += len(chunks)
                report.chunks_embedded += len(chunks)
            bar.close()
            writer.commit(puts, deletes=renamed, manifest=self.manifest())
        report.seconds = time.perf_counter() - started
        return report

    def check_index(self) -> None:
        """Open the index now, so a mismatch is reported before any work starts."""
        try:
            self.store.refresh()
        except IndexMismatchError:
            self.__dict__.pop("store", None)
            raise

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
        if "llm" in self.__dict__:
            self.llm.close()


def _document_row(document: Document, labels: Sequence[str]) -> dict:
    return {
        "doc_id": document.doc_id, "source": document.source, "title": document.title, "format": document.format,
        "lang": document.lang, "sha256": document.sha256, "labels": list(labels), "pages": document.pages,
        "chars": len(document.text), "text": document.text,
        "blocks": _blocks_json(document.blocks),
    }


def _blocks_json(blocks: list[Block]) -> str:
    return json.dumps([[b.start, b.end, list(b.heading_path), b.page] for b in blocks])


def _stored_document(store: IndexStore, record: DocumentRecord) -> Document:
    text, blocks = store.document_text(record.doc_id)
    return Document(
        source=record.source, title=record.title, text=text, format=record.format, lang=record.lang,
        sha256=record.sha256, blocks=[Block(s, e, tuple(h), p) for s, e, h, p in blocks], pages=record.pages,
    )


def _new_chunk(chunk: Chunk, vector) -> NewChunk:
    return NewChunk(
        ordinal=chunk.ordinal, start=chunk.start, end=chunk.end, page=chunk.page, heading_path=chunk.heading_path,
        lang=chunk.lang, content_hash=chunk.content_hash, text=chunk.text,
        tokens=tokenize(chunk.embed_text, chunk.lang), vector=vector,
    )
