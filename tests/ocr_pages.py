"""Scanned pages made from real PDFs and the comparison of what OCR read with the text layer: shared by
tests/test_ocr.py and bench/ocr.py (which measures more pages). Character error rate after Levenshtein (rapidfuzz)."""

from __future__ import annotations

import io
import re
import unicodedata

_VARIANTS = str.maketrans({"´": "'", "’": "'", "‘": "'", "`": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-",
                           "‐": "-", "‑": "-", "\u00ad": "", "\xa0": " "})  # fmt: skip
_LEADER = re.compile(r"(?:[.…·]\s*){3,}")
_LETTER_SPACED = re.compile(r"\b(?:\w ){2,}\w\b")


def normalise(text: str) -> str:
    """`text` as compared (module docstring); variants are unified before NFKC, which would turn "´" into a space
    and a combining accent."""
    text = unicodedata.normalize("NFKC", text.translate(_VARIANTS))
    text = _LEADER.sub(" ", text)
    text = _LETTER_SPACED.sub(lambda match: match.group(0).replace(" ", ""), text)
    return " ".join(text.split())


def character_accuracy(reference: str, read: str) -> float:
    """1 - character error rate of `read` against `reference`, both normalised; ≤ 1, negative when `read` needs
    more edits than `reference` has characters."""
    from rapidfuzz.distance import Levenshtein

    reference, read = normalise(reference), normalise(read)
    return 1 - Levenshtein.distance(reference, read) / max(1, len(reference))


def scanned_copy(data: bytes, number: int, *, dpi: int) -> bytes:
    """The PDF `data` with its 1-based page `number` replaced by a grayscale image of it rendered at `dpi`."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        page = pdf[number - 1]
        bitmap = page.render(scale=dpi / 72, grayscale=True)
        width, height = bitmap.width * 72 / dpi, bitmap.height * 72 / dpi
        page.close()
        pdf.del_page(number - 1)
        scan = pdf.new_page(width, height, index=number - 1)
        image = pdfium.PdfImage.new(pdf)
        image.set_bitmap(bitmap)
        image.set_matrix(pdfium.PdfMatrix().scale(width, height))
        scan.insert_obj(image)
        scan.gen_content()
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()
    finally:
        pdf.close()


def page_text(document, number: int) -> str:
    """The text of the blocks of `document` on 1-based page `number`."""
    return "\n".join(document.text[block.start : block.end] for block in document.blocks if block.page == number)
