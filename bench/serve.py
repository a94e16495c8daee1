"""HTTP service throughput and latency, against the same pipeline called in-process in the same run; and answers
while the server embeds an upload.

    python -m bench.serve                      # writes bench/results/serve.json
    python -m bench.serve --busy               # writes bench/results/serve-busy.json

`rag serve` runs as a subprocess (the load generator must not share the server's interpreter) over a scratch index
of the sample corpus; searches run at 1, 4 and 16 concurrent clients, answers at 1 and 4. The in-process figures
call `Pipeline.search` / `Pipeline.ask` from as many threads, with the same settings: the difference is what HTTP,
JSON, authentication, the queue and the audit log cost. The levels alternate (HTTP, then in-process, per level) so
that the load of other jobs on a shared machine hits both sides alike.

An answer takes seconds and its time varies with the machine's load far more than HTTP costs, so for answers the
overhead is also measured *within* each request: client latency minus the pipeline's own `timings.total_ms`
reported in the same response (`overhead_in_request_p50_ms`), which drift between the two phases cannot distort.

`--busy` measures what an upload does to answers: streamed `/v1/ask` requests one after another, time to first token
(client side, request sent to first `token` event) and tokens/s (first to last token), first with the server idle,
then while it parses, embeds and commits a 50-page PDF made of real Legilux pages, in alternating rounds (the PDF is
deleted after each round, so every round embeds it again and every idle phase sees the same index). Only answers
that ended before the upload did count as loaded. Other jobs on a shared machine load both phases alike; the load
average is recorded per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from tests.llama_server import free_port

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
LEGILUX = ROOT.parent / "shared" / "data" / "corpus" / "legilux" / "works"
QUESTIONS = [
    "How many days per week may staff work remotely?",
    "Wie lange werden Bewerbungsunterlagen aufbewahrt?",
    "What is the hotel ceiling for a night abroad?",
    "Combien de jours de télétravail sont autorisés ?",
    "Who must approve a security exception?",
    "When must passwords be changed?",
]


def summary(latencies: list[float], wall: float, pipeline_ms: list[float]) -> dict:
    """Throughput and latency percentiles; for answers also the pipeline's own time inside each request."""
    ms = np.asarray(latencies) * 1000
    out = {"requests": len(latencies), "rps": round(len(latencies) / wall, 2), "p50_ms": _p(ms, 50),
           "p95_ms": _p(ms, 95)}
    if pipeline_ms:
        out["pipeline_p50_ms"] = _p(np.asarray(pipeline_ms), 50)
        out["overhead_in_request_p50_ms"] = _p(ms - np.asarray(pipeline_ms), 50)
    return out


def _p(values: np.ndarray, q: int) -> float:
    return round(float(np.percentile(values, q)), 2)


# ---------------------------------------------------------------------------------------------- HTTP side
async def _http(base_url: str, key: str, path: str, bodies: list[dict], concurrency: int) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    pipeline_ms: list[float] = []
    statuses: dict[int, int] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(path, json=body)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            timings = response.json().get("timings")
            if timings:
                pipeline_ms.append(timings["total_ms"])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600,
                                 limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {**summary(latencies, wall, pipeline_ms), "statuses": statuses}


def http(base_url: str, key: str, path: str, bodies: list[dict], concurrency: int) -> dict:
    return asyncio.run(_http(base_url, key, path, bodies, concurrency))


# ---------------------------------------------------------------------------------------------- in-process side
def in_process(call, arguments: list[dict], concurrency: int) -> dict:
    def timed(kwargs: dict) -> tuple[float, object]:
        started = time.perf_counter()
        result = call(**kwargs)
        return time.perf_counter() - started, result

    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        done = list(pool.map(timed, arguments))
        wall = time.perf_counter() - started
    pipeline_ms = [result.timings.total_ms for _, result in done if hasattr(result, "timings")]
    return summary([latency for latency, _ in done], wall, pipeline_ms)


# ---------------------------------------------------------------------------------------------- setup
def configure(scratch: Path, port: int, args: argparse.Namespace) -> None:
    """Environment shared by this process and the server, so both sides run identical settings; thread counts only
    when given, so that the server's defaults are what is measured otherwise."""
    os.environ.update({
        "RAG_INDEX_DIR": str(scratch / "index"), "RAG_SERVER__PORT": str(port),
        "RAG_SERVER__KEYS_FILE": str(scratch / "keys.json"), "RAG_AUDIT__PATH": str(scratch / "audit.jsonl"),
        "RAG_LLM__MAX_TOKENS": str(args.max_tokens), "RAG_SERVER__QUEUE_SIZE": str(args.queue_size),
        "HF_HUB_OFFLINE": "1",
    })
    for name, value in (("RAG_LLM__N_THREADS", args.llm_threads), ("RAG_SERVER__INGEST_THREADS", args.ingest_threads)):
        if value is not None:
            os.environ[name] = str(value)


def start_server(port: int, log: Path) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "rag", "serve"], cwd=ROOT, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the server exited: see {log}")
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("the server did not become ready in 10 minutes")


def run(args: argparse.Namespace, scratch: Path) -> dict:
    from rag.auth import KeyStore, keys_path
    from rag.pipeline import Pipeline
    from rag.settings import load_settings
    from rag.store import SearchFilter

    port = free_port()
    configure(scratch, port, args)
    settings = load_settings()
    pipeline = Pipeline(settings)
    pipeline.ingest([CORPUS], progress=False)
    key, _ = KeyStore(keys_path(settings)).create("bench", settings.default_labels, admin=args.busy)
    pdf = fifty_page_pdf(scratch / "legilux-50-pages.pdf", args.busy_pages) if args.busy else None
    server = start_server(port, scratch / "server.log")
    load_before = os.getloadavg()
    try:
        if args.busy:
            results = measure_busy(args, f"http://127.0.0.1:{port}", key, pdf)
        else:
            pipeline.search("warm-up")
            pipeline.llm  # noqa: B018 - load the model before timing
            results = measure(args, f"http://127.0.0.1:{port}", key, pipeline,
                              SearchFilter(labels=frozenset(settings.default_labels)))
    finally:
        server.terminate()
        server.wait(60)
    stats = pipeline.stats()
    pipeline.close()
    return {
        "command": " ".join(["python -m bench.serve", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"llm.max_tokens": args.max_tokens, "llm.n_threads": settings.llm.n_threads,
                     "server.ingest_threads": getattr(settings.server, "ingest_threads", None),
                     "server.queue_size": args.queue_size, "retrieval.k": settings.retrieval.k,
                     "retrieval.mode": settings.retrieval.mode, "code": _code_version()},
        "corpus": {"documents": stats["documents"], "chunks": stats["chunks"]},
        **results,
    }


def measure(args, base_url: str, key: str, pipeline, search_filter) -> dict:
    searches = [{"query": QUESTIONS[i % len(QUESTIONS)]} for i in range(args.search_requests)]
    asks = [{"question": QUESTIONS[i % len(QUESTIONS)]} for i in range(args.ask_requests)]
    http(base_url, key, "/v1/search", searches[:8], 2)  # warm the server's connections and caches
    http(base_url, key, "/v1/ask", asks[:1], 1)  # both models' first evaluation is not a request's cost
    pipeline.ask(**asks[0], search_filter=search_filter)
    out: dict = {"search": [], "ask": []}
    for concurrency in (1, 4, 16):
        out["search"].append(_pair(concurrency, http(base_url, key, "/v1/search", searches, concurrency),
                                   in_process(lambda query: pipeline.search(query, search_filter=search_filter),
                                              searches, concurrency)))
        print(json.dumps(out["search"][-1]), flush=True)
    for concurrency in (1, 4):
        out["ask"].append(_pair(concurrency, http(base_url, key, "/v1/ask", asks, concurrency),
                                in_process(lambda question: pipeline.ask(question, search_filter=search_filter),
                                           asks, concurrency)))
        print(json.dumps(out["ask"][-1]), flush=True)
    return out


# ---------------------------------------------------------------------------------------------- answers during an upload
def fifty_page_pdf(out: Path, pages: int) -> Path:
    """`pages` pages with text of the Legilux PDFs, in sorted path order, in one PDF (real French legislation)."""
    import pypdfium2 as pdfium

    merged = pdfium.PdfDocument.new()
    for source in sorted(p for p in LEGILUX.rglob("*.pdf") if p.is_file()):
        document = pdfium.PdfDocument(source)
        wanted = [i for i in range(len(document)) if len(document[i].get_textpage().get_text_range()) > 500]
        merged.import_pages(document, wanted[: pages - len(merged)])
        document.close()
        if len(merged) >= pages:
            break
    if len(merged) < pages:
        raise SystemExit(f"found only {len(merged)} pages with text under {LEGILUX}")
    merged.save(out)
    merged.close()
    return out


def ask_streamed(client: httpx.Client, question: str) -> dict:
    """One streamed answer timed from the client: time to first token and decoding rate after it."""
    started = time.perf_counter()
    first = last = None
    tokens = 0
    with client.stream("POST", "/v1/ask", json={"question": question, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("event: token"):
                last = time.perf_counter()
                first = first or last
                tokens += 1
    ended = time.perf_counter()
    return {"status": response.status_code, "tokens": tokens, "started": started, "ended": ended,
            "ttft_s": None if first is None else first - started,
            "decode_s": None if first is None else last - first}


def phase_summary(asks: list[dict]) -> dict:
    """Median time to first token, and tokens/s over all answers (tokens after the first / decoding time)."""
    timed = [a for a in asks if a["ttft_s"] is not None and a["tokens"] > 1]
    decode = sum(a["decode_s"] for a in timed)
    return {"answers": len(asks), "timed": len(timed),
            "ttft_p50_ms": _p(np.asarray([a["ttft_s"] for a in timed]) * 1000, 50) if timed else None,
            "tokens_per_s": round(sum(a["tokens"] - 1 for a in timed) / decode, 2) if decode else None}


def measure_busy(args, base_url: str, key: str, pdf: Path) -> dict:
    """Alternate idle and upload rounds; see the module docstring."""
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.busy_idle_asks)]
    headers = {"Authorization": f"Bearer {key}"}
    rounds, idle_all, loaded_all = [], [], []
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client, \
            httpx.Client(base_url=base_url, headers=headers, timeout=600) as uploader:
        for question in QUESTIONS:  # warm-up: model, KV cache of the instructions, every question's retrieval once
            ask_streamed(client, question)
        for number in range(args.busy_rounds):
            idle = [ask_streamed(client, q) for q in questions]
            upload: dict = {}

            def send(name: str = f"load-{number}.pdf") -> None:
                started = time.perf_counter()
                response = uploader.post("/v1/documents", files={"files": (name, pdf.read_bytes(), "application/pdf")})
                upload.update(status=response.status_code, body=response.json(), ended=time.perf_counter(),
                              seconds=round(time.perf_counter() - started, 2))

            thread = threading.Thread(target=send)
            thread.start()
            asked = []
            while thread.is_alive():
                asked.append(ask_streamed(client, QUESTIONS[len(asked) % len(QUESTIONS)]))
            thread.join()
            loaded = [a for a in asked if a["ended"] <= upload["ended"]]  # answers wholly inside the upload
            client.delete(f"/v1/documents/{upload['body']['documents'][0]['doc_id']}")
            idle_all += idle
            loaded_all += loaded
            rounds.append({"loadavg": [round(x, 2) for x in os.getloadavg()], "idle": phase_summary(idle),
                           "during_upload": phase_summary(loaded),
                           "upload": {"status": upload["status"], "seconds": upload["seconds"],
                                      "chunks": upload["body"]["chunks"]}})
            print(json.dumps(rounds[-1]), flush=True)
    idle, loaded = phase_summary(idle_all), phase_summary(loaded_all)
    ratios = {"ttft_loaded_over_idle": _ratio(loaded["ttft_p50_ms"], idle["ttft_p50_ms"]),
              "tokens_per_s_loaded_over_idle": _ratio(loaded["tokens_per_s"], idle["tokens_per_s"])}
    return {"pdf_pages": args.busy_pages, "idle": idle, "during_upload": loaded, **ratios, "rounds": rounds}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _code_version() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _pair(concurrency: int, over_http: dict, direct: dict) -> dict:
    return {"concurrency": concurrency, "http": over_http, "in_process": direct,
            "overhead_p50_ms": round(over_http["p50_ms"] - direct["p50_ms"], 2)}  # between the two phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-requests", type=int, default=200, help="searches per concurrency level")
    parser.add_argument("--ask-requests", type=int, default=8, help="answers per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=48, help="llm.max_tokens for the answers")
    parser.add_argument("--llm-threads", type=int, default=None,
                        help="llm.n_threads (default: the configuration's; 2 threads on a busy 2-core machine collapse)")
    parser.add_argument("--ingest-threads", type=int, default=None,
                        help="server.ingest_threads (default: the configuration's)")
    parser.add_argument("--busy", action="store_true", help="answers idle vs during an upload (see above)")
    parser.add_argument("--busy-rounds", type=int, default=3, help="idle/upload rounds")
    parser.add_argument("--busy-idle-asks", type=int, default=4, help="answers per idle phase")
    parser.add_argument("--busy-pages", type=int, default=50, help="pages of the uploaded PDF")
    parser.add_argument("--queue-size", type=int, default=8, help="server.queue_size (4 clients must not see 429)")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/serve.json, or serve-busy.json")
    args = parser.parse_args()
    args.out = args.out or ROOT / "bench" / "results" / ("serve-busy.json" if args.busy else "serve.json")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        result = run(args, Path(scratch))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
