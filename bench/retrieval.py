"""Retrieval quality of dense, BM25 and hybrid search on the shared SQuAD-format dev sets.

Each paragraph is indexed as a document; a question's gold is its own paragraph. The hybrid figures use the same
`fuse` function and default weights the product uses; `--sweep` also reports other dense weights (how the defaults
were chosen). Writes bench/results/retrieval.json.

    python -m bench.retrieval                 # XQuAD-en, XQuAD-de, PIAF-fr, every question
    python -m bench.retrieval --limit 200 --sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from rag.datasets import read_squad
from rag.language import detect_language
from rag.metrics import dedupe, retrieval_metrics
from rag.pipeline import Pipeline
from rag.retrieve import fuse
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa"
DATASETS = {
    "xquad-en": SHARED / "xquad" / "xquad.en.json",
    "xquad-de": SHARED / "xquad" / "xquad.de.json",
    "piaf-fr": SHARED / "piaf_fr" / "piaf-v1.0.json",
}
SWEEP = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def evaluate(name: str, path: Path, limit: int | None, sweep: bool, scratch: Path) -> dict:
    dataset = read_squad(path, name)
    questions = dataset.questions[:limit] if limit else dataset.questions
    pipeline = Pipeline(Settings(index_dir=scratch / name, data_dir=scratch / "data"))
    started = time.perf_counter()
    pipeline.ingest_documents(dataset.documents, progress=True)
    index_seconds = time.perf_counter() - started
    retriever = pipeline.retriever
    doc_of = {}
    weights = sorted({*(SWEEP if sweep else ()), None}, key=lambda w: -1 if w is None else w)
    runs: dict[str, list] = {"dense": [], "bm25": [], "hybrid": []} | {f"hybrid@w={w}": [] for w in weights if w is not None}
    started = time.perf_counter()
    for question in tqdm(questions, desc=f"{name} questions", unit="q"):
        lang = detect_language(question.text)
        dense, lexical = retriever.rankings(question.text, lang, retriever.settings.candidates)
        rankings = {
            "dense": dense, "bm25": lexical,
            "hybrid": fuse(dense, lexical, retriever.dense_weight(lang), retriever.settings.rrf_k),
        }
        for w in weights:
            if w is not None:
                rankings[f"hybrid@w={w}"] = fuse(dense, lexical, w, retriever.settings.rrf_k)
        missing = {cid for ranking in rankings.values() for cid, _ in ranking} - doc_of.keys()
        doc_of.update({cid: rec.doc_id for cid, rec in pipeline.store.chunks(sorted(missing)).items()})
        for key, ranking in rankings.items():
            runs[key].append((dedupe([doc_of[cid] for cid, _ in ranking]), set(question.gold_doc_ids)))
    query_seconds = time.perf_counter() - started
    pipeline.close()
    return {
        "dataset": name, "path": str(path), "dataset_sha256": dataset.sha256, "documents": len(dataset.documents),
        "questions": len(questions), "index_seconds": round(index_seconds, 1),
        "query_ms_mean": round(1000 * query_seconds / max(1, len(questions)), 2),
        "dense_weight": retriever.settings.dense_weight,
        "metrics": {key: {m: round(v, 4) for m, v in retrieval_metrics(run).items()} for key, run in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--limit", type=int, default=None, help="first N questions per dataset")
    parser.add_argument("--sweep", action="store_true", help="also report other dense weights")
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrieval.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as scratch:
        for name in args.datasets:
            results.append(evaluate(name, DATASETS[name], args.limit, args.sweep, Path(scratch)))
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    for result in results:
        print(f"\n{result['dataset']} ({result['questions']} questions)")
        for key, metrics in result["metrics"].items():
            print(f"  {key:16} " + "  ".join(f"{m}={v:.3f}" for m, v in metrics.items() if m != "questions"))


if __name__ == "__main__":
    main()
