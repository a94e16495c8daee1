"""DOCX: the text Word shows with changes accepted (content controls, insertions, fields, hyperlinks, nested
tables, headers/footers/footnotes), headings from paragraph styles; and the zip-bomb guard of every ZIP container."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from lxml import etree

from ..errors import LoadError
from .document import Outline, Parsed, TextBuilder, first_line_title, one_line
from .legal import parse_xml

if TYPE_CHECKING:  # python-docx ships no type information: this names the class for the reader
    from docx.styles.style import BaseStyle

MAX_DOCX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_DOCX_RATIO = 100  # real documents compress 3-20x; only crafted archives reach 100x ...
DOCX_RATIO_FLOOR = 10 * 1024 * 1024  # ... and below this size a high ratio is harmless to parse anyway


# ----------------------------------------------------------------------------------------------------- DOCX


def load_docx(data: bytes, name: str) -> Parsed:
    """The text as Word shows it with tracked changes accepted: paragraphs and tables of the body in order, also
    inside content controls, insertions, hyperlinks and fields (their shown result, not the field code); deleted
    and moved-away text and hidden runs left out; then headers, footers, footnotes and endnotes, each text once.

    python-docx opens the package and resolves styles; the body is walked on its XML, because python-docx's own
    paragraph and table views skip content controls and tracked insertions."""
    import docx

    check_zip_bomb(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - python-docx raises KeyError, ValueError, lxml errors... on bad packages
        raise LoadError(f"{name}: corrupt or invalid Word document ({one_line(exc)})") from None
    styles = {style.style_id: style for style in document.styles}
    builder, outline = TextBuilder(), Outline()
    first_heading = ""
    for kind, element in _docx_blocks(document.element.body):
        if kind == "table":
            for row in _docx_rows(element):
                builder.add(row, outline.path)
            continue
        text = _docx_paragraph_text(element)
        level = _docx_heading_level(styles.get(element.style)) if element.style else None
        if level is None:
            builder.add(text, outline.path)
        else:
            builder.add(text, outline.enter(level, text))
            first_heading = first_heading or one_line(text)
    seen: set[str] = set()
    for part in sorted(document.part.package.iter_parts(), key=lambda part: str(part.partname)):
        if _DOCX_MARGIN_PART.match(str(part.partname)):
            for text in _docx_part_texts(parse_xml(part.blob, name)):
                if text not in seen:
                    seen.add(text)
                    builder.add(text, outline.path)
    title = one_line(document.core_properties.title or "") or first_heading or first_line_title(builder)
    return Parsed(builder, title)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DOCX_MARGIN_PART = re.compile(r"^/word/(header\d*|footer\d*|footnotes|endnotes)\.xml$")
_DOCX_DROPPED = frozenset(  # deleted or moved-away text, field codes, properties, and the fallback copy of a drawing
    {f"{_W}del", f"{_W}moveFrom", f"{_W}delText", f"{_W}instrText", f"{_W}sdtPr", f"{_W}rPr", f"{_W}pPr",
     f"{_W}fldData", "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"}
)  # fmt: skip
_DOCX_CONTAINERS = frozenset(  # wrappers whose children are read as if they stood in their place
    {f"{_W}sdt", f"{_W}sdtContent", f"{_W}ins", f"{_W}moveTo", f"{_W}customXml", f"{_W}smartTag"}
)
_DOCX_CHARACTERS = {f"{_W}tab": "\t", f"{_W}br": "\n", f"{_W}cr": "\n", f"{_W}noBreakHyphen": "-"}


def _docx_blocks(container: Iterable[etree._Element]) -> Iterator[tuple[str, etree._Element]]:
    """("paragraph" | "table", element) in reading order under a body, cell or wrapper element."""
    for element in _docx_children(container, (f"{_W}p", f"{_W}tbl")):
        yield ("paragraph" if element.tag == f"{_W}p" else "table"), element


def _docx_children(container: Iterable[etree._Element], tags: tuple[str, ...]) -> Iterator[etree._Element]:
    """The children with one of `tags`, also those wrapped in content controls, insertions and custom XML."""
    for child in container:
        if child.tag in tags:
            yield child
        elif child.tag in _DOCX_CONTAINERS:
            yield from _docx_children(child, tags)


def _docx_paragraph_text(paragraph: etree._Element) -> str:
    """A paragraph's shown text: runs (also in insertions, hyperlinks, fields, content controls, text boxes)."""
    parts: list[str] = []

    def visit(element: etree._Element) -> None:
        for child in element:
            tag = child.tag
            if tag in _DOCX_DROPPED or not isinstance(tag, str):
                continue
            if tag == f"{_W}t":
                parts.append(child.text or "")
            elif tag in _DOCX_CHARACTERS:
                parts.append(_DOCX_CHARACTERS[tag])
            elif tag == f"{_W}r" and _docx_hidden(child):
                continue
            else:
                if tag == f"{_W}p":  # a text box's paragraph inside this one
                    parts.append("\n")
                visit(child)

    visit(paragraph)
    return "".join(parts)


def _docx_hidden(run: etree._Element) -> bool:
    """A run formatted as hidden text (w:vanish), which Word does not show."""
    vanish = run.find(f"{_W}rPr/{_W}vanish")
    return vanish is not None and vanish.get(f"{_W}val", "true") not in ("0", "false", "off")


def _docx_part_texts(root: etree._Element) -> Iterator[str]:
    """Paragraph and table texts of a header, footer, footnotes or endnotes part (separator notes skipped)."""
    notes = root.findall(f"{_W}footnote") + root.findall(f"{_W}endnote")
    for container in notes or [root]:
        if container.get(f"{_W}type") in ("separator", "continuationSeparator", "continuationNotice"):
            continue
        for kind, element in _docx_blocks(container):
            yield from (_docx_rows(element) if kind == "table" else [_docx_paragraph_text(element)])


def check_zip_bomb(data: bytes, name: str, *, kind: str = "Word document") -> None:
    """Refuse archives that would inflate to hundreds of MB before their library (python-docx, python-pptx, openpyxl,
    odfpy) decompresses anything; `kind` names the file in the messages, e.g. "Excel workbook"."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LoadError(f"{name}: corrupt {kind} (broken ZIP container: {one_line(exc)})") from None
    ratio = total / len(data)
    if total > MAX_DOCX_UNCOMPRESSED or (total > DOCX_RATIO_FLOOR and ratio > MAX_DOCX_RATIO):
        raise LoadError(
            f"{name}: refused, the {kind} would expand to {total / 2**20:.0f} MB ({ratio:.0f}x its size; "
            f"limits {MAX_DOCX_UNCOMPRESSED // 2**20} MB and {MAX_DOCX_RATIO}x) - possibly a zip bomb"
        )


_DOCX_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)


def _docx_heading_level(style: BaseStyle | None) -> int | None:
    """Heading level from the paragraph style or the built-in style it derives from; "Title" is above level 1."""
    for _ in range(5):  # custom heading styles are usually based on a built-in one, a few levels deep
        if style is None:
            return None
        name = style.name or ""
        if name.lower() == "title":
            return 0
        match = _DOCX_HEADING.match(name)
        if match:
            return int(match.group(1))
        style = getattr(style, "base_style", None)  # paragraph and character styles have one, others do not
    return None


def _docx_rows(table: etree._Element) -> Iterator[str]:
    """One line per row, cells joined by " | "; a cell's paragraphs and nested tables joined by spaces, and a cell
    equal to its left neighbour (a horizontally merged one, as some writers repeat it) appears once."""
    for row in _docx_children(table, (f"{_W}tr",)):
        cells: list[str] = []
        for cell in _docx_children(row, (f"{_W}tc",)):
            blocks = (" ".join(_docx_rows(e)) if kind == "table" else _docx_paragraph_text(e)
                      for kind, e in _docx_blocks(cell))  # fmt: skip
            text = " ".join(" ".join(blocks).split())
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        yield " | ".join(cells)
