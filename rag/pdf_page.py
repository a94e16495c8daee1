"""One PDF page as a PNG image, with the regions of given texts (a cited passage, its supporting sentence) marked.

PDFium (pypdfium2, already the PDF parser) renders the page and gives the rectangles of a range of its characters.
The texts to mark come from the index, whose PDF text is PDFium's own page text after de-hyphenation and
running-line removal, so they are located word by word: the first and the last words of a text that are found in
the page's text, in order, bound its region. A text that cannot be located is simply not marked.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InputError, LoadError
from .load.pdf import PDFIUM_LOCK

if TYPE_CHECKING:
    from pypdfium2 import PdfTextPage

_WORD = re.compile(r"\w+")
_ANCHOR_WORDS = 6


@dataclass(frozen=True)
class Mark:
    """A text to mark on the page and the RGBA colour of its rectangles."""

    text: str
    colour: tuple[int, int, int, int]


def render_page(data: bytes, *, page: int, scale: float, marks: Sequence[Mark] = ()) -> bytes:
    """PNG of 1-based `page` of the PDF `data`, each mark's text region filled with its colour.

    `scale` is pixels per PDF point (1 point = 1/72 inch; 2.0 renders a 595 x 842 pt A4 page as 1190 x 1684 px).
    Marks whose text is not found on the page are left out. Raises LoadError when `data` is no readable PDF,
    InputError when the page does not exist."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    with PDFIUM_LOCK:  # PDFium is not thread-safe
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise LoadError(f"the stored file is no readable PDF ({exc})") from None
        try:
            if not 1 <= page <= len(pdf):
                raise InputError(f"page {page} does not exist: the document has {len(pdf)} page(s)")
            pdf_page = pdf[page - 1]
            image = pdf_page.render(scale=scale).to_pil().convert("RGBA")
            height = pdf_page.get_height()
            textpage = pdf_page.get_textpage()
            text = textpage.get_text_range()
            boxes = [(mark, _rects(textpage, span)) for mark in marks if (span := locate(text, mark.text))]
        finally:
            pdf.close()
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for mark, rects in boxes:
        for left, bottom, right, top in rects:
            draw.rectangle(
                [left * scale, (height - top) * scale, right * scale, (height - bottom) * scale], fill=mark.colour
            )
    out = io.BytesIO()
    Image.alpha_composite(image, overlay).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def _rects(textpage: PdfTextPage, span: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """PDFium's rectangles (left, bottom, right, top in PDF points, origin bottom left) of a character span."""
    start, end = span
    return [textpage.get_rect(i) for i in range(textpage.count_rects(start, end - start))]


def locate(page_text: str, text: str) -> tuple[int, int] | None:
    """Character span of `text` in `page_text`, tolerant to line breaks, hyphenation and punctuation changes: from
    the first run of its opening words found in the page to the end of the last run of its closing words."""
    words = _WORD.findall(text)
    if not words:
        return None
    n = min(_ANCHOR_WORDS, len(words))
    head = next((m for i in range(len(words) - n + 1) if (m := _find(page_text, words[i : i + n], 0))), None)
    if head is None:
        return None
    tail = next(
        (m for i in range(len(words), n - 1, -1) if (m := _find(page_text, words[i - n : i], head.start()))), None
    )
    return head.start(), max(head.end(), tail.end() if tail else head.end())


def _find(page_text: str, words: Sequence[str], start: int) -> re.Match[str] | None:
    """The first match at or after `start` of `words` in order, separated by anything but word characters."""
    return re.compile(r"\W*".join(map(re.escape, words))).search(page_text, start)
