"""Format detection from the content, never trusted from the file name: uploads arrive with arbitrary names, and a
parser fed the wrong kind of file fails in confusing ways. The name's extension only breaks ties between text
formats, and a marker inside text (`%PDF-`, `<html>` in prose) never changes the format."""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from pathlib import Path

from lxml import etree

from .html import XML_DECLARATION
from .legal import SAFE_XML
from .text import decode, looks_textual

# at least two of these at the start, before the first blank line, and only header lines up to it
_KNOWN_HEADERS = frozenset({"from", "to", "cc", "date", "subject", "message-id", "mime-version", "received",
                            "return-path", "delivered-to", "reply-to", "content-type", "sender"})  # fmt: skip
_HEADER_LINE = re.compile(r"^([!-9;-~]+):")
_CONTINUATION = (" ", "\t")


def looks_like_mail(head: str) -> bool:
    """Whether text starts with an RFC 5322 header section: header lines only (continuations allowed) up to the
    first blank line, among them From and at least one other common mail header."""
    names = set()
    for line in head.lstrip("\ufeff").replace("\r\n", "\n").split("\n")[:200]:
        if not line.strip():
            break
        match = _HEADER_LINE.match(line)
        if match:
            names.add(match.group(1).lower())
        elif not (names and line.startswith(_CONTINUATION)):
            return False
    else:
        return False  # no blank line after 200 lines: no header section
    return "from" in names and len(names & _KNOWN_HEADERS) >= 2


def detect_format(data: bytes, name: str) -> str | None:
    """The format of `data` judged from its content; the name's extension only breaks ties between text formats."""
    if _is_pdf(data):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _zip_format(data, name)
    text = _decode_prefix(data)
    if text is None:
        return None
    head = text.lstrip("\ufeff \t\r\n")
    if looks_like_mail(head):
        return "eml"
    if head.startswith("<"):
        return _markup_format(head, data, name)
    return _plain_format(data, text, name)


# -------------------------------------------------------------------------------------------- format detection

_BINARY_KINDS = {  # only to word the "unsupported" message helpfully
    b"\x89PNG": "PNG image",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"\xd0\xcf\x11\xe0": "legacy Office file (.doc/.xls): save it as .docx",
    b"\x1f\x8b": "gzip archive",
    b"PK\x03\x04": "ZIP archive that is not an Office or OpenDocument file",
    b"{\\rtf": "RTF document: save it as .docx",
}
_FORMEX_ROOTS = frozenset({"ACT", "CONS.ACT", "CONS.DOC", "CONS.ANNEX", "CONS.OTH", "GENERAL", "ANNEX", "AGR"})
_HTML_DOCUMENT = re.compile(r"<(!doctype\s+html|html)[\s>]", re.IGNORECASE)
_HTML_FRAGMENT = re.compile(  # the WHATWG sniffing tags: a text starting with one of these is HTML
    r"<(head|body|script|iframe|h1|div|font|table|a|style|title|b|br|p|!--)[\s>/]", re.IGNORECASE
)
_MARKDOWN_SIGNS = re.compile(r"^(#{1,6} \S|```|~~~|\S.*\n(=+|-+)\s*$)", re.MULTILINE)
_TEXT_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".csv": "csv"}


# the part that makes a ZIP an Office Open XML file of each kind
_OOXML_PARTS = {"word/document.xml": "docx", "ppt/presentation.xml": "pptx", "xl/workbook.xml": "xlsx"}
_ODF_MIMETYPES = {b"application/vnd.oasis.opendocument.text": "odt", b"application/vnd.oasis.opendocument.spreadsheet":
                  "ods", b"application/vnd.oasis.opendocument.presentation": "odp"}  # fmt: skip
_ZIP_FORMATS = frozenset({*_OOXML_PARTS.values(), *_ODF_MIMETYPES.values()})


_PDF_HEADER = re.compile(rb"(?:\A|[^\x20-\x7e\t])%PDF-\d\.\d[ \t]*[\r\n]")  # after a line break or binary junk
_PDF_OBJECT = re.compile(rb"\d+\s+\d+\s+obj\b")


def _is_pdf(data: bytes) -> bool:
    """A PDF starts with its header line, then objects; readers tolerate junk before it (within 1024 bytes). A text
    that quotes the marker ("%PDF-1.7 is the header", or on a line of its own in a how-to) stays text: the header
    counts on a line of its own, and only before an indirect object or at the very start of binary bytes."""
    header = _PDF_HEADER.search(data, 0, 1024 + 16)
    if header is None:
        return False
    if _PDF_OBJECT.search(data, header.end(), header.end() + 65536):
        return True
    at_start = not data[: header.start()].strip(b"\xef\xbb\xbf \t\r\n\x00")
    return at_start and _decode_prefix(data[header.end() :]) is None  # a truncated PDF: binary after the header


def _zip_format(data: bytes, name: str) -> str | None:
    """An Office file by its main part, an OpenDocument one by its `mimetype` entry; a broken ZIP keeps the claim of
    its extension (.docx, .pptx, .xlsx, .odt, .ods, .odp) so that it fails as a corrupt file of that kind."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            found = [fmt for part, fmt in _OOXML_PARTS.items() if part in names]
            if not found and "mimetype" in names and archive.getinfo("mimetype").file_size < 100:
                return _ODF_MIMETYPES.get(archive.read("mimetype").strip())
            return found[0] if found else None
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError, EOFError):
        suffix = Path(name).suffix.lower().lstrip(".")
        return suffix if suffix in _ZIP_FORMATS else None


def _decode_prefix(data: bytes, size: int = 65536) -> str | None:
    """Enough decoded text to judge the format, or None when the bytes are not text at all."""
    prefix = data[:size]
    text = decode(prefix, final=len(data) <= size)
    return text if text is not None and looks_textual(text) else None


def _markup_format(head: str, data: bytes, name: str) -> str | None:
    """html, akoma-ntoso or formex from the root element; None for other XML vocabularies."""
    if _HTML_DOCUMENT.match(head):
        return "html"
    root_name = _root_element(head)
    if root_name.lower() == "akomantoso":
        return "akoma-ntoso"
    if root_name in _FORMEX_ROOTS:
        return "formex"
    if root_name.lower() == "html":
        return "html"
    if _HTML_FRAGMENT.match(head):
        # Markdown may open with inline HTML (a centred logo); only a full HTML document overrides ".md"
        return "markdown" if Path(name).suffix.lower() in (".md", ".markdown") else "html"
    # declarations, instructions, comments and DOCTYPEs before no known root: markup of another kind, not prose
    return None if head.startswith(("<?", "<!")) else _plain_format(data, head, name)


def _root_element(head: str, step: int = 4096) -> str:
    """Local name of the first element after the prolog (declaration, comments, DOCTYPE, instructions), or "".

    Read by libxml2's push parser, a piece at a time until the first start tag: linear in the prolog, whatever it
    repeats (a backtracking regex took exponential time on runs of `<?x?>`), with entities, DTD loading and the
    network off. Malformed markup ends the search: an HTML fragment still names its first element.
    """
    parser = etree.XMLPullParser(events=("start",), huge_tree=False, **SAFE_XML)
    data = XML_DECLARATION.sub("", head, count=1).encode()  # the text is decoded already, whatever it declared
    first = None
    with contextlib.suppress(etree.ParseError):
        for offset in range(0, len(data), step):
            parser.feed(data[offset : offset + step])
            if first := next(parser.read_events(), None):
                break
    first = first or next(parser.read_events(), None)  # a start tag read before a syntax error still counts
    return first[1].tag.rpartition("}")[2].rpartition(":")[2] if first else ""  # "{ns}x", or "akn:x" with no xmlns


def _plain_format(data: bytes, text: str, name: str) -> str | None:
    """markdown or text; the extension decides when it names one of them, the content otherwise."""
    if text.startswith(("{", "[")) and _is_json(data):
        return None  # data, not prose: indexing JSON produces useless passages
    suffix = Path(name).suffix.lower()
    if suffix in _TEXT_SUFFIXES:
        return _TEXT_SUFFIXES[suffix]
    return "markdown" if _MARKDOWN_SIGNS.search(text) else "text"


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):  # "[[[[..." nested deeper than the interpreter's stack: not data we index
        return False
    return True


def describe_unsupported(data: bytes) -> str:
    """What a file the loaders refuse looks like, for the error message: a binary kind named by its magic bytes
    (e.g. an image or archive), "binary content", or text of no supported format."""
    for magic, kind in _BINARY_KINDS.items():
        if data.startswith(magic):
            return kind
    if _decode_prefix(data) is None:
        return "binary content"
    return "text that is neither prose, Markdown, HTML, Akoma Ntoso nor Formex"
