"""Ingestion throughput on real Legilux PDFs, against the raw embedder limit measured in the same run.

    python -m bench.ingest --pdfs 20            # writes bench/results/ingest.json

Pipeline: parse (pypdfium2) + chunk + embed + commit to a fresh scratch index, models already loaded. Raw limit:
sentence-transformers `encode` alone on exactly the texts the pipeline embedded, same batch size. The ratio says
how much of the embedder's speed the whole pipeline keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from rag.chunk import embed_text
from rag.pipeline import Pipeline
from rag.settings import Settings

LEGILUX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus" / "legilux" / "works"


def pick_pdfs(count: int) -> list[Path]:
    """The first `count` PDFs by path (folders named *.pdf hold the file), skipping the 2.3 MB code for short runs."""
    pdfs = sorted(p for p in LEGILUX.rglob("*.pdf") if p.is_file())
    if not pdfs:
        raise SystemExit(f"no PDFs under {LEGILUX}: is ../shared/data present?")
    return pdfs[:count]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(count: int, scratch: Path) -> dict:
    pdfs = pick_pdfs(count)
    pipeline = Pipeline(Settings(index_dir=scratch / "index", data_dir=scratch / "data"))
    pipeline.embedder.encode(["warm-up"])  # model load is not ingestion
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    report = pipeline.ingest(pdfs, progress=True)
    seconds = time.perf_counter() - started
    rss_pipeline = peak_rss_mb()

    texts = [
        embed_text(json.loads(heading), text)
        for heading, text in pipeline.store.db.execute("SELECT heading, text FROM chunks ORDER BY id")
    ]
    model = pipeline.embedder.model
    started = time.perf_counter()
    model.encode(texts, batch_size=pipeline.settings.embedder.batch_size, normalize_embeddings=True)
    raw_seconds = time.perf_counter() - started
    tokens = pipeline.embedder.count_tokens(texts)
    pipeline.close()
    return {
        "pdfs": len(pdfs), "failed": len(report.failed), "pages": report.pages, "chunks": report.chunks,
        "mean_chunk_tokens": round(sum(tokens) / max(1, len(tokens)), 1), "max_chunk_tokens": max(tokens, default=0),
        "embedder_window": pipeline.embedder.info.max_tokens,
        "pipeline_seconds": round(seconds, 2),
        "pages_per_s": round(report.pages / seconds, 2),
        "chunks_per_s": round(report.chunks / seconds, 2),
        "raw_encode_seconds": round(raw_seconds, 2),
        "raw_encode_chunks_per_s": round(len(texts) / raw_seconds, 2),
        "pipeline_vs_raw": round((report.chunks / seconds) / (len(texts) / raw_seconds), 3),
        "peak_rss_mb_after_model_load": round(rss_before, 1),
        "peak_rss_mb_pipeline": round(rss_pipeline, 1),
        "embedder_backend": pipeline.settings.embedder.backend,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=int, default=20, help="how many Legilux PDFs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as scratch:
        result = run(args.pdfs, Path(scratch))
    payload = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch_threads": _torch_threads(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
