"""Shared fixtures: real models loaded once per session, indexes built in temporary folders.

`integration` tests use the real embedder, FAISS, llama.cpp and servers; they are the point of this suite, the unit
tests beside them only pin down logic that is awkward to reach through the real components.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared(relative: str) -> Path:
    """A path under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


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
def embedder():
    from rag.embed import Embedder
    from rag.settings import EmbedderSettings

    return Embedder(EmbedderSettings())


@pytest.fixture(scope="session")
def example_pipeline(make_settings, embedder):
    """A pipeline over the sample corpus in examples/, sharing the session's embedder."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline(make_settings())
    pipeline.__dict__["embedder"] = embedder
    report = pipeline.ingest([EXAMPLES], progress=False)
    assert not report.failed, report.failed
    yield pipeline
    pipeline.close()


@pytest.fixture
def fresh_pipeline(make_settings, embedder):
    """An empty index of its own, for tests that write."""
    from rag.pipeline import Pipeline

    pipeline = Pipeline(make_settings())
    pipeline.__dict__["embedder"] = embedder
    yield pipeline
    pipeline.close()
