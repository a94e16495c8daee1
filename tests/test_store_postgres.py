"""The PostgreSQL store (rag/store/postgres.py) against a real PostgreSQL 16 + pgvector (tests/pg.py) and the real
embedder: the same pipeline as the embedded backend, filters inside both searches, row-level security, atomic and
concurrent writes, schema versions, migration both ways."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError, DocumentConflictError, IndexMismatchError, NotFoundError
from rag.store import NewChunk, SearchFilter, new_manifest
from rag.store.postgres import SCHEMA_VERSION

from .conftest import EXAMPLES, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
QUERIES = [("How many days of remote work are allowed?", "en"), ("Combien de jours de télétravail ?", "fr"),
           ("Wie lange werden Daten aufbewahrt?", "de"), ("password rotation", "en")]


@pytest.fixture
def pg_settings(postgres, make_settings, monkeypatch):
    monkeypatch.setenv("RAG_STORE_PASSWORD", postgres.password)
    return make_settings(store={"backend": "postgres", "dsn": postgres.database()})


@pytest.fixture
def pg_pipeline(pg_settings, embedder):
    from rag.pipeline import Pipeline

    pipeline = Pipeline(pg_settings, embedder=embedder)
    yield pipeline
    pipeline.close()


def _open(postgres, dim=8, dsn=None):
    from rag.store.postgres import PostgresStore

    os.environ["RAG_STORE_PASSWORD"] = postgres.password
    return PostgresStore.open(dsn=dsn or postgres.database(), manifest=new_manifest({"name": "t", "dim": dim}, {}))


def _doc(doc_id, labels=("public",), lang="en", source=None):
    return {"doc_id": doc_id, "source": source or f"/corpus/{doc_id}.txt", "title": doc_id, "format": "txt",
            "lang": lang, "sha256": f"sha-{doc_id}", "labels": list(labels), "pages": None, "chars": 4,
            "text": f"text of {doc_id}", "blocks": "[]"}


def _chunk(ordinal, vector, tokens=("word",)):
    vector = np.asarray(vector, dtype=np.float32)
    return NewChunk(ordinal=ordinal, start=0, end=4, page=None, heading_path=(), lang="en",
                    content_hash=f"hash-{ordinal}-{vector[0]:.6f}", text=" ".join(tokens), tokens=list(tokens),
                    vector=vector / np.linalg.norm(vector))


def _key(pipeline, ranking):
    records = pipeline.store.chunks([cid for cid, _ in ranking])
    return [(records[cid].doc_id, records[cid].ordinal) for cid, _ in ranking]


def test_the_pipeline_ranks_alike_on_both_backends(pg_pipeline, example_pipeline):
    """Same corpus, same embedder: BM25 lists identical with the same scores, dense and fused top 10 the same,
    counts agree; ingesting again embeds nothing."""
    report = pg_pipeline.ingest([EXAMPLES], progress=False)
    assert not report.failed and report.chunks_embedded > 0
    for query, lang in QUERIES:
        pg_dense, pg_lexical = pg_pipeline.retriever.rankings(query, lang, 20)
        dense, lexical = example_pipeline.retriever.rankings(query, lang, 20)
        assert _key(pg_pipeline, pg_lexical) == _key(example_pipeline, lexical)
        np.testing.assert_allclose([s for _, s in pg_lexical], [s for _, s in lexical], rtol=1e-5)
        assert _key(pg_pipeline, pg_dense[:10]) == _key(example_pipeline, dense[:10])
        np.testing.assert_allclose([s for _, s in pg_dense[:10]], [s for _, s in dense[:10]], atol=1e-5)
        hits = [(h.chunk.doc_id, h.chunk.ordinal) for h in pg_pipeline.retriever.search(query, k=5, lang=lang)]
        assert hits == [(h.chunk.doc_id, h.chunk.ordinal) for h in example_pipeline.retriever.search(query, k=5,
                                                                                                   lang=lang)]
    stats, embedded = pg_pipeline.store.stats(), example_pipeline.store.stats()
    assert {k: stats[k] for k in ("documents", "chunks", "vectors", "bm25_rows", "languages")} == {
        k: embedded[k] for k in ("documents", "chunks", "vectors", "bm25_rows", "languages")}
    assert stats["tsvector_rows"] == stats["chunks"]
    again = pg_pipeline.ingest([EXAMPLES], progress=False)
    assert again.chunks_embedded == 0 and len(again.unchanged) == stats["documents"]


def test_a_selective_filter_still_gets_depth_admitted_rows(postgres):
    """HNSW filters after its graph search: with one document of 40 admitted (by its label), the index alone returns fewer than
    `depth`; the store falls back to an exact search over the admitted rows and returns the true nearest ones."""
    rng = np.random.default_rng(7)
    store = _open(postgres, dim=16)
    vectors = {}
    with store.writer() as writer:
        for d in range(40):
            rows = rng.normal(size=(50, 16)).astype(np.float32)
            vectors[f"d{d}"] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
            labels = ("rare",) if d == 3 else ("public",)
            writer.commit([(_doc(f"d{d}", labels), [_chunk(i, v, ("word", f"t{i % 7}")) for i, v in enumerate(rows)])])
    query = rng.normal(size=16).astype(np.float32)
    query /= np.linalg.norm(query)
    only = SearchFilter(labels=frozenset({"rare"}))
    with store._transaction() as conn:  # what HNSW alone gives under this filter
        conn.execute("SET LOCAL hnsw.ef_search = 40")
        conn.execute("SET LOCAL enable_seqscan = off")  # the graph, as the planner picks it on a large table
        alone = conn.execute("SELECT c.id FROM chunks c WHERE c.labels <@ '{rare}' ORDER BY c.embedding <#> %s LIMIT 30",
                             (query,)).fetchall()
    assert len(alone) < 30  # the case to handle exists
    dense, lexical = store.search(vector=query, tokens=["word"], depth=30, search_filter=only)
    assert len(dense) == 30 and len(lexical) == 30
    records = store.chunks([cid for cid, _ in dense + lexical])
    assert {records[cid].doc_id for cid, _ in dense + lexical} == {"d3"}
    expected = np.sort(vectors["d3"] @ query)[::-1][:30]
    np.testing.assert_allclose([s for _, s in dense], expected, atol=1e-5)
    tiny = SearchFilter(doc_ids=frozenset({"d5"}), labels=frozenset({"public"}))
    assert len(store.search(vector=query, tokens=["t3"], depth=30, search_filter=tiny)[1]) == len(
        [i for i in range(50) if i % 7 == 3])
    store.close()


def test_row_level_security_hides_what_the_labels_do_not_admit(postgres):
    """A raw query that forgot the filter, as the service's role, sees only what `rag.labels` admits."""
    import psycopg

    dsn = postgres.database()
    store = _open(postgres, dsn=dsn)
    with store.writer() as writer:
        writer.commit([(_doc("open", ("public",)), [_chunk(0, [1, 0, 0, 0, 0, 0, 0, 1])]),
                       (_doc("hr", ("public", "hr")), [_chunk(0, [0, 1, 0, 0, 0, 0, 0, 1], ("salary",))])])
    with psycopg.connect(dsn, password=postgres.password) as conn:
        conn.execute("SET rag.labels = '{public}'")
        assert conn.execute("SELECT doc_id FROM chunks").fetchall() == [("open",)]
        assert conn.execute("SELECT doc_id FROM documents").fetchall() == [("open",)]
        assert conn.execute("SELECT term FROM postings").fetchall() == [("word",)]
        conn.execute("RESET rag.labels")  # no setting at all: only unlabelled rows, and there are none
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM postings").fetchone()[0] == 0
        conn.execute("SET rag.labels = '{hr}'")  # hr alone does not admit a public+hr document
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    public = SearchFilter(labels=frozenset({"public"}))
    assert [d.doc_id for d in store.documents(public)] == ["open"]
    with pytest.raises(NotFoundError):
        store.document("hr", public)
    assert store.search(vector=None, tokens=["salary"], depth=5, search_filter=public) == ([], [])
    assert len(store.search(vector=None, tokens=["salary"], depth=5)[1]) == 1
    store.close()


def test_delete_conflict_and_statistics(postgres):
    """Deleting removes text, vectors and term statistics in the same commit; a put from another source is refused
    whole; the BM25 statistics always equal a recount."""
    store = _open(postgres)
    with store.writer() as writer:
        g1 = writer.commit([(_doc("a"), [_chunk(0, [1] * 8, ("alpha", "beta", "beta"))]),
                            (_doc("b"), [_chunk(0, [2, 1, 1, 1, 1, 1, 1, 1], ("beta",))])])
        with pytest.raises(DocumentConflictError):
            writer.commit([(_doc("c"), [_chunk(0, [1] * 8)]), (_doc("a", source="/elsewhere"), [])])
        assert [d.doc_id for d in store.documents()] == ["a", "b"]
        g2 = writer.commit(deletes=["a"])
    assert g2 > g1 and store.generation == g2
    with pytest.raises(NotFoundError):
        store.document_text("a")
    assert store.cached_vectors("a") == {}
    _check_consistent(store)
    assert store.stats()["bm25_statistics"] == {"chunks": 1, "tokens": 1}
    store.close()


def _check_consistent(store) -> dict:
    """Every invariant of a committed state; returns the stats."""
    stats = store.stats()
    assert stats["chunks"] == stats["vectors"] == stats["bm25_rows"] == stats["tsvector_rows"]
    with store._transaction() as conn:
        assert conn.execute("SELECT count(*) FROM documents d WHERE chunks <> "
                            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*), coalesce(sum(length), 0) FROM chunks").fetchone() == (
            stats["bm25_statistics"]["chunks"], stats["bm25_statistics"]["tokens"])
        recount = dict(conn.execute("SELECT t, count(*) FROM chunks, unnest(terms) t GROUP BY t").fetchall())
        assert dict(conn.execute("SELECT term, df FROM terms").fetchall()) == recount
        assert sorted(conn.execute("SELECT term, chunk_id, tf, length, doc_lang, labels FROM postings")) == sorted(
            conn.execute("SELECT t.term, c.id, t.tf, c.length, c.doc_lang, c.labels FROM chunks c, "
                         "unnest(c.terms, c.tfs) t (term, tf)"))
        assert conn.execute("SELECT count(*) - count(DISTINCT source) FROM documents").fetchone()[0] == 0
    return stats


def test_credentials_are_never_printed(postgres, monkeypatch):
    from rag.store.postgres import PostgresStore, redact

    dsn = postgres.database()
    manifest = new_manifest({"name": "t", "dim": 8}, {})
    with pytest.raises(ConfigError, match="must not carry the password"):
        PostgresStore.open(dsn=dsn + " password=hunter2", manifest=manifest)
    monkeypatch.setenv("RAG_STORE_PASSWORD", "wrong-secret")
    with pytest.raises(ConfigError) as refused:
        PostgresStore.open(dsn=dsn, manifest=manifest)
    assert "wrong-secret" not in str(refused.value) and "cannot connect" in str(refused.value)
    assert "hunter2" not in redact("postgresql://rag:hunter2@db.example/rag")
    monkeypatch.delenv("RAG_STORE_PASSWORD")
    secret_file = Path(postgres.socket_dir).parent / "password"
    secret_file.write_text(postgres.password + "\n")
    store = PostgresStore.open(dsn=dsn, manifest=manifest, password_file=secret_file)
    assert postgres.password not in repr(store.stats())
    store.close()


def test_a_host_outside_the_allow_list_is_refused_before_libpq_connects(tmp_path):
    """libpq's sockets are native, out of the egress guard's sight: the store checks the DSN's hosts with the guard
    first, and the command fails with the guard's message instead of a connection attempt."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_STORE__BACKEND": "postgres",
           "RAG_STORE__DSN": "host=192.0.2.1 dbname=rag user=rag_service connect_timeout=30",
           "RAG_INDEX_DIR": str(tmp_path / "index")}
    refused = subprocess.run([sys.executable, "-m", "rag", "db", "upgrade"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode != 0
    assert "192.0.2.1" in refused.stderr and "sovereignty.allowed_hosts" in refused.stderr


def test_schema_versions_upgrade_and_refusal(postgres, pg_settings, tmp_path):
    """`rag db upgrade` creates the schema; `rag stats` and `rag config show` work on it without printing the password;
    a newer unknown version is refused by the store and the command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_STORE__BACKEND": "postgres",
           "RAG_STORE__DSN": pg_settings.store.dsn, "RAG_INDEX_DIR": str(tmp_path / "index"),
           "RAG_DATA_DIR": str(pg_settings.data_dir)}
    run = [sys.executable, "-m", "rag", "db", "upgrade"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert f"schema version 0 -> {SCHEMA_VERSION}" in first.stdout
    assert "is current" in subprocess.run(run, env=env, capture_output=True, text=True, timeout=300).stdout
    for command in (["stats"], ["config", "show"]):  # the password never shows; the DSN does
        shown = subprocess.run([sys.executable, "-m", "rag", *command], env=env, capture_output=True, text=True,
                               timeout=300)
        assert shown.returncode == 0, shown.stderr
        assert "rag_service" in shown.stdout and postgres.password not in shown.stdout + shown.stderr
    dbname = pg_settings.store.dsn.split("dbname=")[1].split()[0]
    with postgres.admin(dbname) as conn:
        conn.execute("UPDATE rag_schema SET version = 99")
    refused = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "newer than this release knows" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with pytest.raises(IndexMismatchError, match="version 99"):
        _open(postgres, dsn=pg_settings.store.dsn)


def test_a_version_1_database_upgrades_to_postings_that_rank_alike(postgres):
    """Migration 2 builds the posting table from the stored chunks: a database at schema version 1 (no postings, the
    GIN index over chunks.terms) holding documents gives, once upgraded, the same BM25 ranking and a consistent
    state."""
    dsn = postgres.database()
    store = _open(postgres, dsn=dsn)
    words = ["alpha", "beta", "gamma", "delta"]
    with store.writer() as writer:
        for d in range(6):
            writer.commit([(_doc(f"d{d}", ("public",) if d % 2 else ()), [
                _chunk(i, [d + 1, i, 1, 1, 1, 1, 1, 1], [words[(d + i + j) % 4] for j in range(1 + (d * i) % 5)])
                for i in range(5)])])
    before = store.search(vector=None, tokens=words, depth=50)[1]
    assert len(before) == 30
    store.close()
    with postgres.admin(dsn.split("dbname=")[1].split()[0]) as conn:  # back to version 1
        conn.execute("DROP TABLE postings")
        conn.execute("CREATE INDEX chunks_by_terms ON chunks USING gin (terms)")
        conn.execute("UPDATE rag_schema SET version = 1")
    store = _open(postgres, dsn=dsn)
    assert store.stats()["schema_version"] == SCHEMA_VERSION
    after = store.search(vector=None, tokens=words, depth=50)[1]
    assert sorted(dict(after)) == sorted(dict(before))  # equal scores may swap places: sums in another order
    np.testing.assert_allclose([dict(after)[cid] for cid, _ in before], [s for _, s in before], rtol=1e-12)
    _check_consistent(store)
    store.close()


def test_migrate_both_ways_without_embedding(example_pipeline, pg_settings, tmp_path):
    """Embedded -> PostgreSQL -> a new embedded index: counts equal, the same passages found."""
    from rag.cli_db import copy_index
    from rag.pipeline import Pipeline

    source = example_pipeline.settings.index_dir
    there = copy_index(pg_settings, to="postgres", index_dir=source)
    back = copy_index(pg_settings, to="embedded", index_dir=tmp_path / "back")
    assert there["chunks"] == back["chunks"] == example_pipeline.store.stats()["chunks"] > 0
    restored = Pipeline(pg_settings.model_copy(update={"index_dir": tmp_path / "back",
                                                       "store": pg_settings.store.model_copy(
                                                           update={"backend": "embedded"})}),
                        embedder=example_pipeline.embedder)
    for query, lang in QUERIES:
        assert [(h.chunk.doc_id, h.chunk.ordinal) for h in restored.retriever.search(query, k=5, lang=lang)] == [
            (h.chunk.doc_id, h.chunk.ordinal) for h in example_pipeline.retriever.search(query, k=5, lang=lang)]
    restored.close()


def test_two_ingests_killed_at_random_points_leave_whole_documents(pg_pipeline, pg_settings, tmp_path):
    """Two `rag ingest` processes on different folders against one database, SIGKILLed at random moments, then run
    to the end: every document whole or absent, none twice, every count in agreement."""
    folders = [tmp_path / "one", tmp_path / "two"]
    for n, folder in enumerate(folders):
        folder.mkdir()
        for source in sorted(EXAMPLES.iterdir())[n::2]:
            shutil.copy(source, folder)
        for i in range(6):
            (folder / f"note-{n}-{i}.txt").write_text(
                f"Note {i} of folder {n}. " + " ".join(f"Clause {j}: item {i * j} applies to case {n}." for j in
                                                        range(120)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_STORE__BACKEND": "postgres",
           "RAG_STORE__DSN": pg_settings.store.dsn, "RAG_INDEX_DIR": str(tmp_path / "index"),
           "RAG_DATA_DIR": str(pg_settings.data_dir), "RAG_INGEST__COMMIT_EVERY_CHUNKS": "8"}
    rng = random.Random(17)
    store = pg_pipeline.store
    for round_ in range(3):
        processes = [subprocess.Popen([sys.executable, "-m", "rag", "ingest", "-q", str(f)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for f in folders]
        time.sleep(rng.uniform(5, 20))  # the models load in the first seconds, then commits of 8 chunks
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()
        _check_consistent(store)
    finished = [subprocess.Popen([sys.executable, "-m", "rag", "ingest", "-q", str(f)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for f in folders]
    for process in finished:
        assert process.wait(timeout=600) == 0, process.stderr.read()
    stats = _check_consistent(store)
    expected = sum(1 for f in folders for _ in f.iterdir())
    assert stats["documents"] == expected
