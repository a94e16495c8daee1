"""OCR of PDF pages without a text layer (scans): PDFium renders the page, Tesseract reads the image.

pytesseract runs the `tesseract` program of the system's tesseract-ocr package with its fra, deu, eng and ltz
language data (docs/deployment.md). Called by the PDF loader inside the parser process (rag/parse_pool.py), so the
parse time and memory limits cover it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LoadError
from .language import detect_language

TESSERACT_LANGUAGES = {"fr": "fra", "de": "deu", "en": "eng", "lb": "ltz"}  # ISO 639-1 -> Tesseract data


@dataclass(frozen=True)
class OcrOptions:
    """How PDF pages without a text layer are read with Tesseract (ingest.ocr_* settings)."""

    enabled: bool = True
    max_pages: int = 4  # per document; further pages without text are only reported
    dpi: int = 300
    languages: tuple[str, ...] = ("fra", "deu", "eng", "ltz")  # Tesseract language data, all installed


def ocr_languages(prose: str, options: OcrOptions) -> str:
    """Tesseract's language list: the language of the pages that have text (`prose`) when it is one OCR knows (a
    scanned annex of a French act is French), else all configured ones."""
    known = TESSERACT_LANGUAGES.get(detect_language(prose)) if len(prose) >= 200 else None
    return known if known in options.languages else "+".join(options.languages)


def ocr_pages(data: bytes, numbers: list[int], options: OcrOptions, languages: str) -> dict[int, str]:
    """Text of the given 1-based pages of the PDF `data` read by Tesseract from PDFium renders at `options.dpi`;
    {} when there are none. A missing Tesseract is a LoadError naming the package."""
    if not numbers:
        return {}
    import pypdfium2 as pdfium
    import pytesseract

    pdf = pdfium.PdfDocument(data)
    try:
        read = {}
        for number in numbers:
            page = pdf[number - 1]
            image = page.render(scale=options.dpi / 72, grayscale=True).to_pil()
            page.close()
            try:
                read[number] = pytesseract.image_to_string(image, lang=languages, config="--psm 3")
            except pytesseract.TesseractNotFoundError:
                raise LoadError("OCR needs Tesseract: install tesseract-ocr with its fra, deu, eng and ltz data "
                                "(docs/deployment.md), or set ingest.ocr to false") from None
        return read
    finally:
        pdf.close()
