"""Search structures shared by several processes: damaged files are rebuilt, publishing never removes a newer
generation or a live process's temporary file, and searches keep the previous generation while the next one loads.
Vectors are written by hand (tests/test_dense.py), so no embedder is loaded; `store_dir` is the index built there."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from rag.settings import DenseIndexSettings
from rag.store.embedded import IndexStore

from .test_dense import DIM, MANIFEST, _unit, store_dir  # noqa: F401 (store_dir is a fixture)

FLAT = DenseIndexSettings(type="flat")


def _open(directory) -> IndexStore:
    return IndexStore.open(directory, MANIFEST, dense=FLAT)


def _results(store: IndexStore) -> tuple[list[int], list[int]]:
    query = _unit(1, seed=5)[0]
    dense, lexical = store.search(vector=query, tokens=["note", "n7"], depth=10)
    return [c for c, _ in dense], [c for c, _ in lexical]


def _damage(kind: str, dense: Path, lexical: Path) -> None:
    if kind == "truncated dense":
        dense.write_bytes(dense.read_bytes()[:200])
    elif kind == "dense of other rows":  # loads fine, but holds another generation's rows
        faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)), str(dense))
    elif kind == "corrupt lexical":
        (lexical / "lexical.json").write_text('{"size": 4')
    else:  # a BM25 matrix of another size
        (lexical / "lexical.json").write_text('{"size": 3, "vocab": {}}')


@pytest.mark.parametrize("kind", ["truncated dense", "dense of other rows", "corrupt lexical", "lexical of other rows"])
def test_a_damaged_structure_is_rebuilt_from_sqlite(store_dir, kind):  # noqa: F811
    reference = _open(store_dir)
    expected = _results(reference)
    reference.close()
    [dense] = store_dir.glob("dense-*.faiss")
    [lexical] = store_dir.glob("lexical-*")
    _damage(kind, dense, lexical)

    repaired = _open(store_dir)
    assert _results(repaired) == expected
    figures = repaired.stats()
    assert figures["chunks"] == figures["vectors"] == figures["bm25_rows"] == 400
    rebuilt = "dense_build" if "dense" in kind else "lexical_build"
    assert rebuilt in repaired.refresh_seconds, repaired.refresh_seconds
    repaired.close()

    again = _open(store_dir)  # the rebuilt structure was published in place of the damaged one
    assert _results(again) == expected
    assert again.refresh_seconds.keys() >= {"dense_load", "lexical_load"}, again.refresh_seconds
    again.close()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_publishing_removes_only_older_generations_and_ended_processes_files(store_dir):  # noqa: F811
    store = _open(store_dir)
    generation = store.current().generation
    newer = [store_dir / f"dense-{generation + 5}-flat.faiss", store_dir / f"lexical-{generation + 5}"]
    newer[0].write_bytes(b"published by a process that is ahead")
    newer[1].mkdir()
    live = store_dir / f"dense-{generation + 1}-flat.faiss.tmp-{os.getppid()}-0123abcd"  # pytest's parent runs
    live.write_bytes(b"being written")
    dead = store_dir / f"lexical-{generation + 1}.tmp-{_dead_pid()}-89abcdef"
    dead.mkdir()
    older = store_dir / f"dense-{generation - 1}-hnsw-m8-efc64.faiss"
    older.write_bytes(b"old")

    with store.writer() as writer:
        writer.commit(deletes=["doc-7"])
    assert store.current().generation == generation + 1
    assert all(p.exists() for p in (*newer, live)), "a newer generation or a live process's file was removed"
    assert not dead.exists() and not older.exists()
    assert not list(store_dir.glob(f"dense-{generation}-*")), "the superseded generation stays"
    assert not (store_dir / f"dense-{generation + 1}-flat.faiss").exists(), "stale on arrival: not published"
    assert not any(".tmp-" in p.name and p != live for p in store_dir.iterdir()), "own temporary files left"
    figures = store.stats()
    assert figures["chunks"] == figures["vectors"] == figures["bm25_rows"] == 390

    for path in newer:  # once nothing newer is published, the next generation is
        path.unlink() if path.is_file() else path.rmdir()
    with store.writer() as writer:
        writer.commit(deletes=["doc-8"])
    assert (store_dir / f"dense-{generation + 2}-flat.faiss").is_file()
    assert (store_dir / f"lexical-{generation + 2}" / "lexical.json").is_file()
    store.close()


def test_searches_keep_the_previous_generation_while_the_next_one_loads(store_dir):  # noqa: F811
    reader = _open(store_dir)
    previous = reader.current()
    query = _unit(1, seed=5)[0]
    other = _open(store_dir)  # another process committing
    with other.writer() as writer:
        writer.commit(deletes=["doc-7"])
    other.close()

    publisher = open(store_dir / "structures.lock", "a+")  # a publisher holds the structures: loading must wait
    fcntl.flock(publisher, fcntl.LOCK_EX)
    answered: list = []
    try:
        search = threading.Thread(target=lambda: answered.append((reader.current(), reader.search(
            vector=None, tokens=["n7"], depth=10)[1])))
        search.start()
        search.join(60)
        assert answered, "a search waited for the next generation to load"
        snapshot, hits = answered[0]
        assert snapshot is previous and hits, "the previous generation answers, doc-7 included"
    finally:
        fcntl.flock(publisher, fcntl.LOCK_UN)
        publisher.close()

    deadline = time.monotonic() + 60
    while reader.current().generation == previous.generation and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.current().generation == previous.generation + 1
    assert reader.search(vector=None, tokens=["n7"], depth=10) == ([], [])
    assert len(reader.search(vector=query, tokens=[], depth=400)[0]) == 390
    reader.close()


def test_one_process_builds_a_generation_and_the_others_load_it(store_dir):  # noqa: F811
    first, second = _open(store_dir), _open(store_dir)
    second.current()
    builder = open(store_dir / "build.lock", "a+")  # a third process is building: both wait for the lock
    fcntl.flock(builder, fcntl.LOCK_EX)
    try:
        def commit() -> None:
            with first.writer() as writer:
                writer.commit(deletes=["doc-7"])

        threads = [threading.Thread(target=commit), threading.Thread(target=second.refresh)]
        threads[0].start()
        deadline = time.monotonic() + 60
        while second.generation != 2 and time.monotonic() < deadline:  # committed; its structures wait for the lock
            time.sleep(0.05)
        threads[1].start()
        time.sleep(0.5)  # both wait for the lock now
    finally:
        fcntl.flock(builder, fcntl.LOCK_UN)
        builder.close()
    for thread in threads:
        thread.join(60)
    steps = [first.refresh_seconds.keys(), second.refresh_seconds.keys()]
    assert first.current().generation == second.current().generation == 2
    assert sorted("dense_build" in s for s in steps) == [False, True], steps
    assert sorted("lexical_build" in s for s in steps) == [False, True], steps
    first.close()
    second.close()
