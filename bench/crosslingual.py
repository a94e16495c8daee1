"""Cross-lingual and same-language retrieval of one configuration, with the index cost beside it.

Sets (each a question language over a document language; a question's gold is its paragraph or article):

    xquad-en, xquad-de, piaf-fr     same language, as bench/retrieval.py
    xquad-de>en, xquad-en>de        XQuAD's German questions over the English paragraphs and the reverse (the
                                    paragraphs are parallel, the ids shared)
    legal                           bench/data/crosslingual_legal.jsonl: questions in one language whose answer is an
                                    article of another language's version of the Constitution or the GDPR; the
                                    index holds the versions the gold names (rag.eval.datasets.read_articles)

The sets are the evaluation harness's readers (rag/eval/datasets.py: `read_squad_across`, `read_articles`), so
`rag eval run` scores the same questions against the same gold (docs/evaluation.md, "Cross-lingual sets").

Reports dense, BM25, the configured hybrid (rag/retrieve.py's `Retriever.fuse`, `retrieval.dense_weight_across`
included) and, with `--sweep`, hybrids with one dense share for every passage. Indexes are the evaluation harness's
cached scratch indexes (rag/eval/index.py); beside each set: the index cost (chunks/s when it was built by this run,
bytes per chunk on disk), the mean time per question (both searches and every fusion), the peak RSS so far, and the
embedder's load time and resident memory. Writes bench/results/crosslingual-<embedder.model>.json.

    python -m bench.crosslingual                                 # default embedder (multilingual USE v3)
    python -m bench.crosslingual --config configs/english.yaml   # all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

from tqdm import tqdm

from rag.eval.datasets import Dataset, read_articles, read_squad, read_squad_across
from rag.eval.index import open_index
from rag.eval.metrics import dedupe, retrieval_metrics
from rag.eval.run import subset
from rag.language import detect_language
from rag.pipeline import Pipeline
from rag.retrieve import fuse
from rag.settings import Settings, load_settings

from .retrieval import DATASETS

LEGAL = Path(__file__).with_name("data") / "crosslingual_legal.jsonl"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"
SWEEP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def cross(questions_of: str, documents_of: str) -> Dataset:
    """`questions_of`'s questions over `documents_of`'s paragraphs (`rag eval run Q.json --documents-of D.json`)."""
    return read_squad_across(DATASETS[questions_of], DATASETS[documents_of], names=(questions_of, documents_of))


def sets() -> dict:
    return {
        "xquad-en": lambda: read_squad(DATASETS["xquad-en"], "xquad-en"),
        "xquad-de": lambda: read_squad(DATASETS["xquad-de"], "xquad-de"),
        "piaf-fr": lambda: read_squad(DATASETS["piaf-fr"], "piaf-fr"),
        "xquad-de>en": lambda: cross("xquad-de", "xquad-en"),
        "xquad-en>de": lambda: cross("xquad-en", "xquad-de"),
        "legal": lambda: read_articles(LEGAL, CORPUS, "legal"),
    }


def evaluate(dataset: Dataset, limit: int | None, sweep: bool, settings: Settings) -> dict:
    questions = subset(dataset.questions, limit)
    pipeline, index = open_index(settings, dataset, progress=True)
    retriever, store = pipeline.retriever, pipeline.store
    keys: dict[int, str] = {}
    runs: dict[str, list] = {}
    started = time.perf_counter()
    for question in tqdm(questions, desc=f"{dataset.name} questions", unit="q"):
        lang = detect_language(question.text)
        dense, lexical = retriever.rankings(question.text, lang, retriever.settings.candidates)
        rankings = {"dense": dense, "bm25": lexical, "hybrid": retriever.fuse(dense, lexical, lang)}
        rankings |= {f"hybrid@w={w}": fuse(dense, lexical, w) for w in (SWEEP if sweep else ())}
        missing = sorted({cid for r in rankings.values() for cid, _ in r} - keys.keys())
        keys.update({cid: dataset.chunk_key(chunk) for cid, chunk in store.chunks(missing).items()})
        for name, ranking in rankings.items():
            ranked = dedupe([keys[cid] for cid, _ in ranking if cid in keys])
            runs.setdefault(name, []).append((ranked, set(question.gold_doc_ids)))
    query_seconds = time.perf_counter() - started
    pipeline.close()
    size = sum(f.stat().st_size for f in Path(index["directory"]).rglob("*") if f.is_file())
    built = {} if index["reused"] else {"index_seconds": index["build_seconds"],
                                        "chunks_per_s": round(index["chunks"] / max(index["build_seconds"], 0.1), 2)}
    return {
        "dataset": dataset.name, "dataset_sha256": dataset.sha256, "documents": index["documents"],
        "chunks": index["chunks"], "questions": len(questions), "index_reused": index["reused"], **built,
        "bytes_per_chunk": round(size / max(index["chunks"], 1)), "peak_rss_mb": round(_peak_rss_mb()),
        "query_ms_mean": round(1000 * query_seconds / max(1, len(questions)), 2),
        "metrics": {name: {m: round(v, 4) for m, v in retrieval_metrics(run).items()} for name, run in runs.items()},
    }


def model_cost(settings: Settings) -> dict:
    """Seconds to load the embedder, the RSS it adds (in a fresh process, before anything else), and its rate on
    the 240 XQuAD-en paragraphs (texts/s, one pass after a warm-up; tokens counted as ingestion does)."""
    before = _rss_mb()
    started = time.perf_counter()
    embedder = Pipeline(settings).embedder
    embedder.encode(["warm up"])
    loaded = {"load_seconds": round(time.perf_counter() - started, 2), "rss_added_mb": round(_rss_mb() - before)}
    texts = [d.text for d in read_squad(DATASETS["xquad-en"], "xquad-en").documents]
    started = time.perf_counter()
    embedder.count_tokens(texts)
    embedder.encode(texts)
    return loaded | {"paragraphs_per_s": round(len(texts) / (time.perf_counter() - started), 1),
                     "vector_bytes": 4 * embedder.info.dim, "load_average": os.getloadavg()[0]}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="settings file (default: rag/default.yaml alone)")
    parser.add_argument("--sets", nargs="*", default=list(sets()), choices=list(sets()))
    parser.add_argument("--limit", type=int, default=None, help="N questions per set, evenly spaced")
    parser.add_argument("--sweep", action="store_true", help="also report hybrids with one dense share for all")
    parser.add_argument("--no-cost", action="store_true", help="skip the model's load time and memory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = load_settings(args.config)
    cost = {} if args.no_cost else model_cost(settings)
    results = [evaluate(sets()[name](), args.limit, args.sweep, settings) for name in args.sets]
    name = settings.embedder.model
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "config": str(args.config),
               "embedder": name, "retrieval": settings.retrieval.model_dump(), "cost": cost, "results": results}
    out = args.out or Path(f"bench/results/crosslingual-{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(cost))
    print(f"{'set':14} {'retriever':14} hit@1  hit@5  nDCG@10")
    for result in results:
        for key, m in result["metrics"].items():
            print(f"{result['dataset']:14} {key:14} {m['hit@1']:.3f}  {m['hit@5']:.3f}  {m['ndcg@10']:.3f}")


if __name__ == "__main__":
    main()
