"""The approximate dense structures (HNSW, IVF) behind the store: forced by a tiny `auto_threshold`, they must answer
like brute force on a small index, keep filters inside the search, survive deletes and reopening, and switch without
a reindex. Vectors are written by hand (random unit vectors), so no embedder is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from rag.settings import DenseIndexSettings
from rag.store import NewChunk, SearchFilter, new_manifest
from rag.store.embedded import IndexStore

DIM = 16
MANIFEST = new_manifest({"name": "hand-written", "dim": DIM}, {"max_tokens": 200})


def _settings(kind: str, **overrides) -> DenseIndexSettings:
    return DenseIndexSettings(type="auto", auto_threshold=10, auto_type=kind, **overrides)


def _document(i: int) -> dict:
    return {"doc_id": f"doc-{i}", "source": f"/corpus/{i}.txt", "title": f"Note {i}", "format": "text", "lang": "en",
            "sha256": str(i), "labels": ["secret"] if i % 4 == 0 else ["public"], "pages": None, "chars": 1,
            "text": "x", "blocks": "[]"}


def _chunks(doc: int, vectors: np.ndarray) -> list[NewChunk]:
    return [NewChunk(ordinal=j, start=0, end=1, page=None, heading_path=(), lang="en", content_hash=f"{doc}-{j}",
                     text=f"note {doc} part {j}", tokens=["note", f"n{doc}", f"p{j}"], vector=v)
            for j, v in enumerate(vectors)]


def _unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def store_dir(tmp_path):
    """40 documents of 10 chunks; every fourth document is labelled `secret`."""
    vectors = _unit(400, seed=0)
    store = IndexStore.open(tmp_path, MANIFEST, dense=DenseIndexSettings(type="flat"))
    with store.writer() as writer:
        writer.commit([(_document(i), _chunks(i, vectors[10 * i : 10 * i + 10])) for i in range(40)])
    store.close()
    return tmp_path


def _brute_force(store: IndexStore, query: np.ndarray, k: int, mask: np.ndarray | None) -> list[int]:
    rows = store.db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows])
    scores = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows]) @ query
    if mask is not None:
        scores[~mask] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(ids[i]) for i in order if np.isfinite(scores[i])]


def _dense_ids(store: IndexStore, query: np.ndarray, k: int, search_filter: SearchFilter | None = None) -> list[int]:
    return [cid for cid, _ in store.search(vector=query, tokens=[], depth=k, search_filter=search_filter)[0]]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_forced_ann_equals_brute_force_with_and_without_filters(store_dir, kind):
    """Small enough that HNSW's candidate list and IVF's probed lists cover everything: results must be exact."""
    store = IndexStore.open(store_dir, MANIFEST, dense=_settings(kind, exact_filter_rows=50))
    assert store.stats()["dense_index"]["type"] == kind
    public = SearchFilter(labels=frozenset({"public"}))  # 300 rows: the approximate search with a selector
    one_doc = SearchFilter(doc_ids=frozenset({"doc-8"}))  # 10 rows: exact over just those
    for query in _unit(10, seed=1):
        assert _dense_ids(store, query, 10) == _brute_force(store, query, 10, None)
        for search_filter in (public, one_doc):
            mask = store.current().allowed_rows(search_filter)
            assert _dense_ids(store, query, 10, search_filter) == _brute_force(store, query, 10, mask)
    store.close()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("exact_filter_rows", [0, 20_000])  # the approximate search with a selector; brute force
def test_hidden_documents_never_returned(store_dir, kind, exact_filter_rows):
    store = IndexStore.open(store_dir, MANIFEST, dense=_settings(kind, exact_filter_rows=exact_filter_rows))
    public = SearchFilter(labels=frozenset({"public"}))
    hidden = {f"doc-{i}" for i in range(0, 40, 4)}
    secret = {c.id for c in store.chunks(list(range(1, 401))).values() if c.doc_id in hidden}
    for query in _unit(20, seed=2):
        found = _dense_ids(store, query, 50, public)
        assert len(found) == 50 and not secret & set(found), "k permitted passages, none of them hidden"
        assert not secret & {cid for cid, _ in store.search(vector=None, tokens=["note"], depth=50,
                                                            search_filter=public)[1]}
    store.close()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_delete_then_reopen(store_dir, kind):
    store = IndexStore.open(store_dir, MANIFEST, dense=_settings(kind))
    query = _unit(1, seed=3)[0]
    victim = store.chunks(_dense_ids(store, query, 1))
    victim_doc = next(iter(victim.values())).doc_id
    with store.writer() as writer:
        writer.commit(deletes=[victim_doc])
    after = _dense_ids(store, query, 20)
    assert not set(victim) & set(after) and len(after) == 20
    assert store.refresh_seconds.keys() >= {"dense_build", "lexical_build"}
    store.close()

    reopened = IndexStore.open(store_dir, MANIFEST, dense=_settings(kind))
    assert _dense_ids(reopened, query, 20) == after
    assert reopened.refresh_seconds.keys() >= {"dense_load", "lexical_load"}, "persisted structures are reused"
    assert len(list(store_dir.glob("dense-*"))) == 1 and len(list(store_dir.glob("lexical-*"))) == 1
    reopened.close()


def test_changing_the_type_rebuilds_only_the_dense_structure(store_dir):
    flat = IndexStore.open(store_dir, MANIFEST, dense=DenseIndexSettings(type="flat"))
    exact = _dense_ids(flat, _unit(1, seed=4)[0], 10)
    flat.close()
    hnsw = IndexStore.open(store_dir, MANIFEST, dense=DenseIndexSettings(type="hnsw", hnsw_m=8))
    assert _dense_ids(hnsw, _unit(1, seed=4)[0], 10) == exact
    assert hnsw.refresh_seconds.keys() >= {"dense_build", "lexical_load"}, "no reindex, BM25 kept"
    assert hnsw.stats()["dense_index"]["structure"] == "hnsw-m8-efc64"
    assert [p.name for p in store_dir.glob("dense-*")] == ["dense-1-hnsw-m8-efc64.faiss"]
    hnsw.close()


def test_auto_is_exact_up_to_the_threshold(store_dir):
    store = IndexStore.open(store_dir, MANIFEST, dense=DenseIndexSettings(type="auto", auto_threshold=400))
    assert store.stats()["dense_index"]["type"] == "flat"
    store.close()
    store = IndexStore.open(store_dir, MANIFEST, dense=DenseIndexSettings(type="auto", auto_threshold=399))
    assert store.stats()["dense_index"] == {"type": "ivf", "structure": "ivf-10", "vectors": 400, "lists": 10,
                                            "nprobe": 10}  # 2·√400 = 40 lists, capped at one per 39 vectors
    store.close()
