"""Sizing figures for docs/deployment.md: embedding and llama.cpp speed at 1 and 2 threads on this machine.

    RAG_EMBEDDER__THREADS=1 python -m bench.sizing      # writes bench/results/sizing.json

Embedding: the sample corpus's chunks (the chunker's real passages), repeated to `--passages`, encoded by the
configured embedder (the default: USE v3 on numpy; `RAG_CONFIG=configs/english.yaml`: all-MiniLM-L6-v2) limited
to 1, then 2 threads. llama.cpp: the bundled Gemma 3 270M Q4_K_M reads a
prompt of `--prompt-tokens` tokens made of those passages and writes `--new-tokens` tokens, at n_threads 1 and 2;
the times are llama.cpp's own counters (llama_perf_context), so Python overhead is excluded. The load average is
recorded because the machine is shared: compare the 1- vs 2-thread ratio more than the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rag.embed import Embedder
from rag.generate import LlamaCppLLM
from rag.pipeline import Pipeline
from rag.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus"


def sample_passages(scratch: Path, count: int) -> list[str]:
    pipeline = Pipeline(Settings(index_dir=scratch / "index", data_dir=scratch / "data"))
    pipeline.ingest([EXAMPLES], progress=False)
    texts = [row[0] for row in pipeline.store.db.execute("SELECT text FROM chunks ORDER BY id")]
    pipeline.close()
    return (texts * (count // len(texts) + 1))[:count]


def embedding_rate(settings: Settings, passages: list[str], threads: int) -> dict:
    embedder = Embedder(settings.embedder.model_copy(update={"threads": threads}), settings.data_dir)
    embedder.encode(passages[:8])  # load and warm up
    started = time.perf_counter()
    embedder.encode(passages)
    seconds = time.perf_counter() - started
    tokens = sum(embedder.count_tokens(passages))
    return {"threads": threads, "passages": len(passages), "seconds": round(seconds, 2),
            "passages_per_s": round(len(passages) / seconds, 1), "tokens_per_s": round(tokens / seconds)}


def llm_rates(settings: Settings, passages: list[str], threads: int, prompt_tokens: int, new_tokens: int) -> dict:
    import llama_cpp

    llm = LlamaCppLLM(settings.llm.model_copy(update={"n_threads": threads}), settings.data_dir)
    prompt = _prompt(llm, passages, prompt_tokens)
    llm.llama.create_completion("Warm-up.", max_tokens=4)
    llm.llama.reset()  # nothing of the prompt in the KV cache: every prompt token is processed
    llama_cpp.llama_perf_context_reset(llm.llama.ctx)
    llm.llama.create_completion(prompt, max_tokens=new_tokens, temperature=0.0, stop=[])
    perf = llama_cpp.llama_perf_context(llm.llama.ctx)
    llm.close()
    return {"threads": threads, "prompt_tokens": perf.n_p_eval, "generated_tokens": perf.n_eval,
            "prompt_tokens_per_s": round(perf.n_p_eval / perf.t_p_eval_ms * 1000, 1),
            "generation_tokens_per_s": round(perf.n_eval / perf.t_eval_ms * 1000, 1)}


def _prompt(llm: LlamaCppLLM, passages: list[str], tokens: int) -> str:
    text = ""
    for passage in passages:
        if llm.count_tokens(text + passage) > tokens:
            break
        text += passage + "\n\n"
    return text + "Question: what do these documents say?\nAnswer:"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results/sizing.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rag-sizing-") as scratch:
        settings = Settings(index_dir=Path(scratch) / "index", data_dir=Path(scratch) / "data")
        passages = sample_passages(Path(scratch), args.passages)
        embedding = [embedding_rate(settings, passages, threads) for threads in (1, 2)]
        llm = [llm_rates(settings, passages, t, args.prompt_tokens, args.new_tokens) for t in (1, 2)]
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_average_before": load_before,
               "load_average_after": os.getloadavg(), "embedder": settings.embedder.model,
               "embedder_backend": settings.embedder.backend, "embedding": embedding, "llm": llm,
               "llm_model": settings.llm.model_name}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
