"""OCR of pages without a text layer: real Legilux pages rendered to images, read by the real Tesseract through the
loader, compared with their own text layer (bench/ocr.py measures the same on more pages)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pypdfium2 as pdfium
import pytest

from tests.ocr_pages import character_accuracy, page_text, scanned_copy
from rag.load import OcrOptions, load_bytes
from rag.load.ocr import ocr_languages

from .conftest import ROOT, shared

# A Mémorial issue with a French page (2) and German pages (3-7), both scanned by the tests below.
MEMORIAL = "corpus/legilux/works/agc-2000-11-10-n1/versions/2000-12-16/fr.pdf-memorial/eli-etat-leg-memorial-2000-a125-fr-pdf.pdf"
LETTERS = {"fr": "[éèêàçôû]", "de": "[äöüß]"}
FLOOR = 0.97  # these pages read 0.98-0.99; text out of order, garbage or a lost page score far lower


@pytest.fixture(scope="module")
def memorial() -> bytes:
    """Pages 1-4 of the Mémorial issue: a title page, the French page and two German ones."""
    source = pdfium.PdfDocument(shared(MEMORIAL).read_bytes())
    pdf = pdfium.PdfDocument.new()
    try:
        pdf.import_pages(source, [0, 1, 2, 3])
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()
    finally:
        pdf.close()
        source.close()


@pytest.fixture(scope="module")
def text_layer(memorial):
    return load_bytes(memorial, "memorial.pdf", ocr=OcrOptions(enabled=False))


@pytest.mark.parametrize(("page", "lang"), [(2, "fr"), (3, "de")])
def test_scanned_page_reads_like_its_text_layer(memorial, text_layer, page, lang):
    scan = scanned_copy(memorial, page, dpi=300)
    doc = load_bytes(scan, "memorial.pdf")
    assert doc.pages_ocr == [page] and doc.pages_without_text == []
    reference, read = page_text(text_layer, page), page_text(doc, page)
    assert len(reference) > 1500
    assert character_accuracy(reference, read) >= FLOOR
    # the letters of the page's language survive (Tesseract without that language's data drops most of them)
    wanted, got = Counter(re.findall(LETTERS[lang], reference)), Counter(re.findall(LETTERS[lang], read))
    assert wanted.total() >= 20 and (wanted & got).total() >= 0.9 * wanted.total()
    assert [b.page for b in doc.blocks] == sorted(b.page for b in doc.blocks)  # page numbers kept, in order


def test_ocr_off_and_capped_pages_are_reported(memorial):
    scan = scanned_copy(scanned_copy(memorial, 3, dpi=150), 4, dpi=150)
    off = load_bytes(scan, "memorial.pdf", ocr=OcrOptions(enabled=False))
    assert off.pages_ocr == [] and off.pages_without_text == [3, 4]
    assert {b.page for b in off.blocks} == {1, 2}
    capped = load_bytes(scan, "memorial.pdf", ocr=OcrOptions(max_pages=1))
    assert capped.pages_ocr == [3] and capped.pages_without_text == [4]
    assert {b.page for b in capped.blocks} == {1, 2, 3}


FRENCH = "Le congé annuel des salariés est de vingt-six jours ouvrables par année de travail entière. " * 4
GERMAN = "Der Arbeitnehmer hat Anspruch auf einen bezahlten Jahresurlaub von sechsundzwanzig Werktagen. " * 4


def test_ocr_languages_follow_the_text_pages():
    options = OcrOptions()
    assert ocr_languages([FRENCH] * 5, options=options) == "fra"
    assert ocr_languages([FRENCH] * 3 + [GERMAN] * 2, options=options) == "fra+deu"
    assert ocr_languages([GERMAN] * 9 + [FRENCH], options=options) == "deu"  # a 10% share is left out
    assert ocr_languages([], options=options) == "fra+deu+eng+ltz"  # all scans: every configured language
    assert ocr_languages(["Art. 5", "§ 3"], options=options) == "fra+deu+eng+ltz"  # too short to tell
    assert ocr_languages([FRENCH[:100]] * 3, options=options) == "fra"  # short pages tell it together
    assert ocr_languages([GERMAN], options=OcrOptions(languages=("fra", "eng"))) == "fra+eng"  # not configured


@pytest.mark.integration
def test_ingest_report_names_pages_read_by_ocr_and_pages_left_without_text(memorial, tmp_path):
    """`rag ingest` (real CLI, embedder, index) with one page to OCR allowed: page 3 is read, page 4 is reported."""
    pdf = tmp_path / "memorial.pdf"
    pdf.write_bytes(scanned_copy(scanned_copy(memorial, 3, dpi=150), 4, dpi=150))
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_DATA_DIR": str(tmp_path / "data"),
           "RAG_INGEST__OCR_MAX_PAGES": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "RAG_INGEST__PARSE_TIMEOUT_S": "900"}  # the report is under test, not the limit: a busy machine is slow
    command = [sys.executable, "-m", "rag", "ingest", str(pdf)]
    shown = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert f"note: {pdf}: page(s) 3 read by OCR (no text layer)" in shown.stderr
    assert f"warning: {pdf}: no text on page(s) 4 (scanned?), not searchable" in shown.stderr
    pdf.write_bytes(scanned_copy(scanned_copy(memorial, 3, dpi=150), 4, dpi=151))  # other bytes: parsed again
    report = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, env=env, cwd=ROOT,
                                       timeout=600, check=True).stdout)
    assert report["updated"] and report["pages_ocr"] == [[str(pdf), [3]]]
    assert report["pages_without_text"] == [[str(pdf), [4]]]


# ------------------------------------------------------------------------------------------------ time budget
LINES = ["Article 1. Le congé annuel des salariés est de vingt-six jours", "ouvrables par année de travail entière.",
         "Article 2. Le salarié peut reporter le congé non pris.", "Article 3. Le présent accord entre en vigueur."]


def _scanned(pages: int, *, text_pages: int = 0) -> bytes:
    """A PDF of `pages` text pages (tests/test_load.py `make_pdf`), all but the first `text_pages` replaced by
    150 dpi images of themselves: a scan without a text layer."""
    from .test_load import make_pdf

    data = make_pdf([[f"Page {n}", *LINES] for n in range(1, pages + 1)])
    for number in range(text_pages + 1, pages + 1):
        data = scanned_copy(data, number, dpi=150)
    return data


class Ticks:
    """A clock that advances `step` seconds each time it is read: OCR's budget decisions without timing."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_ocr_starts_no_page_past_its_budget_and_keeps_the_pages_it_read():
    """Each clock reading is 10 s later: the parse starts at 10, page 1 starts at 20 (10 s spent) and ends at 30;
    page 2 would start with 30 s spent, within a 35 s budget, but the slowest page's 10 s would end past it: not
    started, and pages 2 and 3 are reported, not lost with page 1. With 45 s, page 2 is read too."""
    scan = _scanned(3)
    doc = load_bytes(scan, "scan.pdf", ocr=OcrOptions(dpi=150, languages=("fra",), budget_s=35, clock=Ticks(10)))
    assert doc.pages_ocr == [1] and doc.pages_without_text == [2, 3] and doc.pages == 3
    assert "vingt-six jours" in page_text(doc, 1)
    roomy = load_bytes(scan, "scan.pdf", ocr=OcrOptions(dpi=150, languages=("fra",), budget_s=45, clock=Ticks(10)))
    assert roomy.pages_ocr == [1, 2] and roomy.pages_without_text == [3]


def test_a_scan_past_its_ocr_budget_in_the_parser_process_keeps_its_text_layer_and_reports_the_rest(tmp_path):
    """Real parser processes (rag/parse_pool.py) with `ingest.ocr_time_share` so small that the budget is spent
    before OCR starts: the PDF with a text page is a Document with its scanned pages reported, not a parse timeout;
    a wholly scanned one fails with a reason naming the setting. The default share reads the same page."""
    from rag.errors import LoadError
    from rag.parse_pool import ParsePool
    from rag.settings import IngestSettings

    (tmp_path / "partly.pdf").write_bytes(_scanned(3, text_pages=1))
    (tmp_path / "wholly.pdf").write_bytes(_scanned(2))
    common = {"parse_workers": 1, "parse_timeout_s": 600, "ocr_dpi": 150, "ocr_languages": ["fra"]}
    with ParsePool(IngestSettings(**common, ocr_time_share=1e-9)) as pool:
        (_, partly), (_, wholly) = pool.parse_files([tmp_path / "partly.pdf", tmp_path / "wholly.pdf"], ahead=1)
    assert not isinstance(partly, LoadError), partly
    assert partly.pages_ocr == [] and partly.pages_without_text == [2, 3] and "vingt-six jours" in partly.text
    assert isinstance(wholly, LoadError) and "ran out of time (ingest.ocr_time_share)" in str(wholly), wholly
    with ParsePool(IngestSettings(**common, ocr_max_pages=1)) as pool:
        [(_, read)] = pool.parse_files([tmp_path / "partly.pdf"], ahead=1)
    assert not isinstance(read, LoadError) and read.pages_ocr == [2] and read.pages_without_text == [3], read
