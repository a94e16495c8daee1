"""Office files of a shared drive: PowerPoint (PPTX), Excel (XLSX), CSV and OpenDocument (ODT, ODS, ODP).

Each loader returns the `Parsed` text and blocks that `rag.load.load_bytes` turns into a `Document`; they are
registered in rag/load/loader.py and so run in the parser workers under their time and memory limits
(rag/parse_pool.py) like every other format. Libraries: python-pptx and openpyxl (the maintained readers of the
OOXML formats; openpyxl parses through defusedxml, which odfpy requires), odfpy (the OpenDocument package reader
that LibreOffice's own Python tooling documents) and the standard library's `csv`.

What a question can match:
- PPTX and ODP: every slide's text frames, tables and speaker notes; the slide number is the block's `page`
  (`Document.pages` = number of slides), the slide title its heading path, notes under (title, "Notes").
- XLSX and ODS: every sheet, its name a heading above its rows; each non-empty row is one block of its non-empty
  cells joined by " | " (the form of DOCX and HTML table rows). XLSX gives the values last computed for formulas.
- CSV: one block per non-empty row, cells joined by " | ".
- ODT: headings (their outline level builds the heading path), paragraphs, list items and table rows in document
  order; tracked deletions and comments are not text.
The ZIP containers pass the DOCX zip-bomb guard first (`rag.load.docx.check_zip_bomb`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import LoadError
from .document import Outline, Parsed, TextBuilder, one_line
from .docx import check_zip_bomb
from .text import decode_text

if TYPE_CHECKING:  # odfpy ships no type information: these name the classes for the reader
    from odf.element import Element
    from odf.opendocument import OpenDocument

# OpenDocument compresses runs of equal cells and rows into one element with a repeat count (an empty row is often
# repeated a million times to the end of the sheet); non-empty runs are expanded up to this many times, so a crafted
# count cannot turn a few bytes into gigabytes of text. 1024 is far above any real run of equal cells.
ODF_MAX_REPEAT = 1024
CSV_DELIMITERS = ",;\t|"  # Excel writes ";" where the decimal separator is "," (fr, de, lb locales)
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


# ------------------------------------------------------------------------------------------------------- PPTX


def load_pptx(data: bytes, name: str) -> Parsed:
    """Slides in order: text frames (groups opened), tables as rows, then the speaker notes; page = slide number."""
    from pptx import Presentation

    check_zip_bomb(data, name, kind="PowerPoint presentation")
    try:
        presentation = Presentation(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - python-pptx raises KeyError, ValueError, lxml errors... on bad packages
        raise LoadError(f"{name}: corrupt or invalid PowerPoint presentation ({one_line(exc)})") from None
    builder = TextBuilder()
    first_title = ""
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        title = one_line(title_shape.text_frame.text) if title_shape is not None else ""
        first_title = first_title or title
        path = (title,) if title else ()
        for text in _pptx_texts(slide.shapes):
            builder.add(text, path, number)
        notes = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
        if notes is not None:
            builder.add(notes.text, (*path, "Notes"), number)
    title = one_line(presentation.core_properties.title or "") or first_title
    return Parsed(builder, title, pages=len(presentation.slides))


def _pptx_texts(shapes: Iterable[Any]) -> Iterator[str]:
    """The text of each shape in the slide's order (the order of its XML, which is also the tab order).

    `shapes` are python-pptx shapes of several classes (`GroupShape`, `Shape`, `GraphicFrame`...); what each has is
    told by `shape_type`, `has_text_frame` and `has_table` at run time, hence `Any`."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _pptx_texts(shape.shapes)
        elif shape.has_text_frame:
            yield shape.text_frame.text
        elif getattr(shape, "has_table", False):
            for row in shape.table.rows:
                yield row_text(cell.text for cell in row.cells)


# ------------------------------------------------------------------------------------------------ XLSX and CSV


def load_xlsx(data: bytes, name: str) -> Parsed:
    """Every worksheet: its name as a heading, then one block per non-empty row."""
    import openpyxl

    check_zip_bomb(data, name, kind="Excel workbook")
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises KeyError, InvalidFileException, XML errors... on bad packages
        raise LoadError(f"{name}: corrupt or invalid Excel workbook ({one_line(exc)})") from None
    builder = TextBuilder()
    try:
        for sheet in workbook.worksheets:
            _add_sheet(builder, sheet.title, (row_text(row) for row in sheet.iter_rows(values_only=True)))
        title = one_line(workbook.properties.title or "")
    finally:
        workbook.close()
    return Parsed(builder, title)


def load_csv(data: bytes, name: str) -> Parsed:
    """One block per non-empty row; the delimiter is the one of `CSV_DELIMITERS` most frequent in the first line.

    The standard library's `csv.Sniffer` is not used: its regular expressions take quadratic time on a long
    quoted first line. A field over `csv.field_size_limit()` (128 KiB) fails the file with csv's own message."""
    text = decode_text(data, name)
    start = 1 if text.startswith("\ufeff") else 0
    end = text.find("\n", start)
    first_line = text[start : end if end >= 0 else len(text)]
    delimiter = max(CSV_DELIMITERS, key=first_line.count)
    builder = TextBuilder()
    # lines cut lazily from the decoded text: io.StringIO would hold a second, four-byte-per-character copy
    lines = (match.group() for match in _LINE.finditer(text, start))
    try:
        for row in csv.reader(lines, delimiter=delimiter):
            builder.add(row_text(row))
    except csv.Error as exc:
        raise LoadError(f"{name}: malformed CSV ({one_line(exc)})") from None
    return Parsed(builder)


def row_text(values: Iterable[object]) -> str:
    """A table row as one line: its non-empty cells joined by " | " (dates as ISO dates, 26.0 as 26)."""
    return " | ".join(text for text in map(_cell_text, values) if text)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        value = value.date()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


def _add_sheet(builder: TextBuilder, title: str, rows: Iterable[str]) -> None:
    """A sheet's name (a heading, added once it has a non-empty row) and its rows under it."""
    path = (one_line(title),)
    headed = False
    for row in rows:
        if row and not headed:
            builder.add(path[0], path)
            headed = True
        builder.add(row, path)


# ----------------------------------------------------------------------------------------------- OpenDocument

_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_PRESENTATION = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
_ODF_SKIPPED = frozenset({(_TEXT, "tracked-changes"), (_OFFICE, "annotation"), (_TEXT, "sequence-decls"),
                          (_PRESENTATION, "notes"), (_TABLE, "covered-table-cell")})  # fmt: skip
_ODF_ROW_GROUPS = frozenset({"table-header-rows", "table-rows", "table-row-group"})
_ODF_KINDS = {"odt": "OpenDocument text", "ods": "OpenDocument spreadsheet", "odp": "OpenDocument presentation"}
_ODF_BODIES = {"odt": "text", "ods": "spreadsheet", "odp": "presentation"}  # odfpy's attribute for office:<body>


def load_odt(data: bytes, name: str) -> Parsed:
    """Headings (outline levels), paragraphs, lists and tables of the text body in order."""
    document, body = _odf_document(data, name, "odt")
    walker = _OdfWalker()
    walker.walk(body)
    return Parsed(walker.builder, _odf_title(document) or walker.first_heading)


def load_ods(data: bytes, name: str) -> Parsed:
    """Every sheet: its name as a heading, then one block per non-empty row (repeated rows and cells expanded up to
    `ODF_MAX_REPEAT`)."""
    document, body = _odf_document(data, name, "ods")
    builder = TextBuilder()
    for table in _odf_children(body, _TABLE, "table"):
        _add_sheet(builder, table.getAttrNS(_TABLE, "name") or "", _odf_rows(table))
    return Parsed(builder, _odf_title(document))


def load_odp(data: bytes, name: str) -> Parsed:
    """Slides in order like PPTX: the text of their frames, tables, then the notes; page = slide number."""
    document, body = _odf_document(data, name, "odp")
    walker = _OdfWalker()
    first_title = ""
    pages = list(_odf_children(body, _DRAW, "page"))
    for number, page in enumerate(pages, start=1):
        title = next((one_line(_odf_text(frame)) for frame in _odf_children(page, _DRAW, "frame")
                      if frame.getAttrNS(_PRESENTATION, "class") == "title"), "")  # fmt: skip
        first_title = first_title or title
        walker.outline = Outline()
        walker.outline.enter(1, title)
        walker.walk(page, page=number)
        for notes in _odf_children(page, _PRESENTATION, "notes"):
            walker.outline.enter(2, "Notes")
            walker.walk(notes, page=number)
    return Parsed(walker.builder, _odf_title(document) or first_title, pages=len(pages))


def _odf_document(data: bytes, name: str, fmt: str) -> tuple:
    """(odfpy's OpenDocument, its office:text/spreadsheet/presentation element); LoadError if either is missing."""
    from odf.opendocument import load

    check_zip_bomb(data, name, kind=_ODF_KINDS[fmt])
    try:
        document = load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - odfpy raises KeyError, SAX errors, zipfile errors... on bad packages
        raise LoadError(f"{name}: corrupt or invalid {_ODF_KINDS[fmt]} ({one_line(exc)})") from None
    body = getattr(document, _ODF_BODIES[fmt], None)
    if body is None:
        raise LoadError(f"{name}: corrupt or invalid {_ODF_KINDS[fmt]} (no office:{_ODF_BODIES[fmt]} in content.xml)")
    return document, body


def _odf_title(document: OpenDocument) -> str:
    from odf import dc

    titles = document.meta.getElementsByType(dc.Title)
    return one_line(_odf_text(titles[0])) if titles else ""


def _odf_children(element: Element, namespace: str, local: str) -> Iterator[Element]:
    return (child for child in element.childNodes if getattr(child, "qname", None) == (namespace, local))


def _odf_text(element: Element) -> str:
    """Text of an element (odfpy's teletype: spaces, tabs and line breaks as written), without comments."""
    from odf import teletype

    if not any(getattr(child, "qname", None) == (_OFFICE, "annotation") for child in element.childNodes):
        return teletype.extractText(element)
    return "".join(
        teletype.extractText(child) if child.nodeType == child.ELEMENT_NODE else child.data
        for child in element.childNodes
        if getattr(child, "qname", None) != (_OFFICE, "annotation")
    )


def _odf_repeat(element: Element, attribute: str) -> int:
    try:
        return max(1, min(int(element.getAttrNS(_TABLE, attribute) or 1), ODF_MAX_REPEAT))
    except ValueError:
        return 1


def _odf_rows(table: Element) -> Iterator[str]:
    """One line per row of a table (header rows and row groups included), empty rows skipped."""
    for child in table.childNodes:
        qname = getattr(child, "qname", None)
        if qname == (_TABLE, "table-row"):
            cells = []
            for cell in _odf_children(child, _TABLE, "table-cell"):
                text = " ".join(_odf_text(part) for part in cell.childNodes if part.nodeType == part.ELEMENT_NODE)
                cells += [text] * (_odf_repeat(cell, "number-columns-repeated") if text.strip() else 1)
            row = row_text(cells)
            if row:
                yield from [row] * _odf_repeat(child, "number-rows-repeated")
        elif qname is not None and qname[0] == _TABLE and qname[1] in _ODF_ROW_GROUPS:
            yield from _odf_rows(child)


class _OdfWalker:
    """Flattens an ODF body into blocks: headings enter the outline, paragraphs and table rows are blocks."""

    def __init__(self) -> None:
        self.builder = TextBuilder()
        self.outline = Outline()
        self.first_heading = ""

    def walk(self, element: Element, page: int | None = None) -> None:
        for child in element.childNodes:
            qname = getattr(child, "qname", None)
            if qname is None or qname in _ODF_SKIPPED:
                continue
            if qname == (_TEXT, "h"):
                text = _odf_text(child)
                level = _odf_level(child)
                self.builder.add(text, self.outline.enter(level, text), page)
                self.first_heading = self.first_heading or one_line(text)
            elif qname == (_TEXT, "p"):
                self.builder.add(_odf_text(child), self.outline.path, page)
            elif qname == (_TABLE, "table"):
                for row in _odf_rows(child):
                    self.builder.add(row, self.outline.path, page)
            else:  # lists, sections, frames, text boxes, groups...
                self.walk(child, page)


def _odf_level(heading: Element) -> int:
    try:
        return max(1, min(int(heading.getAttrNS(_TEXT, "outline-level") or 1), 10))
    except ValueError:
        return 1
