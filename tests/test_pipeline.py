"""Pipeline construction by injection, its closed state, and ingestion that releases what it holds on any exception."""

from __future__ import annotations

import multiprocessing

import pytest

from rag.pipeline import Pipeline, PipelineClosedError
from rag.store.embedded import IndexStore

from .conftest import EXAMPLES

pytestmark = pytest.mark.integration


class Boom(Exception):
    """Raised by a callback, standing for any failure in the ingest's own thread."""


def test_parts_are_keyword_only_and_injected_ones_are_used(make_settings, embedder):
    settings = make_settings()
    with pytest.raises(TypeError):
        Pipeline(settings, embedder)  # type: ignore[misc]
    pipeline = Pipeline(settings, embedder=embedder)
    assert pipeline.loaded_embedder is embedder and pipeline.embedder is embedder
    assert pipeline.retriever.embedder is embedder and pipeline.retriever.store is pipeline.store
    pipeline.close()


def test_a_closed_pipeline_refuses_use_and_closes_only_what_it_built(make_settings, embedder):
    settings = make_settings()
    store = IndexStore.open(settings.index_dir, Pipeline(settings, embedder=embedder).manifest())
    given = Pipeline(settings, embedder=embedder, store=store)
    built = Pipeline(settings, embedder=embedder)
    built_store = built.store
    given.close()
    built.close()
    built.close()  # twice: harmless
    for pipeline in (given, built):
        with pytest.raises(PipelineClosedError, match="closed"):
            pipeline.search("telework")
        with pytest.raises(PipelineClosedError):
            pipeline.ingest_documents([])
        with pytest.raises(PipelineClosedError):
            next(pipeline.stream("telework"))
    assert store.documents() == [], "a store passed in stays open: it is the caller's"
    with pytest.raises(Exception, match="closed"):
        built_store.documents()  # the one the pipeline opened is closed with it
    store.close()


def test_an_exception_during_ingestion_releases_the_workers_and_the_writer_lock(make_settings, embedder):
    pipeline = Pipeline(make_settings(ingest={"commit_every_chunks": 1}), embedder=embedder)

    def fail(generation: int, doc_ids: list[str]) -> None:
        raise Boom(f"after generation {generation}")

    before = set(multiprocessing.active_children())  # other fixtures' pools may run in this session
    with pytest.raises(Boom, match="after generation 1"):
        pipeline.ingest([EXAMPLES], progress=True, on_commit=fail)
    assert not set(multiprocessing.active_children()) - before, "a parser worker survived the failed ingest"
    with pipeline.store.writer() as writer:  # the writer lock was released: no IndexLockedError
        writer.commit()
    report = pipeline.ingest([EXAMPLES], progress=False)
    assert not report.failed and report.unchanged, "the first commit stayed; the rest is ingested now"
    pipeline.close()
