"""Retrieval quality of dense, BM25 and hybrid search on the shared SQuAD-format dev sets.

Each paragraph is indexed as a document; a question's gold is its own paragraph. A thin wrapper over the evaluation
harness (rag/eval: its cached scratch index and its `Ranker`, which fuses with the product's `fuse` and default
weights); `--sweep` also reports other dense weights (how the defaults were chosen). `rag eval run FILE --mode
retrieval` gives the same dense/BM25/hybrid figures for any dataset. Writes bench/results/retrieval.json.

    python -m bench.retrieval                 # XQuAD-en, XQuAD-de, PIAF-fr, every question
    python -m bench.retrieval --limit 200 --sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from tqdm import tqdm

from rag.eval.datasets import read_squad
from rag.eval.index import open_index
from rag.eval.question import Ranker
from rag.eval.run import subset
from rag.eval.metrics import retrieval_metrics
from rag.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa"
DATASETS = {
    "xquad-en": SHARED / "xquad" / "xquad.en.json",
    "xquad-de": SHARED / "xquad" / "xquad.de.json",
    "piaf-fr": SHARED / "piaf_fr" / "piaf-v1.0.json",
}
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def evaluate(name: str, path: Path, limit: int | None, sweep: bool, settings: Settings) -> dict:
    dataset = read_squad(path, name)
    questions = subset(dataset.questions, limit)
    pipeline, index = open_index(settings, dataset, progress=True)
    ranker = Ranker(pipeline, dataset)
    runs: dict[str, list] = {}
    started = time.perf_counter()
    for question in tqdm(questions, desc=f"{name} questions", unit="q"):
        for key, ranking in ranker.rank(question.text, SWEEP if sweep else ()).items():
            runs.setdefault(key, []).append((ranking, set(question.gold_doc_ids)))
    query_seconds = time.perf_counter() - started
    pipeline.close()
    return {
        "dataset": name, "path": str(path), "dataset_sha256": dataset.sha256, "documents": len(dataset.documents),
        "questions": len(questions), "index_seconds": index["build_seconds"], "index_reused": index["reused"],
        "query_ms_mean": round(1000 * query_seconds / max(1, len(questions)), 2),
        "dense_weight": settings.retrieval.dense_weight,
        "metrics": {key: {m: round(v, 4) for m, v in retrieval_metrics(run).items()} for key, run in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--limit", type=int, default=None, help="N questions per dataset, evenly spaced")
    parser.add_argument("--sweep", action="store_true", help="also report other dense weights")
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrieval.json"))
    args = parser.parse_args()
    settings = Settings()
    results = [evaluate(name, DATASETS[name], args.limit, args.sweep, settings) for name in args.datasets]
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    for result in results:
        print(f"\n{result['dataset']} ({result['questions']} questions)")
        for key, metrics in result["metrics"].items():
            print(f"  {key:16} " + "  ".join(f"{m}={v:.3f}" for m, v in metrics.items() if m != "questions"))


if __name__ == "__main__":
    main()
