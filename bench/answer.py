"""Answer latency: the pipeline's breakdown, and raw llama.cpp on the identical prompts in the same run.

20 fixed XQuAD-en questions (evenly spaced through the file) over all XQuAD-en paragraphs, each indexed as a document.
Prompt variants on the same index and models: `full-4`, the 4 best passages in full, and `lean-<budget>`, the
configured prompt with `answer.passage_tokens` of the sentences that bear on the question (rag/focus.py), for the
configured budget or each of `--budgets`.
Pass 1 asks the questions through `Pipeline.ask`, both variants in turn for each question; pass 2 gives llama.cpp
the very prompts each pipeline built, with the same sampling settings. Every pass starts with a warm-up question so that each measured prompt finds
only the constant prompt prefix in llama.cpp's KV cache, as in normal use. A cold/warm pair measures what that cache
saves. Writes bench/results/answer.json.

    python -m bench.answer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rag.eval.datasets import read_squad
from rag.pipeline import Pipeline
from rag.settings import Settings

XQUAD_EN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa" / "xquad" / "xquad.en.json"
QUESTIONS = 20
WARM_UP = "What is this text about?"


def fixed_questions(questions: list, count: int = QUESTIONS) -> list[str]:
    step = len(questions) // count
    return [q.text for q in questions[::step][:count]]


def asked(pipeline: Pipeline, question: str) -> dict:
    answer = pipeline.ask(question)
    return {"question": question, "abstained": answer.abstained, "raw": answer.raw, "answer": answer.text,
            **vars(answer.timings)}


def raw_generation(llm, prompt: str) -> dict:
    started = time.perf_counter()
    first, pieces = None, []
    for chunk in llm.llama.create_completion(prompt, stream=True, **llm.sampling(None, None)):
        first = first or time.perf_counter()
        pieces.append(chunk["choices"][0]["text"])
    done = time.perf_counter()
    return {"raw": "".join(pieces), "ttft_ms": (first - started) * 1000 if first else None,
            "generated_tokens": len(pieces), "total_ms": (done - started) * 1000,
            "tokens_per_s": (len(pieces) - 1) / (done - first) if first and len(pieces) > 1 else None}


def cache_effect(pipeline: Pipeline, prompts: list[str]) -> dict:
    """Time to first token of one prompt with an empty KV cache, then of the next with the prefix cached."""
    pipeline.llm.llama.reset()
    cold = raw_generation(pipeline.llm, prompts[0])["ttft_ms"]
    warm = raw_generation(pipeline.llm, prompts[1])["ttft_ms"]
    return {"cold_ttft_ms": round(cold, 1), "warm_ttft_ms": round(warm, 1)}


def summary(rows: list[dict], keys: tuple[str, ...]) -> dict:
    out = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = {"mean": round(statistics.mean(values), 2), "median": round(statistics.median(values), 2)}
    return out


def variants(settings: Settings, budgets: list[int]) -> dict[str, Settings]:
    """`full-4`, then a lean variant per passage budget (`lean-<tokens>`), the rest of the settings unchanged."""
    def varied(k: int, passage_tokens: int) -> Settings:
        return settings.model_copy(update={
            "retrieval": settings.retrieval.model_copy(update={"k": k}),
            "answer": settings.answer.model_copy(update={"passage_tokens": passage_tokens}),
        })
    return {"full-4": varied(4, 0), **{f"lean-{b}": varied(settings.retrieval.k, b) for b in budgets}}


def measure(variants: dict[str, Settings], questions: list[str]) -> dict[str, dict]:
    """Both variants question by question (each pipeline has its own model and KV cache), so that a change in the
    machine's load between two phases hits both alike; then raw llama.cpp on each variant's prompts, likewise."""
    pipelines = {name: Pipeline(settings) for name, settings in variants.items()}
    for pipeline in pipelines.values():
        pipeline.ask(WARM_UP)
    rows: dict[str, list] = {name: [] for name in pipelines}
    for question in questions:
        for name, pipeline in pipelines.items():
            rows[name].append(asked(pipeline, question))
    prompts = {name: [p.answerer.prompt_for(q, p.search(q))[1] for q in questions] for name, p in pipelines.items()}
    for name, pipeline in pipelines.items():
        pipeline.llm.complete(prompts[name][-1])  # the raw pass starts with the prefix cached too
    raw: dict[str, list] = {name: [] for name in pipelines}
    for i in range(len(questions)):
        for name, pipeline in pipelines.items():
            raw[name].append(raw_generation(pipeline.llm, prompts[name][i]))
    results = {name: result(variants[name], rows[name], raw[name], cache_effect(p, prompts[name]))
               for name, p in pipelines.items()}
    for pipeline in pipelines.values():
        pipeline.close()
    return results


def result(settings: Settings, rows: list[dict], raw: list[dict], cache: dict) -> dict:
    pipeline_ms, raw_ms = sum(r["total_ms"] for r in rows), sum(r["total_ms"] for r in raw)
    return {
        "retrieval_k": settings.retrieval.k, "passage_tokens": settings.answer.passage_tokens,
        "pipeline": summary(rows, ("retrieval_ms", "prompt_tokens", "ttft_ms", "tokens_per_s", "generated_tokens",
                                   "verify_ms", "total_ms")),
        "raw_llama_cpp": summary(raw, ("ttft_ms", "tokens_per_s", "generated_tokens", "total_ms")),
        "overhead_ratio": round(pipeline_ms / raw_ms, 3),
        "overhead_ms_mean": round((pipeline_ms - raw_ms) / len(rows), 1),
        "identical_outputs": sum(a["raw"] == b["raw"] for a, b in zip(rows, raw)),
        "abstained": sum(r["abstained"] for r in rows),
        "kv_cache": cache,
        "rows": [{**a, "raw_llama_cpp": b} for a, b in zip(rows, raw)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/answer.json"))
    parser.add_argument("--budgets", type=int, nargs="+", default=None,
                        help="answer.passage_tokens of the lean variants (default: the configured value)")
    args = parser.parse_args()
    dataset = read_squad(XQUAD_EN, "xquad-en")
    questions = fixed_questions(dataset.questions)
    with tempfile.TemporaryDirectory(prefix="rag-answer-") as scratch:
        settings = Settings(index_dir=Path(scratch) / "index", data_dir=Path(scratch) / "data")
        indexer = Pipeline(settings)
        indexer.ingest_documents(dataset.documents, progress=True)
        indexer.close()
        results = measure(variants(settings, args.budgets or [settings.answer.passage_tokens]), questions)
    def ratios(side: str) -> dict[str, float]:
        """Median time to first token of each lean variant over that of full-4."""
        ttft = {name: r[side]["ttft_ms"]["median"] for name, r in results.items()}
        return {name: round(value / ttft["full-4"], 3) for name, value in ttft.items() if name != "full-4"}

    payload = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "questions": len(questions), "documents": len(dataset.documents), "llm": settings.llm.model_dump(),
        "ttft_vs_full_4": ratios("pipeline"), "raw_ttft_vs_full_4": ratios("raw_llama_cpp"),
        "variants": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    print("median time to first token / full-4's:", payload["ttft_vs_full_4"], "pipeline,",
          payload["raw_ttft_vs_full_4"], "raw llama.cpp")
    for name, result in results.items():
        for key in ("pipeline", "raw_llama_cpp", "overhead_ratio", "identical_outputs", "abstained", "kv_cache"):
            print(f"{name:7} {key:18} {json.dumps(result[key])}")


if __name__ == "__main__":
    main()
