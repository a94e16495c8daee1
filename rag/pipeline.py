"""The one object every front door (CLI, chat, HTTP API, evaluation) talks to.

Built by injection: `Pipeline(settings, embedder=..., llm=..., store=...)` takes any part ready-made (a test's shared
embedder, a scripted model, another store backend); the parts not given are built from the settings on first use,
once, under a lock (models load lazily, the index opens on first use). The pipeline closes what it built; what the
caller passed in stays the caller's to close. After `close()` every use raises `PipelineClosedError`.
Nothing happens at import.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from . import load
from .answer import Answer, Answerer, Event
from .chunk import Chunker
from .embed import Embedder
from .errors import LoadError, NotFoundError, RagError
from .generate import LLM, create_llm
from .ingest import (
    Ingestion,
    IngestReport,
    OnCommit,
    document_row,
    new_chunk,
    stored_document,
)
from .load import Document
from .originals import Originals
from .parse_pool import ParsePool
from .records import ChunkRecord, DocumentRecord, SearchFilter
from .retrieve import Hit, Mode, Retriever
from .settings import Settings
from .store import Store, new_manifest, open_store
from .verify import verify_embedder, verify_llm

_Part = TypeVar("_Part")


class PipelineClosedError(RagError):
    """The pipeline was closed; build a new one."""


class Pipeline:
    """Ingest, search, ask and maintain one index with one embedder and one language model.

    Parameters
    ----------
    settings : Settings
        Every choice not made by a part passed in.
    embedder, llm, store : optional, keyword-only
        Ready-made parts; each one not given is built from `settings` on first use (the embedder and the GGUF are
        checked against their sha256 pins first, rag/verify.py). Parts passed in are not closed by `close()`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._llm = llm
        self._store = store
        self._owned: set[str] = set()  # parts this pipeline built, hence closes
        self._chunker: Chunker | None = None
        self._retriever: Retriever | None = None
        self._answerer: Answerer | None = None
        self._originals: Originals | None = None
        self._building = threading.RLock()  # one thread builds a part; building one may build another
        self._closed = False

    # ------------------------------------------------------------------ components
    def _part(self, current: _Part | None, build: Callable[[], _Part]) -> _Part:
        """`current` when built, else `build()` under the lock (the caller stores the result)."""
        if self._closed:
            raise PipelineClosedError("this pipeline is closed; build a new one")
        if current is not None:
            return current
        with self._building:
            return build()

    @property
    def embedder(self) -> Embedder:
        """The embedder; built on first use after its files are checked against their pins."""
        self._embedder = self._part(self._embedder, lambda: self._embedder or self._build_embedder())
        return self._embedder

    def _build_embedder(self) -> Embedder:
        verify_embedder(self.settings)  # pins required (sovereignty.require_pins) and checked before any load
        return Embedder(self.settings.embedder, self.settings.data_dir)

    @property
    def loaded_embedder(self) -> Embedder | None:
        """The embedder if it is built or was given, None otherwise (loads nothing)."""
        return self._embedder

    @property
    def chunker(self) -> Chunker:
        """The chunker, sized to the embedder's window; RagError when chunking.max_tokens exceeds it."""
        self._chunker = self._part(self._chunker, lambda: self._chunker or self._build_chunker())
        return self._chunker

    def _build_chunker(self) -> Chunker:
        window = self.embedder.info.max_tokens
        budget = self.settings.chunking.max_tokens
        if budget > window:
            raise RagError(
                f"chunking.max_tokens is {budget} but the embedder reads at most {window} tokens; lower it to {window}"
            )
        return Chunker(self.embedder.count_tokens, budget, self.settings.chunking.overlap_tokens)

    def for_index(self, index_dir: Path) -> Pipeline:
        """The same settings and embedder over another index (the evaluation's scratch indexes)."""
        return Pipeline(self.settings.model_copy(update={"index_dir": index_dir}), embedder=self.embedder)

    def manifest(self) -> dict:
        """The manifest this pipeline's embedder and chunking settings give an index (rag/store/manifest.py)."""
        return new_manifest(embedder=self.embedder.info.manifest(), chunking=self.settings.chunking.model_dump())

    @property
    def store(self) -> Store:
        """The index; opened on first use, IndexMismatchError when it was built with another embedder or chunker."""
        self._store = self._part(self._store, lambda: self._store or self._open_store(check=True))
        return self._store

    def _open_store(self, *, check: bool) -> Store:
        store = open_store(self.settings, self.manifest(), check=check)
        self._owned.add("store")
        return store

    @property
    def retriever(self) -> Retriever:
        """Search over the store with the embedder (rag/retrieve.py)."""
        self._retriever = self._part(
            self._retriever, lambda: self._retriever or Retriever(self.store, self.embedder, self.settings.retrieval)
        )
        return self._retriever

    @property
    def originals(self) -> Originals:
        """The uploaded files' bytes, kept beside the index (rag/originals.py)."""
        self._originals = self._part(
            self._originals, lambda: self._originals or Originals(self.settings.index_dir / "originals")
        )
        return self._originals

    @property
    def llm(self) -> LLM:
        """The language model; built on first use after the GGUF is checked against its pin."""
        self._llm = self._part(self._llm, lambda: self._llm or self._build_llm())
        return self._llm

    def _build_llm(self) -> LLM:
        verify_llm(self.settings)  # likewise; the hashes are memoised, so the loader's own check reads nothing again
        llm = create_llm(self.settings)
        self._owned.add("llm")
        return llm

    @property
    def answerer(self) -> Answerer:
        """Question -> verified answer (rag/answer.py); the model is asked for only when a generation needs it."""
        self._answerer = self._part(
            self._answerer,
            lambda: self._answerer or Answerer(self.search, lambda: self.llm, self.embedder.encode, self.settings),
        )
        return self._answerer

    # ------------------------------------------------------------------ ingestion
    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        labels: Sequence[str] | None = None,
        progress: bool = True,
        on_commit: OnCommit | None = None,
    ) -> IngestReport:
        """Add or update every readable file under `paths`; unreadable ones are reported, not fatal: `failed`
        (dangling or looping symlinks among them, named by their own path), or `skipped` for what is not a regular
        file (FIFOs, sockets, devices: never opened; rag/load/loader.py `input_files`).

        Files are parsed in worker processes (rag/parse_pool.py) while the embedder works; a file that fails, hangs
        past `ingest.parse_timeout_s` or needs more than `ingest.parse_memory_mb` is one entry of `failed`.
        `on_commit(generation, doc_ids)` runs after each commit. Whatever ends the ingest (an exception, Ctrl-C),
        the parser processes, the writer lock and the progress bars are released before it propagates."""
        found = load.input_files([Path(p) for p in paths])  # a missing path: LoadError
        files = [p.resolve() for p in found.files]
        broken: list[tuple[str, Document | LoadError]] = [(path, LoadError(reason)) for path, reason in found.broken]
        ingestion = self._ingestion(labels, progress, on_commit, atomic=False)
        with ParsePool(self.settings.ingest) as pool:
            parsed = pool.parse_files(files, ahead=self.settings.ingest.parse_ahead)
            try:
                report = ingestion.run(itertools.chain(broken, parsed), len(broken) + len(files))
            finally:
                parsed.close()  # cancels what it queued, before the pool stops
        report.skipped = found.skipped
        return report

    def ingest_documents(
        self,
        documents: Sequence[Document],
        *,
        labels: Sequence[str] | None = None,
        progress: bool = False,
        on_commit: OnCommit | None = None,
        atomic: bool = False,
    ) -> IngestReport:
        """Already-parsed documents (uploads, evaluation corpora). `atomic` commits them all in one transaction,
        whatever `ingest.commit_every_chunks` says: an upload is stored entirely or not at all."""
        ingestion = self._ingestion(labels, progress, on_commit, atomic)
        return ingestion.run(((d.source, d) for d in documents), len(documents))

    def _ingestion(
        self, labels: Sequence[str] | None, progress: bool, on_commit: OnCommit | None, atomic: bool
    ) -> Ingestion:
        return Ingestion(
            store=self.store,
            chunker=self.chunker,
            embedder=self.embedder,
            labels=tuple(sorted(labels or self.settings.default_labels)),
            commit_every_chunks=self.settings.ingest.commit_every_chunks,
            progress=progress,
            on_commit=on_commit,
            atomic=atomic,
        )

    # ------------------------------------------------------------------ reading
    def search(
        self,
        query: str,
        *,
        k: int | None = None,
        mode: Mode | None = None,
        search_filter: SearchFilter | None = None,
    ) -> list[Hit]:
        """The best `k` distinct passages for `query` (defaults: retrieval.k, retrieval.mode), filtered inside the
        search (rag/retrieve.py)."""
        return self.retriever.search(query, k=k, mode=mode, search_filter=search_filter)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        search_filter: SearchFilter | None = None,
        history: Sequence[str] = (),
    ) -> Answer:
        """A verified answer or an abstention; `history` holds the previous questions of a conversation. Ingestion in
        this process (an upload in the server) waits meanwhile (`Embedder.priority`)."""
        with self.embedder.priority():
            return self.answerer.ask(question, k=k, mode=mode, search_filter=search_filter, history=history)

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        search_filter: SearchFilter | None = None,
        history: Sequence[str] = (),
    ) -> Generator[Event, None, None]:
        """`Token`s as they are generated, then the authoritative `Answer` (see rag/answer.py); ingestion in this
        process waits until the stream is exhausted or closed, as for `ask`."""
        with self.embedder.priority():
            yield from self.answerer.stream(question, k=k, mode=mode, search_filter=search_filter, history=history)

    def documents(self, search_filter: SearchFilter | None = None) -> list[DocumentRecord]:
        """The stored documents the filter admits, by id."""
        return self.store.documents(search_filter)

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        """One stored document; NotFoundError when absent or hidden by the filter."""
        return self.store.document(doc_id, search_filter)

    def passage(
        self,
        chunk_id: int,
        search_filter: SearchFilter | None = None,
    ) -> tuple[ChunkRecord, DocumentRecord, str]:
        """A stored passage, its document and the document's extracted text; a passage of a document the filter
        hides is reported exactly like one that does not exist, naming only the passage id."""
        chunk = self.store.chunks([chunk_id]).get(chunk_id)
        records = [d for d in self.store.documents(search_filter) if chunk and d.doc_id == chunk.doc_id]
        if chunk is None or not records:
            raise NotFoundError(f"no passage with id {chunk_id}")
        return chunk, records[0], self.store.document_text(chunk.doc_id)[0]

    def stats(self) -> dict:
        """The index's figures (`Store.stats`)."""
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
        self.originals.prune(keep=lambda: {d.sha256 for d in self.store.documents()})

    def reindex(self, *, progress: bool = True) -> IngestReport:
        """Re-chunk and re-embed every stored document with the current settings, in one atomic swap; documents
        whose id was derived by an older index format get the current one (rag/load/document.py `document_id`).

        Opens the index without the manifest check (it is what changes) unless a store is open or was given."""
        if self._store is None:
            self._store = self._part(self._store, lambda: self._store or self._open_store(check=False))
        store = self.store
        report = IngestReport()
        started = time.perf_counter()
        docs = store.documents()
        with (
            tqdm(total=sum(d.chunks for d in docs), unit="chunk", desc="reindex", disable=not progress) as bar,
            store.writer() as writer,
        ):
            puts, renamed = [], []
            for record in docs:
                document = stored_document(store, record)
                chunks = self.chunker.split(document)
                vectors = self.embedder.encode([c.embed_text for c in chunks], progress=bar, background=True)
                puts.append(
                    (
                        document_row(document, record.labels),
                        [new_chunk(c, v) for c, v in zip(chunks, vectors, strict=True)],
                    )
                )
                if document.doc_id != record.doc_id:
                    renamed.append(record.doc_id)
                report.updated.append(document.doc_id)
                report.chunks += len(chunks)
                report.chunks_embedded += len(chunks)
            writer.commit(puts, deletes=renamed, manifest=self.manifest())
        report.seconds = time.perf_counter() - started
        return report

    def check_index(self) -> None:
        """Open the index now, so a mismatch (IndexMismatchError) is reported before any work starts."""
        self.store.refresh()

    def close(self) -> None:
        """Close the store and the language model if this pipeline built them; later use raises
        PipelineClosedError. Closing twice is harmless."""
        with self._building:
            if self._closed:
                return
            self._closed = True
            parts = [
                (name, part)
                for name, part in (("store", self._store), ("llm", self._llm))
                if part is not None and name in self._owned
            ]
        for _, part in parts:
            part.close()
