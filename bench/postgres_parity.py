"""Retrieval quality of both backends in one session, on the same chunks and vectors: `rag eval run --mode retrieval`
on XQuAD-en, XQuAD-de and PIAF-fr, ranked three ways.

- `embedded`: the embedded backend (FAISS + our BM25, rag/lexical.py); this run builds the dataset's scratch index.
- `postgres`: `store.backend: postgres` (the product: pgvector HNSW + BM25 computed in SQL from our own tokens and
  term statistics), on a fresh database of a bundled test server filled by `rag migrate --to postgres` from that
  scratch index, so both rank the same chunks and vectors.
- `postgres_<function>`: the same database and dense search, with PostgreSQL's own full-text ranking in place of
  BM25 on the lexical side (the baseline the BM25-in-SQL was built to beat): the question parsed by PostgreSQL
  (`to_tsvector` in its language's configuration, the OR of its lexemes), matched against each chunk's tsvector,
  ranked by `ts_rank` or `ts_rank_cd` with normalisation flags `/N` (0: none, 1: divide by 1 + log(length), ...).
  Bench-only: it replaces `Retriever.rankings` in this process for `run_eval`, nothing of it is in rag/.

Every ranking is fused with the product's `fuse` and per-language dense weights (rag/eval's Ranker). Per ranking:
nDCG@10, hit@1, hit@5, MRR@10 of bm25 (the lexical side alone), dense and hybrid, and for each of them the
questions whose top 10 documents differ from the embedded run's.

    python -m bench.postgres_parity                         # every question of the three sets
    python -m bench.postgres_parity --limit 300 --lexical ts_rank/0 ts_rank_cd/0 ts_rank/1

The embedded and postgres runs of every set come first, then the baselines. Writes
bench/results/postgres-parity.json after each step, so a run stopped early keeps what it finished;
docs/benchmarks.md quotes it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "qa"
DATASETS = {
    "xquad-en": Path("xquad") / "xquad.en.json",
    "xquad-de": Path("xquad") / "xquad.de.json",
    "piaf-fr": Path("piaf_fr") / "piaf-v1.0.json",
}
METRICS = ("ndcg@10", "hit@1", "hit@5", "mrr@10")
RETRIEVERS = ("bm25", "dense", "hybrid")
FUNCTIONS = ("ts_rank", "ts_rank_cd")
_VECTORS: dict = {}  # question -> its vector, shared by the in-process rankings


def _summary(results: dict) -> dict:
    """The ranking metrics of one run's results, and its top-10 documents per retriever by question id (for the
    comparison with the embedded run)."""
    aggregates = results["aggregates"]
    metrics = {
        f"{r}.{m}": round(aggregates[f"retrieval.{r}.{m}"], 4)
        for r in RETRIEVERS
        for m in METRICS
        if f"retrieval.{r}.{m}" in aggregates
    }
    return {
        "metrics": metrics,
        "top10": {rec["id"]: {r: rec["retrieved"][r][:10] for r in RETRIEVERS} for rec in results["records"]},
        "index": results["run"]["index"],
        "seconds": results["run"]["seconds"],
    }


def _run(dataset: Path, out: Path, limit: int | None, env: dict) -> dict:
    """`rag eval run DATASET --mode retrieval` in a process of its own, with `env`."""
    command = [sys.executable, "-m", "rag", "eval", "run", str(dataset), "--mode", "retrieval", "--out", str(out)]
    command += ["--quiet", *(["--limit", str(limit)] if limit else [])]
    subprocess.run(command, env=env, check=True, cwd=ROOT)
    return _summary(json.loads((out / "results.json").read_text()))


def _tsquery(conn, text: str, lang: str) -> str | None:
    """The OR of the lexemes PostgreSQL makes of `text` in `lang`'s text-search configuration, as tsquery input
    (each lexeme quoted: no parsing or stemming happens again); None when it has none (only stop words)."""
    from rag.store.postgres import _TS_CONFIG

    config = _TS_CONFIG.get(lang, "simple")
    lexemes = conn.execute("SELECT tsvector_to_array(to_tsvector(%s::regconfig, %s))", (config, text)).fetchone()[0]
    quoted = ("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)
    return " | ".join(quoted) or None


def _ts_rankings(function: str, normalization: int):
    """A replacement for `Retriever.rankings` on a PostgresStore: the product's dense search, and the chunks whose
    tsvector matches the question's tsquery ranked by `function(tsv, query, normalization)`, ties by chunk id."""
    from rag.store import postgres as store_postgres

    assert function in FUNCTIONS  # a name from a fixed list: it goes into the SQL text

    def rankings(self, query, lang, depth, mode="hybrid", search_filter=None):
        if query not in _VECTORS:  # each ranking embeds the same questions: once is enough
            _VECTORS[query] = self.embedder.encode([query])[0]
        vector = _VECTORS[query]
        params: dict = {"depth": depth, "norm": normalization}
        where = store_postgres._where(search_filter, "c", params, "doc_lang")
        with self.store._transaction(search_filter.labels if search_filter else None) as conn:
            dense = store_postgres._dense(conn, vector, depth, search_filter)
            params["q"] = _tsquery(conn, query, lang)
            rows = (
                []
                if params["q"] is None
                else conn.execute(
                    f"SELECT c.id, {function}(c.tsv, %(q)s::tsquery, %(norm)s) s FROM chunks c "
                    f"WHERE c.tsv @@ %(q)s::tsquery{where} ORDER BY s DESC, c.id LIMIT %(depth)s",
                    params,
                ).fetchall()
            )
        return dense, [(int(i), float(s)) for i, s in rows if s > 0]

    return rankings


def _run_ts_rank(dataset: Path, out: Path, limit: int | None, env: dict, lexical: str) -> dict:
    """The postgres run again, in this process, with `lexical` (e.g. `ts_rank_cd/1`) as the lexical ranking."""
    from rag.eval.run import EvalRequest, run_eval
    from rag.retrieve import Retriever
    from rag.settings import load_settings

    function, _, normalization = lexical.partition("/")
    os.environ.update(env)
    original = Retriever.rankings
    Retriever.rankings = _ts_rankings(function, int(normalization or 0))  # type: ignore[method-assign]
    try:
        request = EvalRequest(dataset, out, None, None, limit, "retrieval", f"bench.postgres_parity {lexical}")
        return _summary(run_eval(request, load_settings(), progress=False))
    finally:
        Retriever.rankings = original  # type: ignore[method-assign]


def _hnsw_recall(dsn: str, vectors: list, ef_searches: list[int], depth: int) -> dict:
    """How much of the exact nearest-`depth` list pgvector's HNSW returns for `vectors` (the questions): the
    product's dense query (ORDER BY inner product LIMIT depth) through the index at each `ef_search`, against the
    same query with index scans off (the exact search, as the store's fallback runs it). Per ef_search: recall@10,
    recall@depth (shares of the exact lists' chunks, averaged over the questions) and milliseconds per query."""
    import numpy as np

    from rag.store.postgres import PostgresStore

    store = PostgresStore.open(dsn=dsn, manifest={}, check=False, upgrade=False)
    query = "SELECT id FROM chunks ORDER BY embedding <#> %s LIMIT %s"
    results = {}
    try:
        with store._transaction() as conn:

            def nearest(vector) -> list[int]:
                # never prepared: a prepared statement's generic plan would ignore enable_indexscan
                row = (np.asarray(vector, dtype=np.float32), depth)
                return [i for (i,) in conn.execute(query, row, prepare=False)]

            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            exact = [nearest(v) for v in vectors]
            conn.execute("SELECT set_config('enable_indexscan', 'on', true)")
            for ef in ef_searches:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                started = time.perf_counter()
                found = [nearest(v) for v in vectors]
                ms = 1000 * (time.perf_counter() - started) / len(vectors)
                recall = {f"recall@{k}": round(_overlap(found, exact, k), 4) for k in (10, depth)}
                results[str(ef)] = {**recall, "ms_per_query": round(ms, 1)}
    finally:
        store.close()
    return results


def _overlap(found: list[list[int]], exact: list[list[int]], k: int) -> float:
    """The share of each exact list's first `k` ids among the first `k` found, averaged over the lists."""
    return sum(len(set(f[:k]) & set(e[:k])) / max(len(e[:k]), 1) for f, e in zip(found, exact, strict=True)) / len(
        exact
    )


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="questions per dataset (default: every question)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument(
        "--lexical",
        nargs="*",
        default=["ts_rank/0", "ts_rank_cd/0", "ts_rank/1"],
        help="PostgreSQL rankings to measure in place of BM25: FUNCTION/NORMALIZATION",
    )
    parser.add_argument(
        "--ef-search",
        nargs="*",
        type=int,
        default=[50, 100, 200],
        help="hnsw.ef_search values at which to measure HNSW's recall against the exact search (after the baselines)",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the folder holding xquad/ and piaf_fr/")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="scratch folder (default: a new temporary one); its eval-cache is reused by a rerun",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "postgres-parity.json")
    args = parser.parse_args()
    for lexical in args.lexical:
        if lexical.partition("/")[0] not in FUNCTIONS or not lexical.partition("/")[2].isdigit():
            parser.error(f"--lexical {lexical}: expected one of {FUNCTIONS} and /N, e.g. ts_rank_cd/1")
    sys.path.insert(0, str(ROOT))
    from bench.stores import postgres_server
    from rag.settings import load_settings

    work = args.work or Path(tempfile.mkdtemp(prefix="parity-"))
    work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))  # the server and this run's outputs
    server = postgres_server(run_dir / "postgres")
    base = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAG_DATA_DIR": str(work / "data"),
        "RAG_INDEX_DIR": str(work / "index"),
        "RAG_STORE_PASSWORD": server.password,
    }
    report = {
        "command": "python -m bench.postgres_parity " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "limit": args.limit,
        "results": {},
    }
    envs: dict[str, dict] = {}
    for name in args.datasets:  # first the parity of the product on every set, then the baselines
        started, load = time.perf_counter(), _load()
        path = args.data / DATASETS[name]
        runs = {"embedded": _run(path, run_dir / f"{name}-embedded", args.limit, base)}
        # the same chunks and vectors into PostgreSQL (`rag migrate`): the postgres runs then embed only questions
        scratch = runs["embedded"]["index"]["directory"]
        envs[name] = env = {**base, "RAG_STORE__BACKEND": "postgres", "RAG_STORE__DSN": server.database()}
        subprocess.run(
            [sys.executable, "-m", "rag", "migrate", "--to", "postgres", "--index-dir", scratch],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        runs["postgres"] = _run(path, run_dir / f"{name}-postgres", args.limit, env)
        index = runs["embedded"]["index"]
        report["results"][name] = {
            "questions": len(runs["embedded"]["top10"]),
            **{key: index[key] for key in ("documents", "chunks", "build_seconds")},
            "load_average": [load, _load()],
            "seconds": round(time.perf_counter() - started),
            "rankings": {},
        }
        _record(report, args.out, name, runs)
    for name in args.datasets:
        started, runs = time.perf_counter(), {}
        _VECTORS.clear()
        for lexical in args.lexical:
            out = run_dir / f"{name}-{lexical.replace('/', '-')}"
            runs[f"postgres_{lexical}"] = _run_ts_rank(args.data / DATASETS[name], out, args.limit, envs[name], lexical)
        if _VECTORS and args.ef_search:  # the questions' vectors, embedded by the baselines
            depth = load_settings().retrieval.candidates
            recall = _hnsw_recall(envs[name]["RAG_STORE__DSN"], list(_VECTORS.values()), args.ef_search, depth)
            report["results"][name]["hnsw_recall"] = {"depth": depth, "by_ef_search": recall}
        report["results"][name]["load_average"].append(_load())
        report["results"][name]["seconds"] += round(time.perf_counter() - started)
        _record(report, args.out, name, runs)


def _record(report: dict, out: Path, name: str, runs: dict) -> None:
    """Add `runs` (ranking name -> `_summary`) to the dataset's entry of `report`, print it and write the report:
    each ranking's metrics, its seconds, and per retriever the questions whose top 10 documents differ from the
    embedded run's (in content or order)."""
    entry = report["results"][name]
    if "embedded" in runs:
        entry["_reference"] = runs["embedded"]["top10"]
    for ranking, run in runs.items():
        entry["rankings"][ranking] = {
            **run["metrics"],
            "run_seconds": run["seconds"],
            **{
                f"{r}.top10_differs": sum(run["top10"][q][r] != top[r] for q, top in entry["_reference"].items())
                for r in RETRIEVERS
            },
        }
    print(name, json.dumps(entry["rankings"]), flush=True)
    written = {
        **report,
        "results": {n: {k: v for k, v in e.items() if k != "_reference"} for n, e in report["results"].items()},
    }
    out.write_text(json.dumps(written, indent=2) + "\n")


if __name__ == "__main__":
    main()
