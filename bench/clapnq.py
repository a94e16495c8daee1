"""Abstention and answer quality on ClapNQ dev: answerable and unanswerable questions over their own passages.

Every item's passage is indexed (both files, one scratch index; with --limit too) and every question is asked in generate mode with
both abstention thresholds at 0, recording the retrieval evidence and each sentence's support. The thresholds are then
applied offline: they are tuned on the items of even position in each file and reported on those of odd position,
so the reported figures are not measured on the data they were chosen on. Writes bench/results/clapnq.json.

    python -m bench.clapnq --limit 40      # first 40 questions of each file (a few minutes)
    python -m bench.clapnq                 # all 600 questions
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

from rag.eval.datasets import read_clapnq
from rag.eval.metrics import abstention_metrics, token_recall
from rag.pipeline import Pipeline
from rag.settings import AnswerSettings, Settings

CLAPNQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa" / "clapnq" / "annotated_data" / "dev"
RETRIEVAL_GRID = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SUPPORT_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def read_items(limit: int | None) -> tuple[list[dict], list]:
    """Questions of both files (the first `limit` of each), tagged with their position (even: tuning, odd: report),
    and the passages of every item of both files, read by the evaluation harness's own ClapNQ reader."""
    dataset = read_clapnq(CLAPNQ)
    items = []
    for answerable in (True, False):
        questions = [q for q in dataset.questions if q.answerable == answerable][:limit]
        items += [{"id": q.id, "question": q.text, "answerable": answerable, "gold": q.answers[0] if q.answers else "",
                   "split": "tune" if position % 2 == 0 else "test"} for position, q in enumerate(questions)]
    return items, dataset.documents


def ask_all(pipeline: Pipeline, items: list[dict]) -> list[dict]:
    records = []
    for item in tqdm(items, desc="questions", unit="q"):
        answer = pipeline.ask(item["question"])
        records.append({
            "id": item["id"], "split": item["split"], "answerable": item["answerable"], "gold": item["gold"],
            "evidence": answer.evidence, "no_hits": not answer.sources,
            "sentences": [(s.text, s.support) for s in answer.sentences], "timings": vars(answer.timings),
        })
    return records


def decide(record: dict, min_retrieval: float, min_support: float) -> tuple[bool, str]:
    """(abstained, answer text) as the product would have answered with these thresholds."""
    kept = [text for text, support in record["sentences"] if support >= min_support]
    abstained = record["no_hits"] or record["evidence"] < min_retrieval or not kept
    return abstained, "" if abstained else " ".join(kept)


def score(records: list[dict], min_retrieval: float, min_support: float) -> dict:
    decisions = [(decide(r, min_retrieval, min_support), r) for r in records]
    answerable = [(text, r["gold"]) for (_, text), r in decisions if r["answerable"]]
    answered = [(text, gold) for text, gold in answerable if text]
    return {
        "min_retrieval_score": min_retrieval, "min_support": min_support, "questions": len(records),
        **{k: round(v, 4) for k, v in abstention_metrics([(a, r["answerable"]) for (a, _), r in decisions]).items()},
        "token_recall_answerable": round(_mean(token_recall(t, g) for t, g in answerable), 4),
        "token_recall_answered": round(_mean(token_recall(t, g) for t, g in answered), 4),
        "answered_answerable": len(answered),
    }


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def tune(records: list[dict]) -> dict:
    """The thresholds with the best abstention F1 on the tuning half, ties broken by answer token recall."""
    grid = [score(records, r, s) for r in RETRIEVAL_GRID for s in SUPPORT_GRID]
    return max(grid, key=lambda m: (m["f1"], m["token_recall_answerable"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="first N items of each file")
    parser.add_argument("--out", type=Path, default=Path("bench/results/clapnq.json"))
    args = parser.parse_args()
    items, documents = read_items(args.limit)
    with tempfile.TemporaryDirectory(prefix="rag-clapnq-") as scratch:
        settings = Settings(index_dir=Path(scratch) / "index", data_dir=Path(scratch) / "data",
                            answer={"min_retrieval_score": 0.0, "min_support": 0.0})
        pipeline = Pipeline(settings)
        pipeline.ingest_documents(documents, progress=True)
        started = time.perf_counter()
        records = ask_all(pipeline, items)
        seconds = time.perf_counter() - started
        pipeline.close()
    tune_records = [r for r in records if r["split"] == "tune"]
    test_records = [r for r in records if r["split"] == "test"]
    chosen = tune(tune_records)
    defaults = AnswerSettings()  # the shipped defaults, whatever configs/default.yaml says
    payload = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "limit": args.limit, "questions": len(records),
        "seconds": round(seconds, 1), "seconds_per_question": round(seconds / max(1, len(records)), 3),
        "llm": settings.llm.model_dump(), "retrieval": settings.retrieval.model_dump(),
        "tuned_on_tune_half": chosen,
        "test_half_at_tuned": score(test_records, chosen["min_retrieval_score"], chosen["min_support"]),
        "test_half_at_defaults": score(test_records, defaults.min_retrieval_score, defaults.min_support),
        "all_at_defaults": score(records, defaults.min_retrieval_score, defaults.min_support),
        "sweep_tune_half": [score(tune_records, r, s) for r in RETRIEVAL_GRID for s in SUPPORT_GRID],
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    for key in ("tuned_on_tune_half", "test_half_at_tuned", "test_half_at_defaults", "all_at_defaults"):
        print(f"{key:22} {json.dumps(payload[key])}")
    print(f"{len(records)} questions in {seconds:.0f} s ({payload['seconds_per_question']} s/question)")


if __name__ == "__main__":
    main()
