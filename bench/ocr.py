"""OCR of scanned pages: pages/s and character accuracy against the text layer, on real Legilux PDFs.

    python -m bench.ocr                                   # writes bench/results/ocr.json
    python -m bench.ocr --pages 3 --pdfs 60 --out bench/results/ocr.json

For each language (fr, de) the first `--pages` text pages of that language (py3langid on the page's text layer,
at least 800 characters) among the first `--pdfs` Legilux PDFs under ../shared/data are rendered with pypdfium2 at
`ingest.ocr_dpi` (a clean scan), read by Tesseract in that language exactly as the loader does (rag/ocr.py `ocr_pages`), and
compared with the page's own text layer (rag/load.py's extraction of that page). Both sides are compared with
whitespace collapsed; accuracy is 1 - edits / reference characters, the edits counted from difflib's alignment
(each replaced, inserted or deleted stretch counts its longer side: an upper bound of the edit distance).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import time
from pathlib import Path

from rag import load
from rag.language import detect_language
from rag.ocr import OcrOptions, ocr_pages

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def accuracy(reference: str, read: str) -> float:
    reference, read = " ".join(reference.split()), " ".join(read.split())
    matcher = difflib.SequenceMatcher(None, reference, read, autojunk=False)
    edits = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal")
    return max(0.0, 1 - edits / max(1, len(reference)))


def text_pages(pdfs: list[Path], lang: str, wanted: int) -> list[tuple[Path, int, str]]:
    """(pdf, 1-based page, text layer) of the first `wanted` pages of language `lang`."""
    import pypdfium2 as pdfium

    found = []
    for path in pdfs:
        pdf = pdfium.PdfDocument(path)
        try:
            for index in range(len(pdf)):
                text = "\n".join(load._pdf_lines(load._pdf_page_text(pdf, index, str(path))))
                if len(text) >= 800 and detect_language(text) == lang:
                    found.append((path, index + 1, text))
                    break  # one page per document: more variety
        finally:
            pdf.close()
        if len(found) == wanted:
            break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--pdfs", type=int, default=60)
    parser.add_argument("--dpi", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ocr.json"))
    args = parser.parse_args()
    pdfs = sorted(p for p in DATA.glob("corpus/legilux/**/*.pdf") if p.is_file())[: args.pdfs]
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load_average": os.getloadavg()}, "dpi": args.dpi, "languages": {}}  # fmt: skip
    for lang, tesseract in (("fr", "fra"), ("de", "deu")):
        rows = []
        for path, number, reference in text_pages(pdfs, lang, args.pages):
            started = time.perf_counter()
            read = ocr_pages(path.read_bytes(), [number], OcrOptions(dpi=args.dpi), tesseract)[number]
            seconds = time.perf_counter() - started
            rows.append({"pdf": str(path.relative_to(DATA)), "page": number, "chars": len(reference),
                         "seconds": round(seconds, 2), "accuracy": round(accuracy(reference, read), 4)})  # fmt: skip
            print(lang, rows[-1], flush=True)
        total = sum(r["seconds"] for r in rows)
        results["languages"][lang] = {
            "pages": len(rows), "pages_per_s": round(len(rows) / total, 3) if total else None,
            "mean_accuracy": round(sum(r["accuracy"] for r in rows) / len(rows), 4) if rows else None,
            "rows": rows,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: {kk: v[kk] for kk in ("pages", "pages_per_s", "mean_accuracy")}
                      for k, v in results["languages"].items()}))  # fmt: skip


if __name__ == "__main__":
    main()
