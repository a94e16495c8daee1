"""OCR of PDF pages without a text layer, with Tesseract (pytesseract over the system's tesseract-ocr)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LoadError
from ..language import detect_language
from .document import prose as _prose


@dataclass(frozen=True)
class OcrOptions:
    """How PDF pages without a text layer are read with Tesseract (ingest.ocr_* settings)."""

    enabled: bool = True
    max_pages: int = 4  # per document; further pages without text are only reported
    dpi: int = 300
    languages: tuple[str, ...] = ("fra", "deu", "eng", "ltz")  # Tesseract language data, all installed


_TESSERACT_LANGUAGES = {"fr": "fra", "de": "deu", "en": "eng", "lb": "ltz"}


def _ocr_languages(page_lines: list[list[str]], ocr: OcrOptions) -> str:
    """Tesseract's language list: the language of the pages that have text when it is one OCR knows (a scanned
    annex of a French act is French), else all configured ones."""
    text = "\n".join(line for lines in page_lines for line in lines)
    known = _TESSERACT_LANGUAGES.get(detect_language(_prose(text))) if len(text) >= 200 else None
    return known if known in ocr.languages else "+".join(ocr.languages)


def _ocr_pages(data: bytes, numbers: list[int], ocr: OcrOptions, languages: str) -> dict[int, str]:
    """Text of the given 1-based pages read by Tesseract (pytesseract runs the `tesseract` program of the system's
    tesseract-ocr package) from PDFium renders at `ocr.dpi`; {} when there are none. Runs in the parser process,
    so the parse time and memory limits cover it; a missing Tesseract is a LoadError naming the package."""
    if not numbers:
        return {}
    import pypdfium2 as pdfium
    import pytesseract

    pdf = pdfium.PdfDocument(data)
    try:
        read = {}
        for number in numbers:
            page = pdf[number - 1]
            image = page.render(scale=ocr.dpi / 72, grayscale=True).to_pil()
            page.close()
            try:
                read[number] = pytesseract.image_to_string(image, lang=languages, config="--psm 3")
            except pytesseract.TesseractNotFoundError:
                raise LoadError("OCR needs Tesseract: install tesseract-ocr with its fra, deu, eng and ltz data "
                                "(docs/deployment.md), or set ingest.ocr to false") from None
        return read
    finally:
        pdf.close()
