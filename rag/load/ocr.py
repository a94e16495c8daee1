"""OCR of PDF pages without a text layer (scans): PDFium renders the page, Tesseract reads the image.

pytesseract runs the `tesseract` program of the system's tesseract-ocr package with its fra, deu, eng and ltz
language data (docs/deployment.md). The PDF loader calls `ocr_pages` inside the parser process
(rag/parse_pool.py), so the parse time and memory limits cover it; the parser processes limit Tesseract to one
OpenMP thread each (`OMP_THREAD_LIMIT`, see `THREAD_LIMIT`).

Language: Tesseract reads a page best with the language data of its text (with all four, French accents come out
right but slower, and German words are read as French ones more often). The languages come from the document's
pages that have text, by their share of its characters (a bilingual Mémorial page gets fra+deu); a document that is
all scans has its first page read with every configured language and the rest with the language(s) read so far. A
page whose reading comes out in another configured language (a German annex scanned into a French act) is read
again with that language first.

Time: a page takes seconds of CPU (2.5-5 s at 400 dpi on an idle core) and several times that on a loaded machine,
so a document's OCR has a budget (`OcrOptions.budget_s`, from `ingest.ocr_time_share` x `ingest.parse_timeout_s`),
counted from the start of the PDF's parse: a page is started only while the time spent plus the slowest page read
so far stays within it. The pages not reached stay pages without text (reported), and the parse ends before the
parser process is killed for its time limit, which would lose the whole file.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import LoadError
from ..language import detect_language

if TYPE_CHECKING:
    from PIL import Image

TESSERACT_LANGUAGES = {"fr": "fra", "de": "deu", "en": "eng", "lb": "ltz"}  # ISO 639-1 -> Tesseract data
THREAD_LIMIT = "1"  # OMP_THREAD_LIMIT in parser processes: on 2 shared cores one thread per page reads more pages/s
MIN_LETTERS = 200  # a page with fewer characters does not tell its language
MIN_SHARE = 0.15  # a language below this share of the text pages' characters is not passed to Tesseract
MAX_LANGUAGES = 2  # each language added to a Tesseract run slows it; two cover the bilingual Mémorial
SAMPLE_PAGES = 40  # pages whose language is identified, evenly spread (py3langid is linear in text length)


@dataclass(frozen=True)
class OcrOptions:
    """How PDF pages without a text layer are read with Tesseract (ingest.ocr_* settings)."""

    enabled: bool = True
    max_pages: int = 4  # per document; further pages without text are only reported
    dpi: int = 400  # small print (tables of contents, 7-8 pt) reads better than at 300, for ~15% more CPU
    languages: tuple[str, ...] = ("fra", "deu", "eng", "ltz")  # Tesseract language data, all installed
    budget_s: float | None = None  # seconds from the start of a PDF's parse after which no page is started; None: any
    clock: Callable[[], float] = time.monotonic  # seconds; a module-level function, so the options can be pickled


def ocr_languages(texts: Sequence[str], *, options: OcrOptions) -> str:
    """Tesseract's `-l` value for a document whose pages with text are `texts`: the configured languages that make
    up at least `MIN_SHARE` of their characters, most first (at most `MAX_LANGUAGES`), e.g. "fra" or "fra+deu";
    all of `options.languages` when the texts tell none of them. Pages too short to tell are judged together."""
    pages = [text for text in texts if len(text) >= MIN_LETTERS]
    if not pages and len(joined := "\n".join(texts)) >= MIN_LETTERS:
        pages = [joined]
    step = max(1, len(pages) // SAMPLE_PAGES)
    shares: Counter[str] = Counter()
    for text in pages[::step]:
        language = TESSERACT_LANGUAGES.get(detect_language(text))
        if language in options.languages:
            shares[language] += len(text)
    total = sum(shares.values())
    chosen = [language for language, chars in shares.most_common(MAX_LANGUAGES) if chars >= MIN_SHARE * total]
    return "+".join(chosen or options.languages)


def ocr_pages(
    data: bytes, numbers: Sequence[int], *, options: OcrOptions, texts: Sequence[str], started: float
) -> dict[int, str]:
    """Text of the given 1-based pages of the PDF `data`, {page: text}, read by Tesseract from grayscale PDFium
    renders at `options.dpi`, in the languages of `texts` (the document's pages that have text; see the module
    docstring); {} when `numbers` is empty. Pages are read in the order given while the time budget allows
    (`options.budget_s` from `started`, an `options.clock()` reading, module docstring): the pages left out are
    those at the end of `numbers`.

    Raises LoadError when Tesseract is not installed (naming the package) or fails on a page."""
    if not numbers:
        return {}
    import pypdfium2 as pdfium
    import pytesseract

    known = list(texts)
    pdf = pdfium.PdfDocument(data)
    try:
        read: dict[int, str] = {}
        slowest = 0.0
        for number in numbers:
            begun = options.clock()
            if options.budget_s is not None and begun - started + slowest >= options.budget_s:
                break
            page = pdf[number - 1]
            try:
                image = page.render(scale=options.dpi / 72, grayscale=True).to_pil()
            finally:
                page.close()
            languages = ocr_languages(known, options=options)
            text = _tesseract(pytesseract, image, languages)
            found = TESSERACT_LANGUAGES.get(detect_language(text)) if len(text) >= MIN_LETTERS else None
            if found in options.languages and found not in languages.split("+"):
                text = _tesseract(pytesseract, image, f"{found}+{languages.split('+')[0]}")
            read[number] = text
            known.append(text)
            slowest = max(slowest, options.clock() - begun)
        return read
    finally:
        pdf.close()


def _tesseract(pytesseract: ModuleType, image: Image.Image, languages: str) -> str:
    """One page image read by Tesseract with automatic page segmentation (psm 3: columns and blocks in reading
    order)."""
    try:
        return pytesseract.image_to_string(image, lang=languages, config="--psm 3")
    except pytesseract.TesseractNotFoundError:
        raise LoadError(
            "OCR needs Tesseract: install tesseract-ocr with its fra, deu, eng and ltz data "
            "(docs/deployment.md), or set ingest.ocr to false"
        ) from None
    except pytesseract.TesseractError as exc:
        raise LoadError(f"Tesseract failed on a scanned page ({' '.join(str(exc.message).split())[:200]})") from None
