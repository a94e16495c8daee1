"""Time to index one corpus per embedder backend, against the model's raw encoder (and LlamaIndex) in the same run.

    python -m bench.ingest                                   # writes bench/results/ingest.json
    python -m bench.ingest --llamaindex-python /work/li-venv/bin/python

Corpus: the first 20 Legilux PDFs and the 240 XQuAD-en paragraphs (one text file each), copied into a scratch
folder. Pipeline: parse + chunk + embed + commit to a fresh scratch index, once per backend of the configured model
(`--backends`: the default's numpy; torch, onnx, onnx-int8 with RAG_CONFIG=configs/english.yaml), models loaded (and
ONNX graphs exported) beforehand; with `--rounds N` the backends (and LlamaIndex) take turns N times, so a change in
the machine's load falls on all of them. Raw limit: the model's own `encode` (sentence-transformers, or USE's numpy
pass) alone on exactly the texts the pipeline embedded, same batch size. LlamaIndex (optional, its own venv, see
bench/ingest_llamaindex.py): SimpleDirectoryReader + SentenceSplitter(512, 50) + HuggingFaceEmbedding of
all-MiniLM-L6-v2 (it cannot run USE) + FAISS over the same folder. The figure compared is the time to index the corpus (chunk counts differ: ours
are ~127 tokens, LlamaIndex's ~391, most of them truncated by the embedder); pages/s and chunks/s are given beside it.
Wall time moves with the load of other jobs on a shared machine, so each run also reports its CPU seconds (all
threads of the process) and the load average around it.

Stores: `--stores embedded postgres` runs every backend's ingestion into each store in turn (PostgreSQL: a fresh
database of the bundled test server per run, bench/stores.py), reported as `<backend>` and `<backend>+postgres`:
the same parsing and embedding, then commits into the database (HNSW, GIN and postings updated per commit) instead
of SQLite and the rebuild of the embedded structures. CPU seconds count this process only, not the database
server's.

    python -m bench.ingest --backends onnx-int8 --stores embedded postgres --no-raw --pdfs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.retrieval import BACKENDS, with_backend
from bench.stores import SERVER_SETTINGS, STORES, bench_settings, postgres_server, server_facts
from rag.chunk import embed_text
from rag.embed import bundled_embedder_path
from rag.pipeline import Pipeline
from rag.settings import PACKAGED_EMBEDDERS, Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LEGILUX = SHARED / "corpus" / "legilux" / "works"
XQUAD_EN = SHARED / "qa" / "xquad" / "xquad.en.json"
TARGET_VS_LLAMAINDEX = 0.5  # issue 13: the default configuration indexes the corpus in at most half LlamaIndex's time


def pick_pdfs(count: int) -> list[Path]:
    """The first `count` PDFs by path (folders named *.pdf hold the file)."""
    pdfs = sorted(p for p in LEGILUX.rglob("*.pdf") if p.is_file())
    if not pdfs:
        raise SystemExit(f"no PDFs under {LEGILUX}: is ../shared/data present?")
    return pdfs[:count]


def build_corpus(folder: Path, pdf_count: int, paragraphs: int) -> dict:
    """PDFs copied under unique names (several are all called fr.pdf), XQuAD-en paragraphs as text files."""
    (folder / "legilux").mkdir(parents=True)
    (folder / "xquad").mkdir()
    pdfs = pick_pdfs(pdf_count)
    for i, pdf in enumerate(pdfs):
        shutil.copyfile(pdf, folder / "legilux" / f"{i:02d}-{pdf.name}")
    data = json.loads(XQUAD_EN.read_text())
    contexts = [p["context"] for article in data["data"] for p in article["paragraphs"]][:paragraphs]
    for i, context in enumerate(contexts):
        (folder / "xquad" / f"{i:03d}.txt").write_text(context)
    return {"pdfs": len(pdfs), "xquad_paragraphs": len(contexts)}


def settings_for(backend: str, scratch: Path, batch_size: int | None, dsn: str | None = None) -> Settings:
    """The configured settings (env, YAML) with this backend, a scratch index (or the PostgreSQL database at `dsn`)
    and, if asked, another batch size."""
    base = bench_settings("postgres", dsn) if dsn else Settings()
    configured = with_backend(base, backend, **({"batch_size": batch_size} if batch_size else {}))
    return configured.model_copy(update={"index_dir": scratch / f"index-{backend}"})


class Meter:
    """Wall and CPU seconds (every thread of this process) and the load average around a piece of work."""

    def __enter__(self) -> Meter:
        self.load_before = round(os.getloadavg()[0], 2)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.load_after = round(os.getloadavg()[0], 2)

    def rates(self, chunks: int) -> dict:
        return {
            "seconds": round(self.wall, 2), "cpu_seconds": round(self.cpu, 2),
            "chunks_per_s": round(chunks / self.wall, 2), "chunks_per_cpu_s": round(chunks / self.cpu, 2),
            "load_average_1min": [self.load_before, self.load_after],
        }


def run_pipeline(
    backend: str, corpus: Path, scratch: Path, batch_size: int | None, dsn: str | None = None
) -> tuple[dict, list[str]]:
    """One backend's ingestion into the embedded store (or the PostgreSQL one at `dsn`); also the texts it embedded,
    for the raw runs (embedded store only: none for PostgreSQL)."""
    pipeline = Pipeline(settings_for(backend, scratch, batch_size, dsn))
    with Meter() as load:
        pipeline.embedder.encode(["warm-up"])  # model load and ONNX export are not ingestion
    with Meter() as meter:
        report = pipeline.ingest([corpus], progress=False)
    texts = [] if dsn else [
        embed_text(json.loads(heading), text)
        for heading, text in pipeline.store.db.execute("SELECT heading, text FROM chunks ORDER BY id")
    ]
    info = pipeline.embedder.info
    result = {
        "documents": len(report.added), "failed": len(report.failed), "pages": report.pages, "chunks": report.chunks,
        **meter.rates(report.chunks), "pages_per_s": round(report.pages / meter.wall, 2),
        "model_load_seconds": round(load.wall, 2), "batch_size": pipeline.settings.embedder.batch_size,
        "onnx_graph": str(pipeline.embedder.backend.path) if info.backend_sha256 else None,
        "backend_sha256": info.backend_sha256, **chunk_sizes(pipeline.embedder, texts),
    }
    pipeline.close()
    return result, texts


def chunk_sizes(embedder, texts: list[str]) -> dict:
    """The embedded texts' sizes in the embedder's tokens, and how many its window would cut."""
    tokens = embedder.count_tokens(texts)
    window = embedder.info.max_tokens
    return {
        "mean_chunk_tokens": round(sum(tokens) / max(1, len(tokens)), 1), "max_chunk_tokens": max(tokens, default=0),
        "embedder_window": window, "chunks_truncated": sum(t > window for t in tokens),
    }


def run_raw_encode(texts: list[str], scratch: Path, batch_size: int | None) -> dict:
    """The configured model's own `encode` alone (sentence-transformers on torch, or USE's numpy forward pass), same
    texts and batch size."""
    backend = "numpy" if Settings().embedder.model in PACKAGED_EMBEDDERS else "torch"
    pipeline = Pipeline(settings_for(backend, scratch, batch_size))
    model = pipeline.embedder.model
    size = pipeline.settings.embedder.batch_size
    with Meter() as meter:
        model.encode(texts, batch_size=size, normalize_embeddings=True)
    return {"backend": backend, "chunks": len(texts), "batch_size": size, **meter.rates(len(texts))}


def run_llamaindex(python: str, corpus: Path, threads: int | None) -> dict:
    """bench/ingest_llamaindex.py in its own interpreter; its last output line is its JSON result."""
    script = Path(__file__).with_name("ingest_llamaindex.py")
    command = [python, str(script), str(corpus), str(bundled_embedder_path())] + ([str(threads)] if threads else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace, scratch: Path) -> dict:
    corpus = scratch / "corpus"
    result: dict = {"corpus": build_corpus(corpus, args.pdfs, args.paragraphs), "rounds": []}
    server = postgres_server(settings=SERVER_SETTINGS) if "postgres" in args.stores else None
    if server is not None:
        result["postgres_server"] = server_facts(server)
    names = [backend if store == "embedded" else f"{backend}+{store}" for backend in args.backends
             for store in args.stores]
    texts: list[str] = []
    for number in range(args.rounds):
        turn: dict = {}
        for backend in args.backends:
            for store in args.stores:
                name = backend if store == "embedded" else f"{backend}+{store}"
                dsn = server.database() if server is not None and store == "postgres" else None
                turn[name], embedded = run_pipeline(backend, corpus, scratch / f"round-{number}", args.batch_size,
                                                    dsn)
                texts = embedded or texts
                print(number, name, json.dumps(turn[name]), flush=True)
        if args.llamaindex_python:
            turn["llamaindex"] = run_llamaindex(args.llamaindex_python, corpus, Settings().embedder.threads)
            print(number, "llamaindex", json.dumps(turn["llamaindex"]), flush=True)
            for name in names:
                turn[name] |= versus(turn[name], turn["llamaindex"])
        result["rounds"].append(turn)
    if args.raw and texts:  # the texts the last backend embedded into the embedded store
        result["raw_encode"] = run_raw_encode(texts, scratch, args.batch_size)
        raw = result["raw_encode"]
        for turn in result["rounds"]:
            for name in names:
                turn[name]["vs_raw_encode"] = round(turn[name]["chunks_per_s"] / raw["chunks_per_s"], 2)
                turn[name]["vs_raw_encode_cpu"] = round(turn[name]["chunks_per_cpu_s"] / raw["chunks_per_cpu_s"],
                                                              2)
    result["median_seconds"] = {
        name: statistics.median(turn[name]["seconds"] for turn in result["rounds"]) for name in result["rounds"][0]
    }
    return result


def versus(ours: dict, llamaindex: dict) -> dict:
    """Our time to index the corpus as a fraction of LlamaIndex's in the same round (wall and CPU seconds)."""
    ratio = ours["seconds"] / llamaindex["seconds"]
    return {
        "time_vs_llamaindex": round(ratio, 3), "cpu_time_vs_llamaindex": round(ours["cpu_seconds"] /
                                                                             llamaindex["cpu_seconds"], 3),
        "meets_target": ratio <= TARGET_VS_LLAMAINDEX,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=int, default=20, help="how many Legilux PDFs")
    parser.add_argument("--paragraphs", type=int, default=240, help="how many XQuAD-en paragraphs")
    parser.add_argument("--backends", nargs="*", default=None, choices=BACKENDS,
                        help="embedder backends of the configured model (default: the configured one; torch, onnx and "
                        "onnx-int8 with RAG_CONFIG=configs/english.yaml)")
    parser.add_argument("--stores", nargs="+", default=["embedded"], choices=STORES,
                        help="store backends, each ingesting the corpus in turn (PostgreSQL: the bundled test server)")
    parser.add_argument("--no-raw", dest="raw", action="store_false",
                        help="skip the model's raw encoder (the in-run limit)")
    parser.add_argument("--rounds", type=int, default=1, help="turns of every backend (and LlamaIndex)")
    parser.add_argument("--batch-size", type=int, default=None, help="embedder.batch_size for every run")
    parser.add_argument("--llamaindex-python", help="interpreter of a venv with LlamaIndex (see ingest_llamaindex.py)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    args = parser.parse_args()
    settings = Settings()
    args.backends = args.backends or [settings.embedder.backend]
    header = {
        "command": "python -m bench.ingest " + " ".join(sys.argv[1:]),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": platform.platform(),
        "cpus": os.cpu_count(), "embedder": settings.embedder.model, "embedder_threads": settings.embedder.threads,
        "default_backend": settings.embedder.backend, "target_time_vs_llamaindex": TARGET_VS_LLAMAINDEX,
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as scratch:
        payload = header | run(args, Path(scratch))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
