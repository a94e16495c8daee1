"""Throughput with one vs two llama.cpp servers behind the OpenAI-compatible backend, and fail-over when one dies.

    RAG_EMBEDDER__THREADS=1 python -m bench.llm_servers     # writes bench/results/llm_servers.json

Two `python -m llama_cpp.server` processes on 127.0.0.1 serve the bundled GGUF (`--n_threads 1` each). Concurrent
clients send the product's own prompts through `OpenAICompatibleLLM`, first with one endpoint listed, then with
both; the two set-ups alternate for `--rounds` rounds so that the load of other jobs hits both alike, and the median
round is reported. Last, one server is killed (SIGKILL) while requests are in flight: every request that had not
started streaming must still succeed on the other one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rag.generate import OpenAICompatibleLLM, resolve_model
from rag.prompt import build_prompt
from rag.settings import LLMSettings
from tests.llama_server import LlamaServer, Outcome, one_request

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "How many days per week may staff work remotely?",
    "Wie lange werden Bewerbungsunterlagen aufbewahrt?",
    "What is the hotel ceiling for a night abroad?",
    "Who must approve a security exception?",
]
def run_load(llm: OpenAICompatibleLLM, prompts: list[str], clients: int, max_tokens: int,
             on_done=lambda outcomes: None) -> tuple[list[Outcome], float]:
    outcomes: list[Outcome] = []

    def task(prompt: str) -> None:
        outcomes.append(one_request(llm, prompt, max_tokens))
        on_done(outcomes)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(task, prompts))
    return outcomes, time.perf_counter() - started


def summary(outcomes: list[Outcome], wall: float) -> dict:
    ok = [o for o in outcomes if o.error is None]
    ms = np.asarray([o.seconds for o in ok]) * 1000
    return {"requests": len(outcomes), "failed": len(outcomes) - len(ok), "rps": round(len(ok) / wall, 3),
            "tokens_per_s": round(sum(o.pieces for o in ok) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "wall_s": round(wall, 2)}


def client(urls: list[str]) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(LLMSettings(backend="openai", endpoints=urls, model_name="gemma",
                                           health_interval_s=60))


def throughput(servers: list[LlamaServer], prompts: list[str], args) -> dict:
    """Alternate one and two endpoints per round; report each round and the median rates (noise is one-sided)."""
    rounds: dict[str, list[dict]] = {"one_server": [], "two_servers": []}
    for _ in range(args.rounds):
        for name, urls in (("one_server", [servers[0].url]), ("two_servers", [s.url for s in servers])):
            rounds[name].append(summary(*run_load(client(urls), prompts, args.clients, args.max_tokens)))
    medians = {name: {key: round(float(np.median([r[key] for r in runs])), 3)
                      for key in ("rps", "tokens_per_s", "p50_ms", "p95_ms")} for name, runs in rounds.items()}
    return {"rounds": rounds, "median": medians,
            "speedup_rps": round(medians["two_servers"]["rps"] / medians["one_server"]["rps"], 3)}


def failover(servers: list[LlamaServer], prompts: list[str], args) -> dict:
    """Kill the first server once `args.kill_after` requests have finished; count failures by whether they began."""
    kill_once = threading.Lock()

    def kill_when_due(outcomes: list[Outcome]) -> None:
        if len(outcomes) >= args.kill_after and kill_once.acquire(blocking=False):
            servers[0].kill()

    failures = _Counter()
    logging.getLogger("rag.endpoints").addHandler(failures)
    outcomes, wall = run_load(client([s.url for s in servers]), prompts, args.clients, args.max_tokens, kill_when_due)
    return {**summary(outcomes, wall), "killed_after_requests": args.kill_after,
            "endpoint_failures_seen": failures.count,  # each one a request moved to the other server, or broken off
            "failed_before_streaming": sum(1 for o in outcomes if o.error and o.pieces == 0),
            "failed_after_streaming_began": sum(1 for o in outcomes if o.error and o.pieces > 0),
            "errors": sorted({o.error[:200] for o in outcomes if o.error})}


class _Counter(logging.Handler):
    """Counts the pool's endpoint-failure warnings: the requests that met the dead server."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kill-after", type=int, default=4, help="fail-over run: finished requests before the kill")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "llm_servers.json")
    args = parser.parse_args()

    prompts = [build_prompt(QUESTIONS[i % len(QUESTIONS)], []) for i in range(args.requests)]  # the product's prefix
    model, _ = resolve_model(LLMSettings(), ROOT / "data")
    logs = Path(tempfile.mkdtemp(prefix="llm-servers-"))
    servers = [LlamaServer.start(model, logs / f"server-{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.wait_ready()
            one_request(client([server.url]), prompts[0], args.max_tokens)  # warm-up: first request pays set-up
        result = {"throughput": throughput(servers, prompts, args), "failover": failover(servers, prompts, args)}
    finally:
        for server in servers:
            server.stop()
    result["config"] = {**vars(args), "out": str(args.out), "n_threads_per_server": 1, "n_ctx": 1024,
                        "model": model.name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_avg": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
