"""Retrieval quality of both backends in one session: `rag eval run --mode retrieval` on XQuAD-en, XQuAD-de and
PIAF-fr, once with store.backend embedded and once with postgres (a fresh database of a bundled test server per
dataset, filled by `rag migrate --to postgres` from the embedded run's scratch index, so that both rank the same
chunks and vectors), then the ranking metrics side by side.

    python -m bench.postgres_parity --limit 300

Writes bench/results/postgres-parity.json; docs/benchmarks.md quotes it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "qa"
DATASETS = {"xquad-en": DATA / "xquad" / "xquad.en.json", "xquad-de": DATA / "xquad" / "xquad.de.json",
            "piaf-fr": DATA / "piaf_fr" / "piaf-v1.0.json"}


def _run(dataset: Path, out: Path, limit: int, env: dict) -> dict:
    command = [sys.executable, "-m", "rag", "eval", "run", str(dataset), "--mode", "retrieval", "--limit", str(limit),
               "--out", str(out), "--quiet"]
    subprocess.run(command, env=env, check=True, cwd=ROOT)
    aggregates = json.loads((out / "results.json").read_text())["aggregates"]
    return {k: v for k, v in aggregates.items() if "ndcg" in k.lower() or "recall" in k.lower() or "mrr" in k.lower()}


def _ts_rank(conn, terms, depth, search_filter):
    """PostgreSQL's own ranking in place of BM25: ts_rank of the chunk's tsvector (its language's Snowball
    configuration) against the OR of the question's tokens. Only to measure the gap that computing BM25 closes."""
    from rag.store import postgres as store_postgres

    if not terms:
        return []
    params = {"q": " | ".join(terms), "depth": depth}
    where = store_postgres._where(search_filter, "c", params, "doc_lang")
    rows = conn.execute(
        "SELECT c.id, ts_rank(c.tsv, q) FROM chunks c, to_tsquery('simple', %(q)s) q "
        f"WHERE c.tsv @@ q{where} ORDER BY 2 DESC, c.id LIMIT %(depth)s", params).fetchall()
    return [(int(i), float(s)) for i, s in rows]


def _run_ts_rank(dataset: Path, out: Path, limit: int, env: dict) -> dict:
    """The postgres run again, in this process, with ts_rank as the lexical ranking."""
    from rag.store import postgres as store_postgres
    from rag.eval.run import EvalRequest, run_eval
    from rag.settings import load_settings

    os.environ.update(env)
    original, store_postgres._lexical = store_postgres._lexical, _ts_rank
    try:
        request = EvalRequest(dataset, out, None, None, limit, "retrieval", "bench.postgres_parity ts_rank")
        aggregates = run_eval(request, load_settings(), progress=False)["aggregates"]
    finally:
        store_postgres._lexical = original
    return {k: v for k, v in aggregates.items() if "ndcg" in k.lower() or "recall" in k.lower() or "mrr" in k.lower()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.stores import postgres_server

    work = Path(tempfile.mkdtemp(prefix="parity-"))
    server = postgres_server(work / "postgres")
    base = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_DATA_DIR": str(work / "data"),
            "RAG_INDEX_DIR": str(work / "index"), "RAG_STORE_PASSWORD": server.password}
    results = {}
    for name, path in DATASETS.items():
        embedded = _run(path, work / f"{name}-embedded", args.limit, base)
        # the same chunks and vectors into PostgreSQL (`rag migrate`): the postgres run then embeds only questions
        scratch = max((work / "data" / "eval-cache").iterdir(), key=lambda p: p.stat().st_mtime)
        env = {**base, "RAG_STORE__BACKEND": "postgres", "RAG_STORE__DSN": server.database()}
        subprocess.run([sys.executable, "-m", "rag", "migrate", "--to", "postgres", "--index-dir", str(scratch)],
                       env=env, check=True, cwd=ROOT)
        postgres = _run(path, work / f"{name}-postgres", args.limit, env)
        ts_rank = _run_ts_rank(path, work / f"{name}-ts-rank", args.limit, env)
        results[name] = {"embedded": embedded, "postgres": postgres, "postgres_ts_rank": ts_rank}
        print(name, json.dumps(results[name]), flush=True)
    out = ROOT / "bench" / "results" / "postgres-parity.json"
    out.write_text(json.dumps({"command": f"python -m bench.postgres_parity --limit {args.limit}",
                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
