"""Why the int8 graph has 7-bit weights: the 8-bit one is not the same computation on every CPU.

    python -m bench.int8_portability            # writes bench/results/int8_portability.json

Quantises the exported fp32 graph twice, with 7-bit weights (`reduce_range`, the graph every machine makes) and with
8-bit ones (what CPUs with VNNI or ARM dot products could run exactly), and measures on this machine each graph's
cosine to the fp32 vectors and its CPU time, on 300 PIAF-fr paragraphs and 300 questions (the texts of the outlier
study in docs/benchmarks.md). On x86 without VNNI, ONNX Runtime's u8s8 kernel sums pairs of products in 16 bits,
which saturate with 8-bit weights: there the 8-bit graph gives other (worse) vectors than on a VNNI or ARM machine,
so an index built with it would not mean the same thing everywhere. The 7-bit graph cannot saturate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.embed_onnx import OnnxBackend, quantise
from rag.settings import Settings

PIAF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa" / "piaf_fr" / "piaf-v1.0.json"


def texts(count: int) -> list[str]:
    """`count` PIAF paragraphs and `count` questions, evenly spaced."""
    paragraphs = [p for article in json.loads(PIAF.read_text())["data"] for p in article["paragraphs"]]
    picked = paragraphs[:: max(1, len(paragraphs) // count)][:count]
    return [p["context"] for p in picked] + [p["qas"][0]["question"] for p in picked]


def run(graph: OnnxBackend, batches: list[list[str]]) -> tuple[np.ndarray, float]:
    started = time.process_time()
    vectors = np.vstack([graph.encode(batch) for batch in batches])
    return vectors, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="paragraphs (and as many questions)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/int8_portability.json"))
    args = parser.parse_args()
    settings = Settings()
    embedder = Embedder(settings.embedder.model_copy(update={"backend": "onnx"}), settings.data_dir)
    fp32 = embedder.backend
    sample = texts(args.count)
    size = settings.embedder.batch_size
    batches = [sample[i : i + size] for i in range(0, len(sample), size)]
    reference, fp32_cpu = run(fp32, batches)
    result: dict = {"machine": platform.platform(), "processor": platform.processor(), "texts": len(sample),
                    "fp32_cpu_seconds": round(fp32_cpu, 2), "graphs": {}}
    with tempfile.TemporaryDirectory(prefix="rag-int8-") as scratch:
        for name, reduce_range in (("7-bit weights (the shipped graph)", True), ("8-bit weights", False)):
            path = Path(scratch) / f"int8-{int(reduce_range)}.onnx"
            quantise(embedder.model, fp32.path, path, reduce_range=reduce_range)
            vectors, cpu = run(OnnxBackend(embedder.model, path, settings.embedder.threads), batches)
            cosines = (vectors * reference).sum(axis=1)
            result["graphs"][name] = {
                "mean_cosine_to_fp32": round(float(cosines.mean()), 4), "min_cosine_to_fp32": round(float(cosines.min()), 4),
                "cpu_seconds": round(cpu, 2),
            }
            print(name, result["graphs"][name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result | {"cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
