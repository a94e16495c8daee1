"""Loader fidelity: how much of the text a reader sees in a file the loader returns, in order.

    python -m bench.fidelity                                   # writes bench/results/fidelity.json
    python -m bench.fidelity --rag /work/main --out /tmp/fidelity-before.json   # another checkout's loaders

Files: one generated sample per shared-drive format (tests/office_samples.py: PPTX, XLSX, CSV, ODT, ODS, ODP, EML,
with the text each holds) and the fault reproductions of ../shared/cases (01, 02, 03, 05, 06, 07, 09, 22), whose
expected text is written below from what the file shows when opened (the PDF form's field values, the scanned page
read by eye, the DOCX with its tracked changes accepted, the HTML page as a browser shows it).

Measure, per file, over words (`\\w+` runs, case-folded, NFC): with m = the words of the longest matching in order
between expected and returned words (difflib.SequenceMatcher without its junk heuristic: the sum of its matching
blocks, which is the longest common subsequence whenever the blocks are found greedily left to right, as they are on
near-identical texts; it never counts a word out of order),
- recall = m / expected words: the share of the expected text returned, in order (the headline figure);
- precision = m / returned words: 1 minus the share of returned words a reader does not see (hidden text, words
  repeated out of order).
A file the loader refuses scores 0 and its error is recorded. A file with pages read by OCR also gets bench/ocr.py's
character accuracy (1 - Levenshtein CER on normalised text), the measure of the issue's OCR target. `--rag DIR` imports `rag` from another checkout
(e.g. main before these loaders) while the samples still come from this one.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from tests.fidelity_measure import fidelity  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT.parent / "shared" / "cases"

CASE_TEXTS = {  # path under shared/cases -> the text a reader sees, in reading order
    "01-text-mentions-pdf-marker/archiving-rules.txt": None,  # None: the file's own text (UTF-8)
    "01-text-mentions-pdf-marker/pdf-checklist.md": None,
    "02-mixed-encoding/handbuch-mixed.txt": (
        "Personalhandbuch – Kapitel 4\nDie Kündigungsfrist beträgt für beide Seiten drei Monate zum Quartalsende.\n"
        "Überstunden werden mit einem Zuschlag von 25 Prozent vergütet.\nStand: März 2024 – Abteilung Personal"),
    "02-mixed-encoding/reisekosten-cp1252.txt": (
        "Reisekosten\nFür Dienstreisen über 500 km wird die Bahnfahrt in der zweiten Klasse erstattet."),
    "02-mixed-encoding/urlaub-utf16.txt": "Urlaub\nVollzeitbeschäftigte erhalten 28 Tage Jahresurlaub pro Kalenderjahr.",
    **{f"03-pdf-rotated-page/contract-{kind}.pdf": (
        "Employment contract - general provisions\nThe place of work is the head office in Esch-sur-Alzette.\n"
        "Working time is forty hours per week.\nTermination\nThe employee must observe the notice period of three "
        "months. The contract ends at the end of a calendar quarter. Notice must be given in writing and signed by "
        "both parties.") for kind in ("upright", "rotated")},
    "05-pdf-filled-form/onboarding-form.pdf": (
        "Employee onboarding form\nEmployee name: Henriette Zwanziger\nCost centre: KST-4711 Logistics\n"
        "Start date: 2024-09-01\nLaptop model: ThinkPad T14 Gen 5\n"
        "Please return this form to the HR office before the start date."),
    "06-docx-content-controls/service-agreement.docx": (
        "Service agreement\nThe supplier is Brightwater Facility Services S.a r.l., registered in Luxembourg.\n"
        "The monthly fee is 4,850 euros excluding VAT, payable within 30 days.\n"
        "The agreement may be terminated with three months notice."),
    "07-docx-tracked-changes/policy-reviewed.docx": (
        "Expense policy\nHotel costs are reimbursed up to 145 euros per night.\n"
        "Taxi rides are reimbursed only between 22:00 and 6:00.\nReceipts must be submitted within two months."),
    "09-html-hidden-text/parking.html": (
        "Parking policy\nStaff may park in garage B between 7:00 and 20:00. Visitors park in garage A and register "
        "at the reception."),
    "22-pdf-partly-scanned/works-agreement.pdf": (
        "Page 1\nWorks agreement on flexible working time. Core hours are 10:00 to 15:00.\nPage 2\n"
        "Overtime is recorded in the time system and compensated within three months.\n"
        "Annex 1: the agreement enters into force on 1 March 2025. Signed: works council."),
}


def inputs(cases: Path) -> list[tuple[str, str, bytes, str]]:
    """(kind, name, bytes, expected text) of every file measured; shared cases missing here are left out."""
    from tests.office_samples import SAMPLES

    found = [("sample", name, *make()) for name, make in SAMPLES.items()]
    for relative, expected in CASE_TEXTS.items():
        path = cases / relative
        if path.is_file():
            data = path.read_bytes()
            found.append(("case", relative, data, data.decode("utf-8") if expected is None else expected))
    return found


def measure(files: list[tuple[str, str, bytes, str]]) -> list[dict]:
    from bench.ocr import character_accuracy
    from rag.load import load_bytes

    rows = []
    for kind, name, data, expected in files:
        try:
            document = load_bytes(data, name)
            row = {"format": document.format, **fidelity(expected, document.text)}
            if document.pages_ocr:  # the OCR target is in characters: bench/ocr.py's measure
                row |= {"pages_ocr": document.pages_ocr,
                        "character_accuracy": round(character_accuracy(expected, document.text), 4)}
        except Exception as exc:  # noqa: BLE001 - a refused file scores 0; the reason is part of the result
            row = {"format": None, **fidelity(expected, ""), "error": " ".join(str(exc).split())[:300]}
        rows.append({"kind": kind, "file": name, **row})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rag", type=Path, help="import rag from this checkout (default: this one)")
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fidelity.json")
    args = parser.parse_args(argv)
    files = inputs(args.cases)  # the samples come from this checkout, imported before another rag
    if args.rag:
        sys.path.insert(0, str(args.rag.resolve()))
    import rag.load

    rows = measure(files)
    result = {"rag": str(Path(rag.load.__file__).parents[1]), "python": platform.python_version(),
              "measure": "words in order: difflib.SequenceMatcher(autojunk=False) matching blocks", "files": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    for row in rows:
        note = f"  ({row['error']})" if "error" in row else ""
        if "character_accuracy" in row:
            note += f"  (OCR of page(s) {row['pages_ocr']}: character accuracy {row['character_accuracy']:.1%})"
        print(f"{row['file']:52} {row['format'] or '-':8} recall {row['recall']:6.1%}  "
              f"precision {row['precision']:6.1%}{note}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
