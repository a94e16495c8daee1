"""OCR of scanned pages: character accuracy against the text layer, and pages/s, on real Legilux PDFs.

    python -m bench.ocr                                    # writes bench/results/ocr.json
    python -m bench.ocr --rag /tmp/before --out /tmp/ocr-before.json   # another checkout's loader and OCR
    python -m bench.ocr --threads 0 --limit 2 --out /tmp/ocr-omp.json  # Tesseract's own OpenMP threads

Pages: `PAGES`, a fixed list of text pages from different documents under ../shared/data (French, and German pages
of the bilingual Mémorial). For each, the page is rendered with pypdfium2 at `--scan-dpi` in grayscale (a clean
scan) and put in place of the page in a copy of its PDF, so the copy has one page without a text layer. The loader
reads both files (`load_bytes`, the ingest path: OCR language choice, line joining, de-hyphenation, running
headers and footers dropped, exactly as indexed); the text of that page's blocks in each is compared.

Measure: character error rate = Levenshtein distance (rapidfuzz, unit costs) / reference characters, on both texts
normalised alike: apostrophe, quote and dash variants unified, NFKC (ligatures), runs of dots (leaders) dropped,
letter-spaced words ("R E C U E I L", spaces PDFium puts between spaced glyphs) closed up, whitespace collapsed.
Accuracy = 1 - CER. The order of characters counts: text read in another order costs its edits.
Speed: CPU seconds of the Tesseract processes per page (pytesseract runs one per reading: the children's rusage),
which a shared machine's load does not inflate as it does wall time; with one thread per Tesseract
(OMP_THREAD_LIMIT=`--threads`, as in the parser processes; 0 leaves it unset) pages per CPU second is pages/s per
free core. The wall time of the whole load of the scanned copy is recorded beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

from tests.ocr_pages import character_accuracy, normalise, page_text, scanned_copy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKS = ROOT.parent / "shared" / "data" / "corpus" / "legilux" / "works"

PAGES: list[tuple[str, str, int]] = [  # (language of the page, PDF under WORKS, 1-based page): one per document
    ("fr", "agd-1924-11-22-n1/versions/1988-10-12/fr.pdf-memorial/eli-etat-leg-memorial-1988-a53-fr-pdf.pdf", 1),
    ("fr", "loi-2009-05-29-n2/versions/2011-11-07/fr.pdf-memorial/eli-etat-leg-memorial-2011-a224-fr-pdf.pdf", 2),
    ("fr", "loi-2006-07-31-n2/versions/2020-08-28/fr.pdf/eli-etat-leg-code-travail-20200828-fr-pdf.pdf", 100),
    ("fr", "rgd-2020-03-25-a187/versions/2020-04-24/fr.pdf/"
           "eli-etat-leg-rgd-2020-03-25-a187-consolide-20200424-fr-pdf.pdf", 1),
    ("fr", "loi-1974-05-10-n1/versions/1982-04-04/fr.pdf-memorial/eli-etat-leg-memorial-1982-a29-fr-pdf.pdf", 3),
    ("de", "agc-2000-11-10-n1/versions/2000-12-16/fr.pdf-memorial/eli-etat-leg-memorial-2000-a125-fr-pdf.pdf", 3),
    ("de", "loi-1983-03-09-n1/versions/1988-08-16/fr.pdf-memorial/eli-etat-leg-memorial-1989-a36-fr-pdf.pdf", 43),
    ("de", "rmin-1988-02-15-n1/versions/1994-10-31/fr.pdf-memorial/eli-etat-leg-memorial-1994-a93-fr-pdf.pdf", 2),
]  # fmt: skip

def measure_page(data: bytes, number: int, *, name: str, scan_dpi: int, ocr) -> dict:
    """Reference and OCR reading of one page through the loader (module docstring)."""
    from rag.load import OcrOptions, load_bytes

    scan = scanned_copy(data, number, dpi=scan_dpi)
    original = load_bytes(data, name, ocr=OcrOptions(enabled=False))
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    scanned = load_bytes(scan, name, ocr=ocr)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    tesseract = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    reference, read = page_text(original, number), page_text(scanned, number)
    return {"pages_ocr": scanned.pages_ocr, "reference_chars": len(normalise(reference)),
            "read_chars": len(normalise(read)), "tesseract_cpu_s": round(tesseract, 2), "load_wall_s": round(wall, 2),
            "accuracy": round(character_accuracy(reference, read), 4)}  # fmt: skip


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per language: pages, mean and lowest accuracy, and pages read per Tesseract CPU second (a row's load may OCR
    further pages of its PDF that are real scans, up to ingest.ocr_max_pages: all of them count)."""
    summary = {}
    for lang in sorted({row["lang"] for row in rows}):
        mine = [row for row in rows if row["lang"] == lang]
        seconds, read = sum(row["tesseract_cpu_s"] for row in mine), sum(len(row["pages_ocr"]) for row in mine)
        summary[lang] = {"pages": len(mine), "mean_accuracy": round(sum(r["accuracy"] for r in mine) / len(mine), 4),
                         "min_accuracy": min(r["accuracy"] for r in mine), "pages_read": read,
                         "pages_per_cpu_s": round(read / seconds, 3) if seconds > 0 else None}  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rag", type=Path, help="import rag from this checkout (default: this one)")
    parser.add_argument("--scan-dpi", type=int, default=300, help="resolution of the page images put in the PDFs")
    parser.add_argument("--dpi", type=int, help="ingest.ocr_dpi: resolution the loader renders at (default: its own)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_THREAD_LIMIT for Tesseract; 0 leaves it unset")
    parser.add_argument("--limit", type=int, default=len(PAGES), help="only the first N of PAGES")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ocr.json")
    args = parser.parse_args(argv)
    if args.rag:
        sys.path.insert(0, str(args.rag.resolve()))
    if args.threads:
        os.environ["OMP_THREAD_LIMIT"] = str(args.threads)  # this process only: what the parser workers set
    import rag.load

    ocr = rag.load.OcrOptions(**({"dpi": args.dpi} if args.dpi else {}))
    rows = []
    for lang, relative, number in PAGES[: args.limit]:
        path = WORKS / relative
        row = measure_page(path.read_bytes(), number, name=path.name, scan_dpi=args.scan_dpi, ocr=ocr)
        rows.append({"lang": lang, "pdf": relative, "page": number, **row})
        print(json.dumps(rows[-1]), flush=True)
    summary = summarise(rows)
    result = {
        "rag": str(Path(rag.load.__file__).parents[1]), "scan_dpi": args.scan_dpi, "ocr": vars(ocr),
        "omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT"),
        "measure": "1 - Levenshtein distance / reference chars (rapidfuzz), normalised (module docstring)",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "summary": summary, "rows": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
