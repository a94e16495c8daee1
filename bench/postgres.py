"""The PostgreSQL store beside the embedded one on synthetic chunks: commit throughput, time from commit to
searchable, search p50/p95 (hybrid: dense + BM25 in one call) with 1 and 2 replicas (processes) querying.

    python -m bench.postgres --chunks 20000 --queries 200

Random unit vectors (384 dimensions) and Zipf-distributed tokens stand in for a corpus: what is measured is the
store, not the embedder. Results: bench/results/postgres-<chunks>.json; figures in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.stores import open_bench_store, postgres_server, replicas

DIM = 384
PER_DOC = 50


def _corpus(chunks: int, seed: int = 0):
    from rag.store import NewChunk

    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20000)]
    for d in range(chunks // PER_DOC):
        vectors = rng.normal(size=(PER_DOC, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for i in range(PER_DOC):
            tokens = [vocab[min(int(z), len(vocab)) - 1] for z in rng.zipf(1.3, size=60)]
            rows.append(NewChunk(ordinal=i, start=0, end=1, page=None, heading_path=(), lang="en",
                                 content_hash=f"{d}-{i}", text=" ".join(tokens), tokens=tokens, vector=vectors[i]))
        doc = {"doc_id": f"doc{d}", "source": f"/bench/{d}.txt", "title": f"doc {d}", "format": "txt", "lang": "en",
               "sha256": f"sha{d}", "labels": ["public"], "pages": None, "chars": 1, "text": "x", "blocks": "[]"}
        yield doc, rows


def _queries(count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [(v, [f"w{int(z)}" for z in rng.zipf(1.3, size=5) if z < 20000]) for v in vectors]


def _search_worker(backend: str, target: str, manifest: dict, count: int, seed: int, barrier) -> list[float]:
    store = open_bench_store(backend, target, manifest)
    store.refresh()
    queries = _queries(count, seed)
    barrier.wait()
    times = []
    for vector, tokens in queries:
        started = time.perf_counter()
        store.search(vector=vector, tokens=tokens, depth=50)
        times.append(1000 * (time.perf_counter() - started))
    store.close()
    return times


def measure(backend: str, target: str, chunks: int, queries: int) -> dict:
    from rag.store import new_manifest

    manifest = new_manifest({"name": "bench", "dim": DIM}, {"bench": True})
    store = open_bench_store(backend, target, manifest)
    started = time.perf_counter()
    with store.writer() as writer:
        batch = []
        for item in _corpus(chunks):
            batch.append(item)
            if len(batch) == 20:
                writer.commit(batch)
                batch = []
        writer.commit(batch)
    ingest_s = time.perf_counter() - started
    # commit to searchable: one more document, then the first search that finds it
    (doc, rows), = list(_corpus(PER_DOC, seed=99))
    doc = {**doc, "doc_id": "fresh", "source": "/bench/fresh.txt"}
    started = time.perf_counter()
    with store.writer() as writer:
        writer.commit([(doc, rows)])
    store.refresh()
    store.search(vector=rows[0].vector, tokens=rows[0].tokens, depth=10)
    visible_s = time.perf_counter() - started
    store.close()
    result = {"backend": backend, "chunks": chunks, "ingest_chunks_per_s": round(chunks / ingest_s, 1),
              "commit_to_searchable_s": round(visible_s, 3)}
    for count in (1, 2):
        figures = replicas(_search_worker, [(backend, target, manifest, queries, 10 + r) for r in range(count)])
        result[f"search_{count}_replicas_ms"] = {"p50": figures["p50_ms"], "p95": figures["p95_ms"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", choices=["postgres", "embedded", "both"], default="both")
    args = parser.parse_args()
    results = []
    if args.backend in ("embedded", "both"):
        results.append(measure("embedded", tempfile.mkdtemp(prefix="bench-embedded-"), args.chunks, args.queries))
    if args.backend in ("postgres", "both"):
        server = postgres_server()
        results.append(measure("postgres", server.database(), args.chunks, args.queries))
    out = Path(__file__).parent / "results" / f"postgres-{args.chunks}.json"
    out.write_text(json.dumps({"command": f"python -m bench.postgres --chunks {args.chunks} --queries "
                                          f"{args.queries}", "cores": os.cpu_count(), "results": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
