"""The index on disk: incremental updates, deletion, locking, manifest checks, crash safety, filters in the search."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from rag.eval.datasets import read_squad, text_document
from rag.errors import DocumentConflictError, IndexLockedError, IndexMismatchError, NotFoundError, RagError
from rag.load import document_id
from rag.store import FORMAT, SearchFilter
from rag.store.embedded import IndexStore

from .conftest import ROOT, shared

pytestmark = pytest.mark.integration


def _docs():
    return [
        text_document("/corpus/telework.txt", "Telework", "Staff may work remotely up to three days per week.", "en"),
        text_document("/corpus/archive.txt", "Archive", "Files are archived for ten years in the basement.", "en"),
        text_document("/corpus/conges.txt", "Congés", "Les agents ont droit à vingt-six jours de congé par an.", "fr"),
    ]


def _consistent(store: IndexStore) -> dict:
    figures = store.stats()
    assert figures["chunks"] == figures["vectors"] == figures["bm25_rows"], figures
    return figures


def test_ingest_search_and_incremental(fresh_pipeline):
    report = fresh_pipeline.ingest_documents(_docs())
    assert len(report.added) == 3 and report.chunks_embedded == report.chunks == 3
    again = fresh_pipeline.ingest_documents(_docs())
    assert len(again.unchanged) == 3 and again.chunks_embedded == 0
    hits = fresh_pipeline.search("how many days of remote work", k=1)
    assert hits[0].chunk.title == "Telework"

    changed = _docs()
    changed[1] = text_document("/corpus/archive.txt", "Archive", "Files are now shredded after five years.", "en")
    update = fresh_pipeline.ingest_documents(changed)
    assert update.updated == [changed[1].doc_id] and update.chunks_embedded == 1
    texts = [h.chunk.text for h in fresh_pipeline.search("archived ten years basement", k=10)]
    assert not any("basement" in t for t in texts), "replaced text must never be returned again"
    assert _consistent(fresh_pipeline.store)["documents"] == 3


def test_delete_removes_from_every_part(fresh_pipeline):
    fresh_pipeline.ingest_documents(_docs())
    target = _docs()[0].doc_id
    fresh_pipeline.delete([target])
    assert target not in {d.doc_id for d in fresh_pipeline.documents()}
    for mode in ("dense", "bm25", "hybrid"):
        hits = fresh_pipeline.search("work remotely three days per week", k=10, mode=mode)
        assert all(h.chunk.doc_id != target for h in hits), mode
    assert _consistent(fresh_pipeline.store)["chunks"] == 2
    with pytest.raises(NotFoundError):
        fresh_pipeline.delete([target])


def test_filters_apply_inside_the_search(fresh_pipeline):
    docs = [text_document(f"/corpus/n{i}.txt", f"Note {i}", f"Remote work note number {i} about telework.", "en")
            for i in range(30)]
    fresh_pipeline.ingest_documents(docs[:25], labels=["public"])
    fresh_pipeline.ingest_documents(docs[25:], labels=["restricted"])
    only = SearchFilter(labels=frozenset({"restricted"}))  # public docs need "public", which this caller lacks
    for mode in ("dense", "bm25", "hybrid"):
        hits = fresh_pipeline.search("remote work telework note", k=5, mode=mode, search_filter=only)
        assert len(hits) == 5, "top-k must be k permitted results, not k results filtered afterwards"
        assert {h.chunk.doc_id for h in hits} == {d.doc_id for d in docs[25:]}
    by_doc = SearchFilter(doc_ids=frozenset({docs[3].doc_id}))
    assert {h.chunk.doc_id for h in fresh_pipeline.search("telework", k=5, search_filter=by_doc)} == {docs[3].doc_id}
    by_lang = SearchFilter(langs=frozenset({"fr"}))
    assert fresh_pipeline.search("telework", k=5, search_filter=by_lang) == []


def test_dense_search_equals_brute_force(fresh_pipeline, embedder):
    dataset = read_squad(shared("qa/xquad/xquad.en.json"), "xquad-en")
    fresh_pipeline.ingest_documents(dataset.documents[:60])
    store = fresh_pipeline.store
    rows = store.db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows])
    matrix = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    for question in dataset.questions[:10]:
        query = embedder.encode([question.text])[0]
        expected = ids[np.argsort(-(matrix @ query), kind="stable")[:10]]
        got = [cid for cid, _ in store.search(vector=query, tokens=[], depth=10)[0]]
        assert list(expected) == got


def test_second_writer_is_refused(fresh_pipeline):
    fresh_pipeline.ingest_documents(_docs()[:1])
    with fresh_pipeline.store.writer():
        other = IndexStore.open(fresh_pipeline.settings.index_dir, fresh_pipeline.manifest())
        with pytest.raises(IndexLockedError, match="locked by another writer"):
            with other.writer():
                pass
        other.close()


def test_a_writer_waits_for_the_lock_up_to_lock_wait_s(fresh_pipeline):
    fresh_pipeline.ingest_documents(_docs()[:1])
    directory, manifest = fresh_pipeline.settings.index_dir, fresh_pipeline.manifest()
    holder = fresh_pipeline.store.writer()
    holder.__enter__()
    release = threading.Timer(0.5, holder.__exit__, (None, None, None))
    release.start()
    waiting = IndexStore.open(directory, manifest, lock_wait_s=30)
    try:
        with waiting.writer() as writer:  # taken once the holder lets go, long before 30 s
            assert writer.commit(deletes=["no-such-document"]) > 0
        assert not release.is_alive()
        with fresh_pipeline.store.writer():
            impatient = IndexStore.open(directory, manifest, lock_wait_s=0.3)
            with pytest.raises(IndexLockedError, match=r"locked by another writer \(pid \d+\) for 0.3 s"):
                with impatient.writer():
                    pass
            impatient.close()
    finally:
        release.join()
        waiting.close()


def test_other_embedder_is_refused_until_reindex(fresh_pipeline, make_settings, embedder):
    from rag.pipeline import Pipeline

    fresh_pipeline.ingest_documents(_docs())
    fresh_pipeline.close()
    settings = make_settings(index_dir=fresh_pipeline.settings.index_dir, chunking={"max_tokens": 120})
    changed = Pipeline(settings, embedder=embedder)
    with pytest.raises(IndexMismatchError, match="rag reindex"):
        changed.search("remote work")
    report = changed.reindex(progress=False)
    assert len(report.updated) == 3
    assert changed.search("remote work", k=1)[0].chunk.title == "Telework"
    changed.close()


def test_save_then_load_gives_identical_results(fresh_pipeline, make_settings, embedder):
    from rag.pipeline import Pipeline

    fresh_pipeline.ingest_documents(_docs())
    before = [h.to_dict() for h in fresh_pipeline.search("congé jours par an", k=3)]
    reopened = Pipeline(make_settings(index_dir=fresh_pipeline.settings.index_dir), embedder=embedder)
    assert [h.to_dict() for h in reopened.search("congé jours par an", k=3)] == before
    reopened.close()


_WORKER = textwrap.dedent(
    """
    import sys
    from rag.eval.datasets import read_squad
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    settings = Settings(index_dir=sys.argv[1], data_dir=sys.argv[2], ingest={"commit_every_chunks": 8})
    docs = read_squad(sys.argv[3], "xquad").documents[:120]
    def report(generation, doc_ids):
        print("COMMIT", generation, ",".join(doc_ids), flush=True)
    Pipeline(settings).ingest_documents(docs, on_commit=report)
    print("DONE", flush=True)
    """
)


def _record_commit(line: str, committed: dict[int, list[str]]) -> bool:
    """Record the worker's `COMMIT generation ids` line in `committed`; whether the line was one."""
    if not line.startswith("COMMIT"):
        return False
    _, generation, ids = line.split()
    committed[int(generation)] = ids.split(",")
    return True


@pytest.mark.parametrize("kill_after_commits, delay", [(2, 0.0), (3, 0.05), (5, 0.2)])
def test_sigkill_during_ingestion_leaves_last_committed_state(tmp_path, kill_after_commits, delay, embedder, make_settings):
    from rag.pipeline import Pipeline

    xquad = shared("qa/xquad/xquad.en.json")
    index_dir = tmp_path / "index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(index_dir), str(tmp_path / "data"), str(xquad)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    committed: dict[int, list[str]] = {}
    for line in worker.stdout:
        if _record_commit(line, committed) and len(committed) == kill_after_commits:
            time.sleep(delay)
            worker.send_signal(signal.SIGKILL)
            break
    worker.wait(timeout=60)
    assert worker.returncode == -signal.SIGKILL, "the worker finished before it could be killed"
    for line in worker.stdout:  # commits reported during the delay, still in the pipe: at most one goes unreported
        _record_commit(line, committed)

    reopened = Pipeline(make_settings(index_dir=index_dir), embedder=embedder)
    figures = _consistent(reopened.store)
    generation = figures["generation"]
    last_seen = max(committed)
    assert generation in (last_seen, last_seen + 1), (generation, last_seen)
    stored = {d.doc_id for d in reopened.documents()}
    expected = {doc for g in range(1, last_seen + 1) for doc in committed[g]}
    if generation == last_seen:
        assert stored == expected
    else:  # killed after the commit but before it could report it
        assert expected < stored
    hits = reopened.search("Super Bowl", k=5)
    assert all(h.chunk.doc_id in stored for h in hits)
    reopened.close()


def test_manifest_records_producer(fresh_pipeline):
    fresh_pipeline.ingest_documents(_docs()[:1])
    manifest = json.loads((fresh_pipeline.settings.index_dir / "manifest.json").read_text())
    assert manifest["format"] == "sovereign-rag-index/2"
    assert manifest["embedder"]["name"] == "use-multilingual-v3" and len(manifest["embedder"]["fingerprint"]) == 64
    assert manifest["chunking"] == fresh_pipeline.settings.chunking.model_dump()
    assert manifest["project_version"]


def test_chunk_offsets_slice_back_to_text(fresh_pipeline):
    dataset = read_squad(shared("qa/xquad/xquad.de.json"), "xquad-de")
    docs = [replace(d, blocks=[]) for d in dataset.documents[:20]]
    fresh_pipeline.ingest_documents(docs)
    for doc in docs:
        text, _ = fresh_pipeline.store.document_text(doc.doc_id)
        rows = fresh_pipeline.store.db.execute(
            'SELECT start, "end", text FROM chunks WHERE doc_id = ? ORDER BY ordinal', (doc.doc_id,)
        ).fetchall()
        assert rows and all(text[s:e] == t for s, e, t in rows)
        assert rows[0][0] == 0 and rows[-1][1] == len(text.rstrip())


def test_document_ids_carry_128_bits_of_hash():
    assert document_id("/corpus/Congés 2024.txt") == "congés-2024-" + hashlib.sha256(
        "/corpus/Congés 2024.txt".encode()).hexdigest()[:32]
    same_slug = {document_id(f"/legilux/{n}/fr.xml") for n in range(5000)}
    assert len(same_slug) == 5000 and all(len(i) == len("fr-") + 32 for i in same_slug)


def test_a_put_never_replaces_a_document_of_another_source(fresh_pipeline, monkeypatch):
    """Ids cannot collide by chance any more; a collision is forced here by replacing the id function."""
    from rag.load import document as load

    original = _docs()
    fresh_pipeline.ingest_documents(original)
    victim = original[0]
    real_id = load.document_id
    monkeypatch.setattr(load, "document_id", lambda source: real_id(victim.source if "intruder" in source else source))
    intruder = text_document("/elsewhere/intruder.txt", "Intruder", "Staff may never work remotely.", "en")
    assert intruder.doc_id == victim.doc_id

    report = fresh_pipeline.ingest_documents([intruder, _docs()[1]])
    assert report.added == report.updated == [] and len(report.unchanged) == 1
    assert [source for source, _ in report.failed] == [intruder.source]
    assert "another source" in report.failed[0][1] and victim.source not in report.failed[0][1]
    with pytest.raises(DocumentConflictError, match="rename the file"):  # an upload: all or nothing
        fresh_pipeline.ingest_documents([intruder], atomic=True)
    row = {"doc_id": victim.doc_id, "source": intruder.source, "title": "x", "format": "text", "lang": "en",
           "sha256": "0", "labels": ["public"], "pages": None, "chars": 1, "text": "x", "blocks": "[]"}
    with fresh_pipeline.store.writer() as writer, pytest.raises(DocumentConflictError):
        writer.commit([(row, [])])  # the store refuses it too, storing nothing
    stored = fresh_pipeline.document(victim.doc_id)
    assert stored.source == victim.source and stored.sha256 == victim.sha256
    assert fresh_pipeline.search("work remotely", k=1)[0].chunk.text == victim.text
    assert _consistent(fresh_pipeline.store)["documents"] == 3


def test_reindex_migrates_the_ids_of_a_format_1_index(fresh_pipeline, embedder, make_settings):
    from rag.pipeline import Pipeline

    fresh_pipeline.ingest_documents(_docs())
    index_dir = fresh_pipeline.settings.index_dir
    fresh_pipeline.close()
    old = sqlite3.connect(index_dir / "meta.sqlite")  # as version 1 wrote it: 32 bits of sha1, format 1
    for (doc_id, source) in old.execute("SELECT doc_id, source FROM documents").fetchall():
        old_id = doc_id.rsplit("-", 1)[0] + "-" + hashlib.sha1(source.encode()).hexdigest()[:8]
        old.execute("UPDATE documents SET doc_id = ? WHERE doc_id = ?", (old_id, doc_id))
        old.execute("UPDATE chunks SET doc_id = ? WHERE doc_id = ?", (old_id, doc_id))
    manifest = json.loads(old.execute("SELECT value FROM state WHERE key = 'manifest'").fetchone()[0])
    old.execute("UPDATE state SET value = ? WHERE key = 'manifest'",
                (json.dumps({**manifest, "format": "sovereign-rag-index/1"}),))
    old.commit()
    old.close()

    upgraded = Pipeline(make_settings(index_dir=index_dir), embedder=embedder)
    with pytest.raises(IndexMismatchError, match="rag reindex"):
        upgraded.search("remote work")
    report = upgraded.reindex(progress=False)
    assert sorted(report.updated) == sorted(d.doc_id for d in _docs())
    assert {d.doc_id for d in upgraded.documents()} == {d.doc_id for d in _docs()}
    assert upgraded.store.manifest["format"] == FORMAT
    assert _consistent(upgraded.store)["documents"] == 3
    assert upgraded.ingest_documents(_docs()).unchanged == [d.doc_id for d in _docs()]
    upgraded.close()


def test_pages_read_by_ocr_are_stored_and_listed(tmp_path):
    """The document dict's pages_ocr / pages_without_text come back on the record and in its JSON form; a dict
    without them stores empty lists."""
    from .test_dense import MANIFEST, _chunks, _document, _unit

    store = IndexStore.open(tmp_path, MANIFEST)
    scanned = {**_document(1), "pages_ocr": [2, 3], "pages_without_text": [4]}
    with store.writer() as writer:
        writer.commit([(scanned, _chunks(1, _unit(2, seed=1))), (_document(2), _chunks(2, _unit(1, seed=2)))])
    first, second = store.documents()
    assert (first.pages_ocr, first.pages_without_text) == ((2, 3), (4,))
    assert first.to_dict()["pages_ocr"] == [2, 3] and first.to_dict()["pages_without_text"] == [4]
    assert (second.pages_ocr, second.pages_without_text) == ((), ())
    store.close()


def test_an_index_made_before_the_page_columns_opens_and_gains_them(tmp_path):
    """An index whose documents table lacks pages_ocr / pages_without_text (made by the previous release) opens
    without a reindex, keeps its documents and searches, and stores the new fields from then on."""
    from .test_dense import MANIFEST, _chunks, _document, _unit

    store = IndexStore.open(tmp_path, MANIFEST)
    with store.writer() as writer:
        writer.commit([(_document(1), _chunks(1, _unit(3, seed=1)))])
    store.close()
    with sqlite3.connect(tmp_path / "meta.sqlite") as db:  # back to the previous schema
        db.execute("ALTER TABLE documents DROP COLUMN pages_ocr")
        db.execute("ALTER TABLE documents DROP COLUMN pages_without_text")
    store = IndexStore.open(tmp_path, MANIFEST)
    [old] = store.documents()
    assert old.doc_id == "doc-1" and old.pages_ocr == () and old.chunks == 3
    assert len(store.search(vector=_unit(1, seed=1)[0], tokens=["note"], depth=5)[1]) == 3
    with store.writer() as writer:
        writer.commit([({**_document(2), "pages_ocr": [1]}, _chunks(2, _unit(1, seed=2)))])
    assert store.document("doc-2").pages_ocr == (1,)
    store.close()


def test_a_closed_store_refuses_use(tmp_path):
    from .test_dense import MANIFEST

    store = IndexStore.open(tmp_path, MANIFEST)
    store.close()
    with pytest.raises(RagError, match="closed"):
        store.search(vector=None, tokens=["note"], depth=5)
    with pytest.raises(RagError, match="closed"):
        store.writer()
