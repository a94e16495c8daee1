"""Search latency while a write rebuilds the search structures, in one process (a server thread uploading while
others search).

    python -m bench.search_during_rebuild                 # bench/results/search_during_rebuild.json
    git archive <commit> rag | tar -x -C /tmp/before       # another checkout's store, measured by the same script:
    cd /tmp/before && PYTHONPATH=. python /path/to/bench/search_during_rebuild.py --out /tmp/before.json

An index of `--chunks` random unit vectors (384 dimensions, 100 chunks a document, 3 tokens a chunk) with an IVF
structure (`retrieval.dense_index.type: ivf`), so that a rebuild takes seconds; one thread deletes a document (one
commit, one rebuild) while another runs dense searches back to back. Reported: the rebuild's seconds, and the
searches answered during it with their latency (median, max). Only the store's public API is used, so the script
also measures checkouts from before the search structures were built beside the ones in use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rag.settings import DenseIndexSettings
from rag.store import NewChunk, new_manifest
from rag.store.embedded import IndexStore

DIM = 384
PER_DOC = 100


def build(directory: Path, chunks: int, settings: DenseIndexSettings) -> IndexStore:
    rng = np.random.default_rng(0)
    store = IndexStore.open(directory, new_manifest({"name": "random", "dim": DIM}, {}), dense=settings)
    with store.writer() as writer:
        puts = []
        for doc in range(chunks // PER_DOC):
            vectors = rng.standard_normal((PER_DOC, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            row = {"doc_id": f"doc-{doc}", "source": f"/bench/{doc}", "title": str(doc), "format": "text",
                   "lang": "en", "sha256": str(doc), "labels": ["public"], "pages": None, "chars": 1, "text": "x",
                   "blocks": "[]"}
            puts.append((row, [NewChunk(ordinal=j, start=0, end=1, page=None, heading_path=(), lang="en",
                                        content_hash=f"{doc}-{j}", text="x", tokens=["t", f"d{doc}", f"c{j}"],
                                        vector=v) for j, v in enumerate(vectors)]))
        writer.commit(puts)
    return store


def measure(store: IndexStore, seconds_before: float = 1.0) -> dict:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((64, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    latencies: list[tuple[float, float]] = []  # (start, seconds)
    done = threading.Event()

    def search() -> None:
        i = 0
        while not done.is_set():
            started = time.perf_counter()
            store.search(vector=queries[i % len(queries)], tokens=[], depth=10)
            latencies.append((started, time.perf_counter() - started))
            i += 1

    searcher = threading.Thread(target=search)
    searcher.start()
    time.sleep(seconds_before)
    began = time.perf_counter()
    with store.writer() as writer:
        writer.commit(deletes=["doc-0"])
    ended = time.perf_counter()
    time.sleep(0.5)
    done.set()
    searcher.join()
    during = [s for start, s in latencies if start < ended and start + s > began]
    before = [s for start, s in latencies if start + s <= began]
    return {
        "rebuild_s": round(ended - began, 2),
        "searches_during_rebuild": len(during),
        "during_median_ms": round(float(np.median(during)) * 1000, 2) if during else None,
        "during_max_ms": round(max(during) * 1000, 1) if during else None,
        "before_median_ms": round(float(np.median(before)) * 1000, 2) if before else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_during_rebuild.json"))
    args = parser.parse_args()
    settings = DenseIndexSettings(type="ivf")
    with tempfile.TemporaryDirectory() as scratch:
        store = build(Path(scratch), args.chunks, settings)
        result = {"chunks": args.chunks, "dense_index": store.stats()["dense_index"], **measure(store),
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
        store.close()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
