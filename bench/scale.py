"""Hybrid retrieval at 100k and 1M chunks: build time, memory, disk, latency and recall of exact vs approximate search,
on the embedded store and, with `--stores embedded postgres`, on the PostgreSQL one beside it.

    RAG_EMBEDDER__THREADS=1 python -m bench.scale         # 100k, 200k, 1M; flat, ivf, hnsw; bench/results/scale.json
    python -m bench.scale --sizes 100000 --types flat auto --queries 50
    python -m bench.scale --sizes 100000 --types auto --stores embedded postgres --out bench/results/scale-postgres.json

Real base: every other Legilux consolidated act (French Akoma Ntoso XML, sorted by path) goes through the product's
loader, chunker and embedder into a scratch index (`--scratch`, reused by later runs). Questions: the titles of the
other acts, which are not indexed, embedded once. Scaling: copy c of each base document gets the base vectors plus
Gaussian noise of standard deviation `sigma` per dimension, re-normalised (copy 0 is the real vectors unchanged), and
the base tokens with each occurrence dropped at random with probability `--token-drop` (so copies differ in term
frequencies and lengths, and BM25 does not tie them). By default sigma is chosen so that a copy sits as far from its
original as the median real chunk from its nearest real neighbour: the scaled corpus is as dense around each passage
as the real one, only with more passages.

Each size is written through the product's writer (one commit per copy of the base; the writer's exit builds BM25
and the flat structure, as `rag ingest` would with `type: flat`), then every index type is built and measured
in a fresh subprocess (so its memory is its own): open (build or load the structure) and answer every question in
`dense`, `bm25` and `hybrid` mode through `Retriever.search` (query vectors looked up, not embedded: query embedding
is reported separately), hybrid again under three access filters, and the raw limit in the same process: the FAISS
structure's own `search` and `bm25s.BM25.retrieve`. Recall@10 of each approximate run is measured against the flat
(exact) run over the same vectors.

PostgreSQL (`--stores ... postgres`; bench/stores.py: the tests' bundled server, PostgreSQL 16 + pgvector 0.6, with
bench/stores.py's SERVER_SETTINGS): the same chunks and vectors (same seed, same order, so the same chunk ids) go into
a fresh database through the same `writer().commit`, one commit per copy: all but the last `--pg-live-chunks`
(whole copies) in bulk, i.e. the same commits with the HNSW, GIN and posting indexes dropped, then each created again
by its own definition (HNSW built in parallel) and ANALYZE, all timed; then the last copies with every index updated
in each commit, as `rag ingest` commits, which gives the ingest rate at that size.
Then, in a fresh subprocess, the same searches as above through `Retriever.search` (no raw limits: the search is the
SQL) and EXPLAIN (ANALYZE, BUFFERS) of the dense and BM25 statements of the questions with the median and the
slowest BM25 search. On both stores: hybrid searches from 1 and 2 replica processes querying at once (each its own
store: `retrieval.dense_index` as configured, `auto` by default), and the time from commit to searchable (one more
document committed, then searched for; the embedded store rebuilds its structures at the commit) and of its delete.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from bench.stores import (
    SERVER_SETTINGS,
    STORES,
    bulk_indexes,
    open_bench_store,
    percentiles,
    postgres_server,
    relation_sizes,
    replicas,
    server_facts,
)
from rag.dense import choose_type, one_thread
from rag.lexical import query_tokens
from rag.pipeline import Pipeline
from rag.retrieve import Retriever
from rag.settings import Settings
from rag.store import NewChunk, SearchFilter, Store
from rag.store.embedded import IndexStore

LEGILUX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus" / "legilux" / "works"
DEPTH = 50  # the default retrieval.candidates
K = 10
FILTERS = {  # name -> how a copy's documents are labelled / which are admitted (see _labels and _filters)
    "labels-half": "caller holds only `public`; odd copies also carry `internal`",
    "docs-5pct": "an explicit list of 5% of the documents",
    "docs-1pct": "an explicit list of 1% of the documents",
    "docs-10": "an explicit list of 10 documents",
}


# ---------------------------------------------------------------- the real base
def legilux_acts() -> list[Path]:
    acts = sorted(LEGILUX.rglob("fr.xml"))
    if not acts:
        raise SystemExit(f"no Legilux XML under {LEGILUX}: is ../shared/data present?")
    return acts


def base_pipeline(scratch: Path, acts: int) -> Pipeline:
    """The base index of the first `acts` even-position acts; ingestion skips what a previous run stored."""
    pipeline = Pipeline(Settings(index_dir=scratch / "base", data_dir=scratch / "data"))
    report = pipeline.ingest(legilux_acts()[0::2][:acts], progress=True)
    if report.failed:
        print(f"base: {len(report.failed)} acts failed to load: {report.failed[:3]}")
    return pipeline


def question_titles(count: int) -> list[str]:
    """Titles (meta.json of the work) of evenly spaced odd-position acts: never indexed, real legal questions."""
    held_out = legilux_acts()[1::2]
    picks = [held_out[int(i * len(held_out) / count)] for i in range(min(count, len(held_out)))]
    titles = [json.loads((act.parents[2] / "meta.json").read_text())["title"] for act in picks]
    return [title.split(" : ", 1)[-1] if title.startswith("Version ") else title for title in titles]


def nearest_neighbour_cosine(vectors: np.ndarray, sample: int = 2000) -> float:
    """Median cosine between a real chunk and its nearest other real chunk (exact duplicates excluded)."""
    rows = np.random.default_rng(0).choice(len(vectors), min(sample, len(vectors)), replace=False)
    sims = vectors[rows] @ vectors.T
    sims[sims > 0.9999] = -1.0  # itself and verbatim repeats (the acts repeat boilerplate articles)
    return float(np.median(sims.max(axis=1)))


def sigma_for(cosine: float, dim: int) -> float:
    """Noise per dimension whose re-normalised copy has cosine `cosine` with its original: 1/sqrt(1 + dim·σ²)."""
    return math.sqrt((1.0 / cosine**2 - 1.0) / dim)


# ---------------------------------------------------------------- scaled copies through the product's writer
def read_base(store: IndexStore) -> tuple[list[dict], dict[str, list[tuple]]]:
    columns = "doc_id, source, title, format, lang, sha256, labels, pages, chars, text, blocks"
    docs = [dict(zip(columns.split(", "), row)) for row in store.db.execute(f"SELECT {columns} FROM documents")]
    chunks: dict[str, list[tuple]] = {}
    for row in store.db.execute(
        'SELECT doc_id, ordinal, start, "end", page, heading, lang, content_hash, text, tokens, vector '
        "FROM chunks ORDER BY id"
    ):
        chunks.setdefault(row[0], []).append(row[1:])
    return [d for d in docs if d["doc_id"] in chunks], chunks


def copy_puts(docs, chunks, copy: int, budget: int, sigma: float, drop: float, rng) -> list[tuple[dict, list]]:
    puts = []
    for doc in docs:
        rows = chunks[doc["doc_id"]][:budget]
        if not rows:
            break
        budget -= len(rows)
        vectors = np.vstack([np.frombuffer(r[9], dtype=np.float32) for r in rows])
        if copy:
            vectors = vectors + rng.normal(0.0, sigma, vectors.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        row = {**doc, "doc_id": f"{doc['doc_id']}~{copy}", "source": f"{doc['source']}#copy{copy}",
               "labels": ["public"] if copy % 2 == 0 else ["internal", "public"]}
        puts.append((row, [_new_chunk(r, v, copy, drop, rng) for r, v in zip(rows, vectors)]))
    return puts


def _new_chunk(row: tuple, vector: np.ndarray, copy: int, drop: float, rng) -> NewChunk:
    ordinal, start, end, page, heading, lang, content_hash, text, tokens, _ = row
    tokens = tokens.split(" ") if tokens else []
    if copy and tokens:
        tokens = [t for t, keep in zip(tokens, rng.random(len(tokens)) >= drop) if keep]
    return NewChunk(ordinal=ordinal, start=start, end=end, page=page, heading_path=tuple(json.loads(heading)),
                    lang=lang, content_hash=content_hash, text=text, tokens=tokens, vector=vector)


def scaled_copies(base: IndexStore, size: int, sigma: float, drop: float) -> Iterator[list[tuple[dict, list]]]:
    """The puts of each copy of the base, `size` chunks in all; the same seed, so the same chunks and vectors in the
    same order (hence the same chunk ids) on every store."""
    docs, chunks = read_base(base)
    per_copy = sum(len(c) for c in chunks.values())
    rng = np.random.default_rng(1)
    for copy in range(math.ceil(size / per_copy)):
        yield copy_puts(docs, chunks, copy, min(per_copy, size - copy * per_copy), sigma, drop, rng)


def commit_each(writer, copies: Iterable[list[tuple[dict, list]]]) -> dict:
    """One commit per copy, each timed: chunks, seconds in commits, chunks per second."""
    chunks, seconds = 0, 0.0
    for puts in copies:
        started = time.perf_counter()
        writer.commit(puts)
        seconds += time.perf_counter() - started
        chunks += sum(len(rows) for _, rows in puts)
    return {"chunks": chunks, "seconds": round(seconds, 1), "chunks_per_s": round(chunks / max(seconds, 1e-9), 1)}


def write_scaled(base: IndexStore, directory: Path, size: int, sigma: float, drop: float) -> dict:
    """`size` chunks through `IndexStore.writer().commit`, one commit per copy; the writer's exit builds BM25 and
    the flat structure like the end of `rag ingest` (the approximate ones are built by their own workers)."""
    store = open_bench_store("embedded", directory, base.manifest, type="flat")
    with store.writer() as writer:
        commits = commit_each(writer, scaled_copies(base, size, sigma, drop))
        exiting = time.perf_counter()  # the writer's exit builds the structures
    build = time.perf_counter() - exiting
    figures = {"chunks": store.stats()["chunks"], "insert_seconds": commits["seconds"],
               "insert_chunks_per_s": round(commits["chunks_per_s"]), "structures_seconds": round(build, 1),
               "structures_steps": store.refresh_seconds, "peak_rss_mb": _rss()["peak_mb"]}
    store.close()
    return figures


def write_postgres(base: IndexStore, server, size: int, sigma: float, drop: float, live: int) -> tuple[str, dict]:
    """A new database of `server` holding the scaled corpus (scaled_copies) through `PostgresStore.writer().commit`:
    the first copies in bulk (bench/stores.py's bulk_indexes: committed without the HNSW, GIN and posting indexes,
    which are then created), the copies holding the last `live` chunks with every index updated in each commit, as
    `rag ingest` commits: the ingest rate at this size. Its DSN and figures, with the relations' sizes."""
    from psycopg.conninfo import conninfo_to_dict

    dsn = server.database()
    dbname = conninfo_to_dict(dsn)["dbname"]
    per_copy = base.stats()["chunks"]
    count = math.ceil(size / per_copy)
    bulk = count - min(count, math.ceil(live / per_copy))
    copies = scaled_copies(base, size, sigma, drop)
    store = open_bench_store("postgres", dsn, base.manifest)
    figures: dict = {}
    with store.writer() as writer:
        if bulk:
            with bulk_indexes(server, dbname) as index_seconds:
                figures["bulk"] = commit_each(writer, itertools.islice(copies, bulk))
            total = figures["bulk"]["seconds"] + sum(index_seconds.values())
            figures["bulk"] |= {"index_build_seconds": index_seconds,
                                "chunks_per_s_with_index_builds": round(figures["bulk"]["chunks"] / total, 1)}
        figures["live"] = commit_each(writer, copies)
    figures |= {"chunks": store.stats()["chunks"], "peak_rss_mb": _rss()["peak_mb"],
                "relations_mb": relation_sizes(server, dbname)}
    store.close()
    return dsn, figures


# ---------------------------------------------------------------- one index type, measured in its own process
class LookupEmbedder:
    """The questions' vectors, computed once by the real embedder; retrieval latency excludes query embedding."""

    def __init__(self, texts: list[str], vectors: np.ndarray):
        self.by_text = dict(zip(texts, vectors))

    def encode(self, texts, progress=None) -> np.ndarray:
        return np.vstack([self.by_text[t] for t in texts])


def measure(directory: Path, kind: str, scratch: Path, queries_only: bool, sweep: list[int]) -> dict:
    settings = Settings(index_dir=directory, data_dir=scratch / "data")
    dense_settings = settings.retrieval.dense_index.model_copy(update={"type": kind})
    texts, vectors = _questions(scratch)
    rss_start = _rss()
    store = IndexStore.open(directory, json.loads((directory / "manifest.json").read_text()), dense=dense_settings)
    started = time.perf_counter()
    store.refresh()
    result = {"type": kind, "open_seconds": round(time.perf_counter() - started, 2), "steps": store.refresh_seconds,
              "dense_index": store.stats()["dense_index"], "rss_before_open_mb": rss_start["rss_mb"],
              "rss_after_open_mb": _rss()["rss_mb"], "peak_rss_mb": _rss()["peak_mb"], "disk_mb": disk_mb(directory)}
    if queries_only:
        retriever = Retriever(store, LookupEmbedder(texts, vectors), settings.retrieval)
        result["runs"] = query_runs(retriever, texts, vectors, raw=True)
        result["sweep"] = sweep_runs(store, vectors, kind, sweep)
    store.close()
    return result


def measure_postgres(dsn: str, scratch: Path) -> dict:
    """The searches of query_runs on the PostgreSQL store at `dsn`, then the plans of the median and the slowest BM25
    question's statements."""
    texts, vectors = _questions(scratch)
    started = time.perf_counter()
    store = open_bench_store("postgres", dsn, _base_manifest(scratch))
    result: dict = {"type": "postgres", "open_seconds": round(time.perf_counter() - started, 2),
                    "dense_index": store.stats()["dense_index"], "rss_before_open_mb": _rss()["rss_mb"]}
    retriever = Retriever(store, LookupEmbedder(texts, vectors), Settings().retrieval)
    result["runs"] = query_runs(retriever, texts, vectors, raw=False)
    order = np.argsort(result["runs"]["bm25"]["millis"])
    result["explain"] = {which: explain(store, texts[i], vectors[i]) for which, i in
                         (("median bm25", int(order[len(order) // 2])), ("slowest bm25", int(order[-1])))}
    store.close()
    return result


class _Explained:
    """A connection that runs each search statement (the ones with ORDER BY: rag/store/postgres.py's `_dense` and
    `_lexical`) once under EXPLAIN (ANALYZE, BUFFERS), keeping the plan, before running it."""

    def __init__(self, conn):
        self.conn, self.plans = conn, []

    def execute(self, query, params=None):
        if "ORDER BY" in query:
            plan = self.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params).fetchall()
            text = "\n".join(row[0] for row in plan)
            self.plans.append(re.sub(r"'\[[-0-9.e,]+\]'::vector", "'[the question vector]'::vector", text))
        return self.conn.execute(query, params)


def explain(store, text: str, vector: np.ndarray) -> dict:
    """The plans of one question's dense and BM25 statements as `search` runs them (depth DEPTH, no filter), and
    how many postings its terms have."""
    from rag.store import postgres

    tokens = list(dict.fromkeys(query_tokens(text, "fr")))
    with store._transaction() as conn:
        dense, lexical = _Explained(conn), _Explained(conn)
        postgres._dense(dense, vector, DEPTH, None)
        postgres._lexical(lexical, tokens, DEPTH, None)
        postings = conn.execute("SELECT coalesce(sum(df), 0) FROM terms WHERE term = ANY(%s)", (tokens,)).fetchone()[0]
    return {"question": text, "tokens": tokens, "postings": int(postings), "dense": dense.plans,
            "lexical": lexical.plans}


def query_runs(retriever: Retriever, texts: list[str], vectors: np.ndarray, *, raw: bool) -> dict:
    """Every search mode, hybrid under each filter, and (`raw`, embedded only) the raw structures' own searches."""
    store = retriever.store
    searches = {mode: lambda t, v, m=mode: _ids(retriever.search(t, K, m, lang="fr")) for mode in ("dense", "bm25",
                                                                                                   "hybrid")}
    for name, search_filter in _filters(store).items():
        searches[f"hybrid {name}"] = lambda t, v, f=search_filter: _ids(retriever.search(t, K, "hybrid", f, lang="fr"))
    if raw:
        searches["raw faiss"] = lambda t, v: _raw_faiss(store, v)
        searches["raw bm25s"] = lambda t, v: _raw_bm25s(store, t)
    return _timed(searches, texts, vectors)


def sweep_runs(store: IndexStore, vectors: np.ndarray, kind: str, values: list[int]) -> dict:
    """Dense top-10 at other efSearch / nprobe values: how the defaults were chosen."""
    if kind not in ("hnsw", "ivf") or not values:
        return {}
    field = "hnsw_ef_search" if kind == "hnsw" else "ivf_nprobe"
    default = store.current().dense.settings

    def search(value: int):
        settings = default.model_copy(update={field: value})

        def run(text: str, vector: np.ndarray) -> list[int]:
            store.current().dense.settings = settings
            return [c for c, _ in store.search(vector=vector, tokens=[], depth=DEPTH)[0]][:K]
        return run

    runs = _timed({f"{field}={value}": search(value) for value in values}, [""] * len(vectors), vectors)
    store.current().dense.settings = default
    return runs


def _filters(store: Store) -> dict[str, SearchFilter]:
    doc_ids = sorted(d.doc_id for d in store.documents())
    spaced = lambda n: frozenset(doc_ids[int(i * len(doc_ids) / n)] for i in range(n))  # noqa: E731
    return {"labels-half": SearchFilter(labels=frozenset({"public"})),
            "docs-5pct": SearchFilter(doc_ids=spaced(max(1, len(doc_ids) // 20))),
            "docs-1pct": SearchFilter(doc_ids=spaced(max(1, len(doc_ids) // 100))),
            "docs-10": SearchFilter(doc_ids=spaced(10))}


def _raw_faiss(store: IndexStore, vector: np.ndarray) -> list[int]:
    dense = store.current().dense
    params = dense._parameters(dense.size, None)
    with one_thread():
        _, rows = dense.inner.search(vector.reshape(1, -1), DEPTH, params=params)
    return [int(dense.ids[r]) for r in rows[0][:K]]


def _raw_bm25s(store: IndexStore, text: str) -> list[int]:
    from rag.lexical import tokenize

    snapshot = store.current()
    lexical = snapshot.lexical
    tokens = [t for t in dict.fromkeys(tokenize(text, "fr")) if t in lexical.vocab] or [""]  # as the product does
    rows, _ = lexical.bm25.retrieve([tokens], k=DEPTH, show_progress=False, n_threads=0)
    return [int(snapshot.row_ids[r]) for r in rows[0][:K]]


def _timed(searches: dict, texts: list[str], vectors: np.ndarray) -> dict:
    """Every search on every question, the searches interleaved per question in rotating order, so that the load of
    other processes (which drifts over minutes on the shared machine) weighs on all of them alike."""
    for search in searches.values():
        search(texts[0], vectors[0])  # warm-up
    names = list(searches)
    millis: dict[str, list[float]] = {name: [] for name in names}
    rankings: dict[str, list] = {name: [] for name in names}
    for i, (text, vector) in enumerate(zip(texts, vectors)):
        for name in names[i % len(names):] + names[: i % len(names)]:
            started = time.perf_counter()
            rankings[name].append(searches[name](text, vector))
            millis[name].append(1000 * (time.perf_counter() - started))
    return {name: percentiles(millis[name]) | {"rankings": rankings[name], "millis": millis[name]} for name in names}


def _ids(hits) -> list[str]:
    """The hits as (document, ordinal): the same passage on either store, whatever its row id."""
    return [f"{h.chunk.doc_id}#{h.chunk.ordinal}" for h in hits]


def _questions(scratch: Path) -> tuple[list[str], np.ndarray]:
    """The questions and their vectors (embed_questions)."""
    return json.loads((scratch / "questions.json").read_text()), np.load(scratch / "questions.npy")


def _base_manifest(scratch: Path) -> dict:
    return json.loads((scratch / "base" / "manifest.json").read_text())


# ---------------------------------------------------------------- replicas querying, commit to searchable
def _replica(store_name: str, target: str, scratch: Path, offset: int, barrier) -> list[float]:
    """One replica process: its own store (the configured dense structure, loaded before the barrier), then every
    question once in hybrid mode starting at `offset`; milliseconds per search."""
    texts, vectors = _questions(scratch)
    store = open_bench_store(store_name, target, _base_manifest(scratch))
    store.refresh()
    retriever = Retriever(store, LookupEmbedder(texts, vectors), Settings().retrieval)
    retriever.search(texts[0], K, "hybrid", lang="fr")  # warm-up
    barrier.wait()
    millis = []
    for text in texts[offset:] + texts[:offset]:
        started = time.perf_counter()
        retriever.search(text, K, "hybrid", lang="fr")
        millis.append(1000 * (time.perf_counter() - started))
    store.close()
    return millis


def replica_runs(store_name: str, target: str, scratch: Path, questions: int) -> dict:
    return {f"{n}_replicas": replicas(_replica, [(store_name, target, scratch, r * questions // n) for r in range(n)])
            for n in (1, 2)}


def commit_to_searchable(base: IndexStore, store: Store, sigma: float, drop: float) -> dict:
    """Seconds from committing one more document (a new copy of the first base document) until a search finds its
    first chunk at the top of the dense list, and from committing its delete until that search no longer returns
    it; the embedded store rebuilds its structures in the commit (its type as configured)."""
    docs, chunks = read_base(base)
    puts = copy_puts(docs[:1], chunks, 99_999, len(chunks[docs[0]["doc_id"]]), sigma, drop, np.random.default_rng(2))
    doc_id, first = puts[0][0]["doc_id"], puts[0][1][0]

    def top_doc() -> str | None:
        dense, _ = store.search(vector=first.vector, tokens=first.tokens, depth=DEPTH)
        return store.chunks([dense[0][0]])[dense[0][0]].doc_id if dense else None

    figures = {"chunks": len(puts[0][1])}
    for step, change in (("commit", {"puts": puts}), ("delete", {"deletes": [doc_id]})):
        started = time.perf_counter()
        with store.writer() as writer:
            writer.commit(**change)
        store.refresh()
        found = top_doc() == doc_id
        figures[f"{step}_to_searchable_s"] = round(time.perf_counter() - started, 3)
        figures[f"{step}_as_expected"] = found == (step == "commit")
    store.close()
    return figures


def _rss() -> dict:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) // 1024, "peak_mb": int(fields["VmHWM"].split()[0]) // 1024}


def disk_mb(directory: Path) -> dict:
    sizes: dict[str, float] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            part = path.relative_to(directory).parts[0].split("-")[0].split(".")[0]
            sizes[part] = sizes.get(part, 0.0) + path.stat().st_size / 2**20
    return {part: round(mb, 1) for part, mb in sorted(sizes.items())}


# ---------------------------------------------------------------- comparing runs
def recall(approximate: list[list[int]], exact: list[list[int]]) -> float | None:
    """Mean share of the exact top-10 found in the approximate top-10 (questions with an empty exact list skipped)."""
    shares = [len(set(a[:K]) & set(e[:K])) / len(e[:K]) for a, e in zip(approximate, exact) if e]
    return round(float(np.mean(shares)), 4) if shares else None


def summarise(measured: dict[str, dict]) -> None:
    """Drop the rankings and latencies per question, adding each approximate run's top-10 overlap with the flat
    (exact) run of the same search: recall@10 of the dense search, result overlap of the hybrid ones (PostgreSQL's:
    the same chunk ids, see the module docstring), and for PostgreSQL's BM25 its overlap with the embedded one."""
    exact = {name: run["rankings"] for name, run in measured["flat"]["serve"]["runs"].items()} if "flat" in measured \
        else {}
    for kind, parts in measured.items():
        for group in ("runs", "sweep"):
            for name, run in parts["serve"].get(group, {}).items():
                rankings = run.pop("rankings")
                run.pop("millis")
                if name in exact and kind != "flat" and ("bm25" not in name or kind == "postgres"):
                    run["overlap@10_vs_flat"] = recall(rankings, exact["dense" if group == "sweep" else name])


def _resolved(kind: str, size: int) -> str:
    return choose_type(Settings().retrieval.dense_index.model_copy(update={"type": kind}), size)


def run_worker(scratch: Path, directory: Path, kind: str, queries: bool, sweep: list[int], target: str = "") -> dict:
    """measure() in a fresh process, on the index in `directory` or, for kind `postgres`, the database at `target`
    (its results go beside `directory` either way)."""
    out = directory.with_name(f"{directory.name}-{kind}-{'serve' if queries else 'build'}.json")
    command = [sys.executable, "-m", "bench.scale", "--worker", target or str(directory), kind, "--scratch",
               str(scratch), "--out", str(out), "--sweep", *map(str, sweep)] + (["--serve"] if queries else [])
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def embed_questions(pipeline: Pipeline, texts: list[str], scratch: Path) -> dict:
    """One at a time, as a question arrives: the query-embedding share of an end-to-end search."""
    pipeline.embedder.encode(texts[:2])
    millis, vectors = [], []
    for text in texts:
        started = time.perf_counter()
        vectors.append(pipeline.embedder.encode([text])[0])
        millis.append(1000 * (time.perf_counter() - started))
    np.save(scratch / "questions.npy", np.vstack(vectors))
    (scratch / "questions.json").write_text(json.dumps(texts, ensure_ascii=False))
    return {"questions": len(texts), "p50_ms": round(float(np.percentile(millis, 50)), 1),
            "p95_ms": round(float(np.percentile(millis, 95)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 200_000, 1_000_000])
    parser.add_argument("--types", nargs="*", default=["flat", "ivf", "hnsw"], choices=["flat", "auto", "hnsw", "ivf"],
                        help="`auto` is flat up to retrieval.dense_index.auto_threshold, then its auto_type")
    parser.add_argument("--stores", nargs="+", default=["embedded"], choices=STORES,
                        help="the store backends measured side by side (PostgreSQL: the bundled test server)")
    parser.add_argument("--pg-live-chunks", type=int, default=20_000,
                        help="PostgreSQL: the last N chunks are committed with the indexes live, the rest in bulk")
    parser.add_argument("--acts", type=int, default=1000, help="base: the first N even-position Legilux acts")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=None, help="noise per dimension (default: see above)")
    parser.add_argument("--token-drop", type=float, default=0.15)
    parser.add_argument("--ef-sweep", type=int, nargs="*", default=[64, 128, 256, 512], help="HNSW efSearch values")
    parser.add_argument("--nprobe-sweep", type=int, nargs="*", default=[16, 32, 64, 128], help="IVF nprobe values")
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/sovereign-rag-scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--worker", nargs=2, metavar=("DIR_OR_DSN", "TYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        target, kind = args.worker
        result = (measure_postgres(target, args.scratch) if kind == "postgres" else
                  measure(Path(target), kind, args.scratch, args.serve, args.sweep))
        args.out.write_text(json.dumps(result))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(run(args), indent=2))


def run(args) -> dict:
    load = [os.getloadavg()]  # at the start and after each stage
    pipeline = base_pipeline(args.scratch, args.acts)
    base = pipeline.store
    vectors = np.vstack([np.frombuffer(v, dtype=np.float32) for v, in base.db.execute("SELECT vector FROM chunks")])
    cosine = nearest_neighbour_cosine(vectors)
    sigma = args.sigma if args.sigma is not None else sigma_for(cosine, vectors.shape[1])
    questions = embed_questions(pipeline, question_titles(args.queries), args.scratch)
    server = postgres_server(settings=SERVER_SETTINGS) if "postgres" in args.stores else None
    payload = {
        "command": "python -m bench.scale " + " ".join(sys.argv[1:]), "started_utc": _utc(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "postgres_server": server_facts(server) if server else None,
        "base": {"acts": len(base.documents()), "chunks": len(vectors), "median_nn_cosine": round(cosine, 4),
                 "sigma": round(sigma, 5), "token_drop": args.token_drop},
        "query_embedding": questions, "filters": FILTERS, "sizes": {},
    }
    for size in args.sizes:
        directory = args.scratch / f"n{size}"
        entry = payload["sizes"][str(size)] = {"load_average_1_5_15": {}, "replicas": {}, "commit_to_searchable": {}}
        measured: dict = {}  # PostgreSQL first: the longer load, whose figures are new
        dsn = ""
        if server is not None:
            entry["load_average_1_5_15"]["postgres write"] = os.getloadavg()
            dsn, entry["postgres_write"] = write_postgres(base, server, size, sigma, args.token_drop,
                                                          args.pg_live_chunks)
            _checkpoint(args.out, payload)
            entry["load_average_1_5_15"]["postgres serve"] = os.getloadavg()
            measured["postgres"] = {"serve": run_worker(args.scratch, directory, "postgres", True, [], dsn)}
            _checkpoint(args.out, payload | {"partial": measured})
            store_runs(args, entry, base, sigma, "postgres", dsn)
            _checkpoint(args.out, payload | {"partial": measured})
            load.append(os.getloadavg())
        if "embedded" in args.stores:
            if not (directory / "meta.sqlite").is_file():
                entry["write"] = write_scaled(base, directory, size, sigma, args.token_drop)
            load.append(os.getloadavg())
            for kind in ["flat"] + [t for t in args.types if t != "flat"]:
                build = run_worker(args.scratch, directory, kind, False, [])
                sweep = args.nprobe_sweep if _resolved(kind, size) == "ivf" else args.ef_sweep
                serve = run_worker(args.scratch, directory, kind, True, sweep)
                measured[kind] = {"build": build, "serve": serve}
                load.append(os.getloadavg())
            store_runs(args, entry, base, sigma, "embedded", str(directory))
        summarise(measured)
        entry.update(measured)
        _checkpoint(args.out, payload)
        load.append(os.getloadavg())
    pipeline.close()
    payload["finished_utc"] = _utc()
    payload["load_average_1_5_15"] = [[round(x, 2) for x in triple] for triple in load]
    return payload


def store_runs(args, entry: dict, base: IndexStore, sigma: float, name: str, target: str) -> None:
    """Replicas querying, then commit → searchable, on store `name` at `target`, into the size's `entry`."""
    entry["load_average_1_5_15"][f"{name} replicas"] = os.getloadavg()
    entry["replicas"][name] = replica_runs(name, target, args.scratch, len(_questions(args.scratch)[0]))
    entry["commit_to_searchable"][name] = commit_to_searchable(
        base, open_bench_store(name, target, base.manifest), sigma, args.token_drop)


def _checkpoint(out: Path, payload: dict) -> None:
    """The results so far (a long run stopped midway keeps what it measured)."""
    out.write_text(json.dumps(payload, indent=2))


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


if __name__ == "__main__":
    main()
