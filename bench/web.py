"""What the web page costs: the bytes a browser loads, and the time to render a PDF page with a passage marked.

    python -m bench.web                        # writes bench/results/web.json

Page images are rendered by `rag.pdf_page.render_page` (what `GET /v1/documents/{id}/pages/{n}` runs) from the real
Journal officiel (Mémorial) PDFs in ../shared/data, each page marked with the text of its first paragraph, at the
default `web.page_scale`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from rag.load import load_document
from rag.pdf_page import Mark, render_page
from rag.server.web import STATIC
from rag.settings import WebSettings

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT.parent / "shared" / "data" / "corpus" / "legilux"


def page_images(limit: int, scale: float) -> dict:
    timings, sizes, located = [], [], 0
    for path in sorted(PDFS.rglob("*.pdf"))[:limit]:
        document, data = load_document(path), path.read_bytes()
        firsts = {}
        for block in document.blocks:
            firsts.setdefault(block.page, document.text[block.start:block.end])
        for page, text in firsts.items():
            started = time.perf_counter()
            png = render_page(data, page=page, scale=scale, marks=[Mark(text, (255, 214, 0, 70))])
            timings.append((time.perf_counter() - started) * 1000)
            sizes.append(len(png))
            located += _has_mark(png)
    return {"pdfs": min(limit, len(list(PDFS.rglob("*.pdf")))), "pages": len(timings), "scale": scale,
            "render_ms_p50": round(float(np.percentile(timings, 50)), 1),
            "render_ms_p95": round(float(np.percentile(timings, 95)), 1),
            "png_kb_p50": round(float(np.percentile(sizes, 50)) / 1024, 1), "pages_with_mark_drawn": located}


def _has_mark(png: bytes) -> bool:
    import io

    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return bool(((rgb[..., 0] > 200) & (rgb[..., 2] < 180) & (rgb[..., 0] - rgb[..., 2] > 60)).any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=int, default=5, help="PDFs to render every page of")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web.json")
    args = parser.parse_args()
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "page_files": len(files), "page_bytes": sum(p.stat().st_size for p in files),
        "page_images": page_images(args.pdfs, WebSettings().page_scale),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
