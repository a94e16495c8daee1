"""Answer latency: the pipeline's breakdown, and raw llama.cpp on the identical prompts in the same run.

20 fixed XQuAD-en questions (evenly spaced through the file) over all XQuAD-en paragraphs, each indexed as a document.
Pass 1 asks them through `Pipeline.ask`; pass 2 gives llama.cpp the very prompts the pipeline built, with the same
sampling settings. Both passes start with a warm-up question so that each measured prompt finds only the constant
prompt prefix in llama.cpp's KV cache, as in normal use. A cold/warm pair measures what that cache saves.
Writes bench/results/answer.json.

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

from rag.datasets import read_squad
from rag.pipeline import Pipeline
from rag.prompt import build_prompt
from rag.settings import Settings

XQUAD_EN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa" / "xquad" / "xquad.en.json"
QUESTIONS = 20
WARM_UP = "What is this text about?"


def fixed_questions(questions: list, count: int = QUESTIONS) -> list[str]:
    step = len(questions) // count
    return [q.text for q in questions[::step][:count]]


def pipeline_pass(pipeline: Pipeline, questions: list[str]) -> list[dict]:
    pipeline.ask(WARM_UP)
    rows = []
    for question in questions:
        answer = pipeline.ask(question)
        rows.append({"question": question, "abstained": answer.abstained, "raw": answer.raw, "answer": answer.text,
                     **vars(answer.timings)})
    return rows


def raw_pass(pipeline: Pipeline, prompts: list[str]) -> list[dict]:
    """llama.cpp alone: the same Llama object, prompt and sampling options, no retrieval, parsing or checks."""
    llm = pipeline.llm
    llm.complete(prompts[-1])
    return [raw_generation(llm, prompt) for prompt in prompts]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/answer.json"))
    args = parser.parse_args()
    dataset = read_squad(XQUAD_EN, "xquad-en")
    questions = fixed_questions(dataset.questions)
    with tempfile.TemporaryDirectory(prefix="rag-answer-") as scratch:
        settings = Settings(index_dir=Path(scratch) / "index", data_dir=Path(scratch) / "data")
        pipeline = Pipeline(settings)
        pipeline.ingest_documents(dataset.documents, progress=True)
        rows = pipeline_pass(pipeline, questions)
        prompts = [build_prompt(q, pipeline.search(q), settings.llm.prompt_format) for q in questions]
        raw = raw_pass(pipeline, prompts)
        cache = cache_effect(pipeline, prompts)
        pipeline.close()
    pipeline_ms, raw_ms = sum(r["total_ms"] for r in rows), sum(r["total_ms"] for r in raw)
    payload = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "questions": len(questions),
        "documents": len(dataset.documents), "llm": settings.llm.model_dump(),
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    for key in ("pipeline", "raw_llama_cpp", "overhead_ratio", "overhead_ms_mean", "identical_outputs", "abstained",
                "kv_cache"):
        print(f"{key:18} {json.dumps(payload[key])}")


if __name__ == "__main__":
    main()
