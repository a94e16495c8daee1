"""Retrieval quality of dense, BM25 and hybrid search on the shared dev sets, per embedder backend.

Each paragraph is indexed as a document; a question's gold is its own paragraph. A thin wrapper over the evaluation
harness (rag/eval: its cached scratch index and its `Ranker`, which fuses with the product's `fuse` and default
weights); `--sweep` also reports other dense weights (how the defaults were chosen). `rag eval run FILE --mode
retrieval` gives the same dense/BM25/hybrid figures for any dataset. ClapNQ dev is read as the harness reads it
(the folder: its unanswerable questions have no gold and are not scored). With several `--backends` each set is
scored by every backend in turn, and each metric is also given relative to the first backend's (`change`).
Writes bench/results/retrieval.json.

    python -m bench.retrieval                 # XQuAD-en, XQuAD-de, PIAF-fr, ClapNQ, every question, configured backend
    python -m bench.retrieval --limit 300 --backends torch onnx onnx-int8
    python -m bench.retrieval --limit 200 --sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from rag.eval.datasets import read_clapnq, read_squad
from rag.eval.index import open_index
from rag.eval.metrics import retrieval_metrics
from rag.eval.question import Ranker
from rag.eval.run import subset
from rag.settings import EmbedderSettings, Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa"
DATASETS = {
    "xquad-en": SHARED / "xquad" / "xquad.en.json",
    "xquad-de": SHARED / "xquad" / "xquad.de.json",
    "piaf-fr": SHARED / "piaf_fr" / "piaf-v1.0.json",
    "clapnq": SHARED / "clapnq" / "annotated_data" / "dev",
}
BACKENDS = ("numpy", "torch", "onnx", "onnx-int8")  # numpy: use-multilingual-v3; the others: configs/english.yaml
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def evaluate(name: str, path: Path, limit: int | None, sweep: bool, settings: Settings) -> dict:
    dataset = read_clapnq(path) if path.is_dir() else read_squad(path, name)
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
        "dataset": name, "backend": settings.embedder.backend, "path": str(path), "dataset_sha256": dataset.sha256, "documents": len(dataset.documents),
        "questions": len(questions), "index_seconds": index["build_seconds"], "index_reused": index["reused"],
        "query_ms_mean": round(1000 * query_seconds / max(1, len(questions)), 2),
        "dense_weight": settings.retrieval.dense_weight,
        "metrics": {key: {m: round(v, 4) for m, v in retrieval_metrics(run).items()} for key, run in runs.items()},
    }


def with_backend(settings: Settings, backend: str, **fields) -> Settings:
    """`settings` with this embedder backend (and other embedder `fields`), validated as a configuration is: a
    backend the model does not run on (onnx for use-multilingual-v3) stops the bench with the settings' message."""
    try:
        embedder = EmbedderSettings.model_validate({**settings.embedder.model_dump(), "backend": backend, **fields})
    except ValidationError as exc:
        raise SystemExit(f"error: {exc.errors()[0]['msg']}") from None
    return settings.model_copy(update={"embedder": embedder})


def changes(result: dict, reference: dict) -> dict:
    """Each metric relative to the reference backend's on the same questions: +0.01 is 1% higher."""
    return {key: {m: round(v / reference["metrics"][key][m] - 1, 4) for m, v in metrics.items()
                  if m != "questions" and reference["metrics"][key].get(m)}
            for key, metrics in result["metrics"].items() if key in reference["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--backends", nargs="*", default=None, choices=BACKENDS,
                        help="embedder backends to compare, the first as the reference (default: the configured one)")
    parser.add_argument("--limit", type=int, default=None, help="N questions per dataset, evenly spaced")
    parser.add_argument("--sweep", action="store_true", help="also report other dense weights")
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrieval.json"))
    args = parser.parse_args()
    settings = Settings()
    backends = args.backends or [settings.embedder.backend]
    results = []
    for name in args.datasets:
        runs = [evaluate(name, DATASETS[name], args.limit, args.sweep, with_backend(settings, b)) for b in backends]
        for result in runs[1:]:
            result["change"] = changes(result, runs[0])
        results += runs
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    for result in results:
        print(f"\n{result['dataset']} {result['backend']} ({result['questions']} questions)")
        for key, metrics in result["metrics"].items():
            change = result.get("change", {}).get(key, {})
            print(f"  {key:16} " + "  ".join(
                f"{m}={v:.3f}" + (f" ({change[m]:+.2%})" if m in change else "")
                for m, v in metrics.items() if m != "questions"))


if __name__ == "__main__":
    main()
