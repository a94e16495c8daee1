"""Shared fixtures: real models loaded once per session, indexes built in temporary folders.

`integration` tests load the real embedder or llama.cpp, or start servers and `rag` processes that do; they are the
point of this suite. The fast tier beside them runs real FAISS, SQLite, parsers and files with hand-written vectors
and model outputs, and pins down logic that is awkward to reach through the models.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"
SHARED_CASES = ROOT.parent / "shared" / "cases"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared(relative: str) -> Path:
    """A path under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def case(relative: str) -> Path:
    """A fault reproduction under ../shared/cases (its README), or a skip naming what is missing."""
    path = SHARED_CASES / relative
    if not path.exists():
        pytest.skip(f"shared case not available: {path}")
    return path


def make_hit(chunk_id: int, text: str, title: str = "Staff handbook", heading: tuple[str, ...] = (),
             lang: str = "en", page: int | None = None):
    """A retrieved passage written by hand, for tests of what happens after retrieval."""
    from rag.retrieve import Hit
    from rag.store import ChunkRecord

    chunk = ChunkRecord(
        id=chunk_id, doc_id=f"doc-{chunk_id}", ordinal=0, start=100 * chunk_id, end=100 * chunk_id + len(text),
        page=page, heading_path=heading, lang=lang, content_hash=f"hash-{chunk_id}", text=text, title=title,
        source=f"/corpus/{chunk_id}.txt",
    )
    return Hit(chunk, 1.0 / chunk_id)


@pytest.fixture(scope="session")
def make_settings(tmp_path_factory):
    """Settings for a fresh index folder; keyword arguments override fields like `Settings(**kw)`."""
    from rag.settings import Settings

    def make(**overrides):
        overrides.setdefault("index_dir", tmp_path_factory.mktemp("index"))
        overrides.setdefault("data_dir", tmp_path_factory.getbasetemp() / "data")
        return Settings(**overrides)

    return make


@pytest.fixture(scope="session")
def embedder(tmp_path_factory):
    from rag.embed import Embedder
    from rag.settings import EmbedderSettings

    return Embedder(EmbedderSettings(), tmp_path_factory.getbasetemp() / "data")  # the ONNX graph's folder


@pytest.fixture(scope="session")
def example_pipeline(make_settings, embedder):
    """A pipeline over the sample corpus in examples/, sharing the session's embedder."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline(make_settings(), embedder=embedder)
    report = pipeline.ingest([EXAMPLES], progress=False)
    assert not report.failed, report.failed
    yield pipeline
    pipeline.close()


@pytest.fixture(scope="session")
def llm(example_pipeline):
    """The bundled GGUF, assembled into the session's data folder and loaded once."""
    from rag.generate import create_llm

    model = create_llm(example_pipeline.settings)
    yield model
    model.close()


@pytest.fixture(scope="session")
def answer_pipeline(example_pipeline, llm):
    """The sample-corpus pipeline's parts with the session's language model: what `rag ask` runs."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline(example_pipeline.settings, embedder=example_pipeline.embedder, llm=llm,
                        store=example_pipeline.store)
    yield pipeline
    pipeline.close()  # closes nothing it was given: the store is example_pipeline's, the model the llm fixture's


@pytest.fixture
def fresh_pipeline(make_settings, embedder):
    """An empty index of its own, for tests that write."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline(make_settings(), embedder=embedder)
    yield pipeline
    pipeline.close()


@pytest.fixture(scope="session")
def service(make_settings, embedder, tmp_path_factory):
    """A real HTTP server (uvicorn in a thread, real models) over the sample corpus and planted secrets.

    Short answers and one llama.cpp thread keep the suite fast on a shared machine; see tests/server_kit.py."""
    from .server_kit import serving

    with serving(make_settings, embedder, tmp_path_factory.mktemp("service"), max_tokens=24, queue_size=2) as running:
        yield running


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 16 + pgvector server for the session (tests/pg.py); skipped without the `pgserver` wheel.
    Its folder is not under pytest's (mode 0700): as root, PostgreSQL runs as another user that must reach it."""
    import tempfile

    pytest.importorskip("pgserver")
    from .pg import start

    server = start(Path(tempfile.mkdtemp(prefix="rag-postgres-")))
    yield server
    server.server.cleanup()


@pytest.fixture
def pg_settings(postgres, make_settings, monkeypatch):
    """Settings for a new database of the session's PostgreSQL (store.backend postgres, password in the
    environment, inherited by `rag` subprocesses)."""
    monkeypatch.setenv("RAG_STORE_PASSWORD", postgres.password)
    return make_settings(store={"backend": "postgres", "dsn": postgres.database()})


@pytest.fixture
def pg_pipeline(pg_settings, embedder):
    """A pipeline over `pg_settings`' database, sharing the session's embedder."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline(pg_settings, embedder=embedder)
    yield pipeline
    pipeline.close()
