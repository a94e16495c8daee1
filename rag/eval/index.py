"""A scratch index per dataset under `<data_dir>/eval-cache/<key>`: an evaluation never opens the user's index.

The key hashes what decides the index's content (the dataset's bytes, the embedder's identity as an index manifest
records it, the ONNX graph's sha256 included, and the chunker settings), so the same data and configuration reuse
the index and a change to any of them builds another. Ingestion skips unchanged documents, so an interrupted build
resumes where it stopped. The cache may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..pipeline import Pipeline
from ..settings import Settings
from .datasets import Dataset


def cache_key(embedder: dict, settings: Settings, dataset: Dataset) -> str:
    """Documents are stored under their sources, so those count too: the same bytes read under another dataset name
    must not add a second copy of every document to a reused index. The indexing code counts as well
    (`indexing_code_sha256`). A set whose questions come from another file than
    its documents (`corpus_sha256`) shares the index of the documents' own set."""
    sources = [str(dataset.documents_dir.resolve())] if dataset.documents_dir else [d.source for d in dataset.documents]
    identity = {
        "dataset": dataset.corpus_sha256 or dataset.sha256,
        "sources": hashlib.sha256("\n".join(sources).encode()).hexdigest(),
        "embedder": embedder,
        "chunking": settings.chunking.model_dump(),
        "code": indexing_code_sha256(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def indexing_code_sha256() -> str:
    """sha256 of the source of the stages that decide what an index holds (loading, chunking, BM25 tokens): a change
    to any of them makes a new cache key, so a rerun never scores an index built by other code."""
    package = Path(__file__).resolve().parents[1]
    files = sorted([package / "chunk.py", package / "lexical.py", package / "language.py", *package.glob("load/*.py")])
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def open_index(settings: Settings, dataset: Dataset, progress: bool) -> tuple[Pipeline, dict]:
    """A pipeline over the dataset's cached index (built or completed now), and a description for the report."""
    models = Pipeline(settings)
    key = cache_key(models.embedder.info.manifest(), settings, dataset)
    directory = (Path(settings.data_dir) / "eval-cache" / key).resolve()
    pipeline = models.for_index(directory)
    if dataset.documents_dir is not None:
        report = pipeline.ingest([dataset.documents_dir], progress=progress)
    else:
        report = pipeline.ingest_documents(dataset.documents, progress=progress)
    stats = pipeline.stats()
    return pipeline, {
        "directory": str(directory),
        "key": key,
        "reused": not (report.added or report.updated),
        "documents": stats["documents"],
        "chunks": stats["chunks"],
        "failed": report.failed,
        "build_seconds": round(report.seconds, 1),
    }
