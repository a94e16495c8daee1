"""A PDF page's text in the order a person reads it: form values flattened into the page, rotation undone, lines
top to bottom, segments left to right, and columns one after the other (PDFium character boxes via pypdfium2)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LoadError
from .document import one_line

if TYPE_CHECKING:  # pypdfium2 ships no type information: these name the classes for the reader
    import pypdfium2 as pdfium


def pdf_page_texts(data: bytes, name: str) -> tuple[list[str], str]:
    """Each page's text (one string per page, lines in reading order, columns one after the other) and the
    metadata title ("" when absent). The caller holds `PDFIUM_LOCK` (pdfium is not thread-safe).

    Raises `LoadError` naming `name` for an encrypted, corrupt or truncated PDF, or a page that cannot be read."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise LoadError(f"{name}: encrypted PDF (a password is required to open it)") from None
        raise LoadError(f"{name}: corrupt or truncated PDF ({one_line(exc)})") from None
    try:
        return [_pdf_page_text(pdf, index, name) for index in range(len(pdf))], pdf.get_metadata_value("Title")
    finally:
        pdf.close()


def _pdf_page_text(pdf: pdfium.PdfDocument, index: int, name: str) -> str:
    """The page's text in the order a person reads it: form field values flattened into the page, lines top to
    bottom in the text's own direction, segments left to right, and columns one after the other.

    PDFium (pypdfium2) gives the characters and their boxes; `_pdf_segments` groups them, `_reading_order` orders."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        page = pdf[index]
        if pdfium_c.FPDFPage_Flatten(page.raw, pdfium_c.FLAT_NORMALDISPLAY) == pdfium_c.FLATTEN_SUCCESS:
            page.close()  # the flattened widgets (filled form fields) only reach the text layer of a reloaded page
            page = pdf[index]
        textpage = page.get_textpage()
    except pdfium.PdfiumError:
        raise LoadError(f"{name}: corrupt PDF (page {index + 1} cannot be read)") from None
    try:
        segments = _pdf_segments(textpage, _text_direction(textpage))
        return "\n".join(_reading_order(segments)).replace("\ufffe\n", "\ufffe")  # as PDFium's range API joins
    finally:
        textpage.close()
        page.close()


def _pdf_segments(textpage: pdfium.PdfTextPage, turn: int) -> list[_Segment]:
    """Runs of characters on one line without a wide gap, in PDFium's order, one pass over the characters (PDFium's
    own "rects" need a bounded-text call each, quadratic on dense pages). Spaces and line breaks PDFium generates
    have no box: spaces stay in the run, line breaks end it."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    segments: list[_Segment] = []
    chars: list[str] = []
    box = (0.0, 0.0, 0.0, 0.0)  # left, top, right, bottom of the current run, in the text's frame
    edges = [ctypes.c_double() for _ in range(4)]
    for index in range(textpage.count_chars()):
        char = chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, index))
        if char in "\r\n" or (char.isspace() and not chars):
            if char in "\r\n" and chars:
                segments.append(_Segment(*box, "".join(chars)))
                chars = []
            continue
        if char.isspace() or not pdfium_c.FPDFText_GetCharBox(textpage.raw, index, *map(ctypes.byref, edges)):
            chars.append(char)
            continue
        left, right, bottom, top = (edge.value for edge in edges)
        left, top, right, bottom = _reading_box((left, bottom, right, top), turn)
        height = max(bottom - top, box[3] - box[1])
        same_run = chars and box[1] <= (top + bottom) / 2 <= box[3] and box[0] - height < left < box[2] + height
        if chars and not same_run:
            segments.append(_Segment(*box, "".join(chars)))
            chars = []
        if chars:
            box = (min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom))
        else:
            box = (left, top, right, bottom)
        chars.append("\ufffe" if char in "\x02\ufffe" else char)
    if chars:
        segments.append(_Segment(*box, "".join(chars)))
    return [segment for segment in segments if segment.text.strip()]


@dataclass(frozen=True)
class _Segment:
    """A run of text on one line, in the text's frame (points, x along the line, y downwards)."""

    left: float
    top: float
    right: float
    bottom: float
    text: str


def _text_direction(textpage: pdfium.PdfTextPage) -> int:
    """The page's dominant writing direction in quarter turns counter-clockwise (0-3), from PDFium's character
    angles: a page's /Rotate only says how to show it; a reader turns the page to follow the text."""
    import pypdfium2.raw as pdfium_c

    count = textpage.count_chars()
    turns = Counter(  # PDFium measures the angle clockwise
        -round(pdfium_c.FPDFText_GetCharAngle(textpage.raw, i) / (math.pi / 2)) % 4
        for i in range(0, count, max(1, count // 200))  # a sample of up to ~200 characters
    )
    return turns.most_common(1)[0][0] if turns else 0


def _reading_box(box: tuple[float, float, float, float], turn: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in the text's own frame (x along the lines, y down the page) from PDFium's
    (left, bottom, right, top) in user space (points, y up), for text turned `turn` quarter turns anticlockwise."""
    left, bottom, right, top = box
    if turn == 1:
        return bottom, left, top, right
    if turn == 2:
        return -right, bottom, -left, top
    if turn == 3:
        return -top, -right, -bottom, -left
    return left, -top, right, -bottom


PDF_GUTTER_EM = 1.5  # a vertical strip free of text this many line heights wide, down several lines, splits columns
PDF_MIN_COLUMN_LINES = 3
PDF_SHORT_COLUMN_GUTTER = 2.0  # two lines make columns across a gutter this many times PDF_GUTTER_EM wide
PDF_MIN_COLUMN_SHARE = (
    0.3  # each column's typical line fills this share of the section's width (a form's labels do not)
)


def _reading_order(segments: list[_Segment]) -> list[str]:
    """Lines of text in reading order: segments grouped into lines by their vertical overlap, and runs of lines that
    share an empty vertical strip (a gutter) read column by column, left column first. Linear in the segments but
    for sorting (a dense page of 6,000 lines must not take minutes)."""
    if not segments:
        return []
    heights = sorted(s.bottom - s.top for s in segments)
    gutter = PDF_GUTTER_EM * heights[len(heights) // 2]
    out: list[str] = []
    for section in _column_sections(_text_lines(segments), gutter):
        out += _read_section(section, gutter)
    return out


def _text_lines(segments: list[_Segment]) -> list[list[_Segment]]:
    lines: list[list[_Segment]] = []
    top = bottom = 0.0
    for segment in sorted(segments, key=lambda s: (s.top, s.left)):
        middle = (segment.top + segment.bottom) / 2
        if lines and top <= middle <= bottom:
            lines[-1].append(segment)
            bottom = max(bottom, segment.bottom)
        else:
            lines.append([segment])
            top, bottom = segment.top, segment.bottom
    return [sorted(line, key=lambda s: s.left) for line in lines]


def _line_text(line: list[_Segment]) -> str:
    """A line's segments left to right; PDFium ends words with their space, so one is added only across a gap of
    over a quarter of the taller segment's height (a superscript "1|er" stays joined)."""
    parts = [line[0].text]
    for previous, segment in itertools.pairwise(line):
        gap = segment.left - previous.right
        height = max(segment.bottom - segment.top, previous.bottom - previous.top)
        if gap > 0.25 * height and not parts[-1][-1:].isspace() and parts[-1][-1:] not in ("\ufffe", "-"):
            parts.append(" ")
        parts.append(segment.text)
    return " ".join("".join(parts).split())


def _covered(covered: list[tuple[float, float]], line: list[_Segment]) -> list[tuple[float, float]]:
    """The union of horizontal extents (sorted, disjoint intervals), with a line's segments added."""
    merged: list[tuple[float, float]] = []
    for left, right in sorted([*covered, *((s.left, s.right) for s in line)]):
        if merged and left <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], right))
        else:
            merged.append((left, right))
    return merged


def _widest_gap(covered: list[tuple[float, float]], width: float) -> tuple[float, float] | None:
    """The widest empty strip between covered intervals, if at least `width` points wide."""
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(covered) if b[0] - a[1] >= width]
    return max(gaps, key=lambda gap: gap[1] - gap[0]) if gaps else None


def _column_sections(lines: list[list[_Segment]], gutter: float) -> Iterator[list[list[_Segment]]]:
    """Consecutive lines grouped while they keep a common gutter; lines crossing it (a title) stand alone, and so
    do the lines of a group that is no columns (`_section_gutter`)."""
    section: list[list[_Segment]] = []
    covered: list[tuple[float, float]] = []
    for line in lines:
        grown = _covered(covered, line)
        if section and _widest_gap(grown, gutter) is None and (len(section) < 2 or _widest_gap(covered, gutter)):
            yield from [section] if _section_gutter(section, gutter) else ([single] for single in section)
            section, grown = [], _covered([], line)
        section.append(line)
        covered = grown
    yield from [section] if _section_gutter(section, gutter) else ([single] for single in section)


def _section_gutter(section: list[list[_Segment]], width: float) -> tuple[float, float] | None:
    """The gutter (widest empty strip at least `width` points wide) of a group of lines that may be read column by
    column: one of PDF_MIN_COLUMN_LINES lines or more, or of two lines that each have text on both sides of a strip
    PDF_SHORT_COLUMN_GUTTER times as wide (two short columns side by side; two justified lines often share a stretched
    word space of 1.5-2.6 line heights, Legilux Mémorial pages). Two lines of which one stays on one side (a
    paragraph's short last line beside a centred heading) keep their order: None."""
    if len(section) < 2:
        return None
    covered: list[tuple[float, float]] = []
    for line in section:
        covered = _covered(covered, line)
    if len(section) >= PDF_MIN_COLUMN_LINES:
        return _widest_gap(covered, width)
    strip = _widest_gap(covered, PDF_SHORT_COLUMN_GUTTER * width)
    if strip is None:
        return None
    return strip if all(line[0].right <= strip[0] and line[-1].left >= strip[1] for line in section) else None


def _median_width(lines: list[list[_Segment]]) -> float:
    widths = sorted(line[-1].right - line[0].left for line in lines if line)
    return widths[len(widths) // 2] if widths else 0.0


def _read_section(section: list[list[_Segment]], gutter_width: float) -> list[str]:
    gutter = _section_gutter(section, gutter_width)
    if gutter is None:
        return [text for line in section if (text := _line_text(line))]
    left = [[s for s in line if s.right <= gutter[0]] for line in section]
    right = [[s for s in line if s.left >= gutter[1]] for line in section]
    width = max(s.right for line in section for s in line) - min(s.left for line in section for s in line)
    if min(_median_width(left), _median_width(right)) < PDF_MIN_COLUMN_SHARE * width:  # labels and values, a table
        return [text for line in section if (text := _line_text(line))]
    return _read_section([line for line in left if line], gutter_width) + _read_section(
        [line for line in right if line], gutter_width
    )
