"""Turn files into `Document`s: extracted text plus the structure the chunker follows.

Every loader returns one flat `text` and `blocks` that point into it by character offsets, so that any chunk can be
traced back to the exact span of the extracted text (and, for PDFs, to its page).

The format is decided from the content, never trusted from the file name: uploads arrive with arbitrary names, and
a parser fed the wrong kind of file fails in confusing ways. Every problem with an input file surfaces as one
`LoadError` line naming the file and the reason; no parser exception escapes.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import importlib
import io
import itertools
import json
import math
import os
import re
import threading
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from .errors import LoadError, UnsupportedFormatError
from .language import detect_language
from .ocr import OcrOptions, ocr_pages


@dataclass(frozen=True)
class Block:
    """A structural unit of a document (paragraph, article body, heading) as a span of `Document.text`."""

    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None  # 1-based: PDF page, or PPTX/ODP slide


@dataclass
class Document:
    source: str  # file path as given, or an upload name
    title: str
    text: str
    format: str  # pdf, docx, html, markdown, text, akoma-ntoso, formex, pptx, xlsx, csv, odt, ods, odp, eml
    lang: str  # fr | de | en | lb | ... ("und" when unknown)
    sha256: str  # of the file's bytes
    blocks: list[Block] = field(default_factory=list)
    pages: int | None = None
    pages_without_text: list[int] = field(default_factory=list)  # 1-based PDF pages left without text (scanned)
    pages_ocr: list[int] = field(default_factory=list)  # 1-based PDF pages read by OCR (no text layer)

    @property
    def doc_id(self) -> str:
        return document_id(self.source)


def document_id(source: str) -> str:
    """A stable id per source, so re-ingesting the same file replaces the same document: a readable slug of the
    file name (at most 48 characters) and 128 bits of sha256 of `source` exactly as given (`rag ingest` passes
    resolved absolute paths, uploads `upload://<principal>/<labels>/<name>`), e.g. `conges-3f9a…` (32 hex digits).

    128 bits make an accidental or searched-for collision infeasible (a 32-bit hash collided by chance in large
    collections, and could be searched for offline); the store still refuses a put whose id is held by a document
    of another source (rag/store.py)."""
    name = Path(source).stem.lower()
    slug = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")[:48] or "doc"
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"{slug}-{digest}"


# Inside folders only these are picked up, so that ingesting a tree skips its images, JSON sidecars and archives;
# a file named explicitly is always tried (and its content decides).
DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt", ".text", ".xml",
                               ".pptx", ".xlsx", ".csv", ".odt", ".ods", ".odp", ".eml"})  # fmt: skip

MAX_DOCX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_DOCX_RATIO = 100  # real documents compress 3-20x; only crafted archives reach 100x ...
DOCX_RATIO_FLOOR = 10 * 1024 * 1024  # ... and below this size a high ratio is harmless to parse anyway


# ---------------------------------------------------------------------------------------------------- public API


def load_document(path: Path, *, ocr: OcrOptions | None = None) -> Document:
    """Read one file and extract it like an upload of the same bytes."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return load_bytes(data, str(path), ocr=ocr)


def load_bytes(data: bytes, name: str, *, ocr: OcrOptions | None = None) -> Document:
    """Extract an uploaded file's text and structure; `name` is only used for messages, titles and tie-breaks.
    `ocr` (default: OCR on, `OcrOptions()`) says how PDF pages without a text layer are read."""
    if not data.strip():
        raise LoadError(f"{name}: empty file")
    fmt = detect_format(data, name)
    if fmt is None:
        raise UnsupportedFormatError(f"{name}: unsupported file type ({_describe_unsupported(data)})")
    try:
        parsed = _load_pdf(data, name, ocr or OcrOptions()) if fmt == "pdf" else _PARSERS[fmt](data, name)
    except (LoadError, MemoryError):  # out of memory is the process's limit, not a property of the file
        raise
    except Exception as exc:  # a parser choking on hostile input must still give one clean LoadError
        raise LoadError(f"{name}: cannot read {fmt} file ({_one_line(exc)})") from exc
    text = parsed.builder.text
    if not text:
        hint = " - scanned pages without a text layer, and OCR found no text or is off (ingest.ocr)" if fmt == "pdf" else ""
        raise LoadError(f"{name}: no extractable text{hint}")
    return Document(
        source=name,
        title=parsed.title or _stem(name),
        text=text,
        format=fmt,
        lang=detect_language(_prose(text)),
        sha256=hashlib.sha256(data).hexdigest(),
        blocks=parsed.builder.blocks,
        pages=parsed.pages,
        pages_without_text=parsed.pages_without_text,
        pages_ocr=parsed.pages_ocr,
    )


def iter_input_files(paths: list[Path]) -> Iterator[Path]:
    """Each given file, and the document files inside each given folder (recursively, sorted); each file once.

    Inside folders, hidden files and folders (".git", ".DS_Store") and non-document suffixes are skipped, and
    symlinked folders are not followed, so a link cycle cannot make ingestion loop.
    """
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise LoadError(f"{path}: no such file or directory")
        files = _files_under(path) if path.is_dir() else [path]
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


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
    from .load_mail import looks_like_mail  # imported here: rag/load_mail.py builds on this module

    if looks_like_mail(head):
        return "eml"
    if head.startswith("<"):
        return _markup_format(head, data, name)
    return _plain_format(data, text, name)


# ----------------------------------------------------------------------------------------- assembling the text


class _TextBuilder:
    """Concatenates cleaned block texts with blank lines between them and records each block's span."""

    SEPARATOR = "\n\n"

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.blocks: list[Block] = []

    def add(self, text: str, heading_path: tuple[str, ...] = (), page: int | None = None) -> None:
        text = _clean(text)
        if not text:
            return
        if self._parts:
            self._parts.append(self.SEPARATOR)
            self._length += len(self.SEPARATOR)
        self._parts.append(text)
        self.blocks.append(Block(self._length, self._length + len(text), heading_path, page))
        self._length += len(text)

    @property
    def text(self) -> str:
        return "".join(self._parts)


@dataclass
class _Parsed:
    builder: _TextBuilder
    title: str = ""
    pages: int | None = None
    pages_without_text: list[int] = field(default_factory=list)
    pages_ocr: list[int] = field(default_factory=list)


class _Outline:
    """The heading path of documents whose headings carry levels (HTML, Markdown, DOCX)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        title = _one_line(title)
        if title:
            self._stack.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._stack)


# control characters, soft hyphens, zero-width marks, BOMs, non-characters, private-use glyphs (symbol-font bullets)
_REMOVED_CHARS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200d\u2060\ufeff\ufffe\uffff\ue000-\uf8ff]")
_LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
              "\ufb06": "st"}  # fmt: skip
_LIGATURE = re.compile("[\ufb00-\ufb06]")
_HSPACE = re.compile(r"[^\S\n]+")


def _clean(text: str) -> str:
    """Canonical block text: NFC, no invisible characters, single spaces, no blank lines (they separate blocks)."""
    text = _LIGATURE.sub(lambda m: _LIGATURES[m.group()], unicodedata.normalize("NFC", text))
    text = _REMOVED_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n"))
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _prose(text: str) -> str:
    """The sentences, for language identification: lists and tables of names mislead it (village names read as lb)."""
    prose = "\n".join(line for line in text.split("\n") if " | " not in line and line.count(" ") >= 5)
    return prose if len(prose) >= 200 else text


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stem(name: str) -> str:
    return Path(name).stem or name


def _first_line_title(builder: _TextBuilder, limit: int = 150) -> str:
    """A fallback title: the document's first line, when it looks like one (a lone "CODE" says less than the name)."""
    if not builder.blocks:
        return ""
    first = builder.text[builder.blocks[0].start : builder.blocks[0].end].split("\n")[0]
    return first if len(first) <= limit and len(first.split()) >= 2 else ""


# ------------------------------------------------------------------------------------------------ input files


def _files_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in DOCUMENT_SUFFIXES]
    return sorted(found)


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
                found = [_ODF_MIMETYPES.get(archive.read("mimetype").strip())]
            return found[0] if found else None
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError, EOFError):
        suffix = Path(name).suffix.lower().lstrip(".")
        return suffix if suffix in _ZIP_FORMATS else None


def _decode_prefix(data: bytes, size: int = 65536) -> str | None:
    """Enough decoded text to judge the format, or None when the bytes are not text at all."""
    prefix = data[:size]
    text = _decode(prefix, final=len(data) <= size)
    return text if text is not None and _looks_textual(text) else None


def _decode(data: bytes, final: bool = True) -> str | None:
    """UTF-8 (with or without BOM), UTF-16 with BOM; bytes that are not UTF-8 are read as Windows-1252, run by run
    (a legacy Western file, or one legacy line pasted into a UTF-8 file); None for NUL bytes outside UTF-8/16."""
    for bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if data.startswith(bom):
            try:
                return codecs.getincrementaldecoder("utf-16")().decode(data, final=final)
            except UnicodeDecodeError:
                return None
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=final)
    except UnicodeDecodeError:
        if b"\x00" in data:
            return None
    return codecs.getincrementaldecoder("utf-8-sig")(errors=_LEGACY_BYTES).decode(data, final=final)


_LEGACY_BYTES = "rag-cp1252"


def _legacy_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not valid UTF-8 are read as Windows-1252 (its five unassigned bytes as
    latin-1), so one legacy line in a UTF-8 file is repaired while the valid rest stays UTF-8."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    stray = error.object[error.start : error.end]
    return "".join(bytes([byte]).decode("cp1252", errors="strict") if byte not in _CP1252_UNASSIGNED else chr(byte)
                   for byte in stray), error.end  # fmt: skip


_CP1252_UNASSIGNED = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})
codecs.register_error(_LEGACY_BYTES, _legacy_bytes)


_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def _looks_textual(text: str) -> bool:
    """Text has almost no control characters; binary junk decoded as cp1252 is full of them."""
    return len(_CONTROL_CHARS.findall(text)) <= len(text) * 0.01


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
    parser = etree.XMLPullParser(events=("start",), huge_tree=False, **_SAFE_XML)
    data = _XML_DECLARATION.sub("", head, count=1).encode()  # the text is decoded already, whatever it declared
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


def _describe_unsupported(data: bytes) -> str:
    for magic, kind in _BINARY_KINDS.items():
        if data.startswith(magic):
            return kind
    if _decode_prefix(data) is None:
        return "binary content"
    return "text that is neither prose, Markdown, HTML, Akoma Ntoso nor Formex"


# ------------------------------------------------------------------------------------------------------ PDF

_pdfium_lock = threading.Lock()  # PDFium is not thread-safe; the server may load uploads concurrently

_ARTICLE_HEAD = re.compile(  # "Art. 1er.", "Art. 5bis.", "Art. L. 121-1.", "Article 12", "Article unique."
    r"^«?\s?(Art\.|Article)\s?((?:[LRAD]\.\s?)?(?:\d+(?:[-.]\d+)*|[IVXLC]+)(?:er|re)?"
    r"(?:\s?(?:bis|ter|quater|quinquies|sexies|septies|octies|nonies|decies))?|unique|premier)"
    r"(?=\s*(?:\.|$|[-\u2013\u2014]\s))"
)
_CODE_PREFIX = re.compile(r"^([LRAD])\.\s?")  # codes number "Art. L. 121-1"; "L.121-1" is the same article
_ARTICLE_SUBJECT = re.compile(r"\s*[-\u2013\u2014]\s+(.*?)[\s.]*$")
_SECTION_HEAD = re.compile(r"^(Livre|Titre|Chapitre|Section|Sous-section|Partie|Annexe)\s+([IVXLC\d]+|premier)\b")
_PARAGRAPH_START = re.compile(  # "(2) Le", "3°", "b) ", "- ", "• ", and article or chapter headings
    r"^(\(\d+[a-z]*\)\s+[A-ZÀ-Ý«\"]|\d+°|[a-z]\)\s|[-\u2013\u2022\u25aa]\s|"
    + f"{_ARTICLE_HEAD.pattern[1:]}|{_SECTION_HEAD.pattern[1:]})"
)
_SENTENCE_END = (".", ":", ";", "!", "?", "»", '"', ")")
_DOT_LEADER = re.compile(r"(?:\s?\.){4,}")
_ALNUM = re.compile(r"[^\W_]")
_DIGITS = re.compile(r"\d+")
_PDF_REMOVED_CHARS = re.compile(_REMOVED_CHARS.pattern.replace("\ufffe", ""))  # keep PDFium's soft-hyphen marks
_WORD_END = re.compile(r"(\w+)[-\ufffe]$")
_WORD_START = re.compile(r"^(\w+(?:-\w+)*)")  # with the rest of a compound: "c'est-|à-dire"
_SOFT_HYPHEN = re.compile(r"(\w+)\ufffe(\w+(?:-\w+)*)")
_WORDS = re.compile(r"\w+(?:-\w+)*")
_DETACHED_WORDS = frozenset({"und", "oder", "bzw", "sowie", "bis", "et", "ou", "and", "or", "to"})  # "Lohn- und"


def _load_pdf(data: bytes, name: str, ocr: OcrOptions) -> _Parsed:
    with _pdfium_lock:
        pages, metadata_title = _pdf_page_texts(data, name)
        page_lines = [_pdf_lines(text) for text in pages]
        blank = [number for number, lines in enumerate(page_lines, start=1) if not lines]
        texts = ["\n".join(lines) for lines in page_lines if lines]
        read = ocr_pages(data, blank[: ocr.max_pages], options=ocr, texts=texts) if ocr.enabled else {}
    for number, text in read.items():
        pages[number - 1], page_lines[number - 1] = text, _pdf_lines(text)
    running = _running_lines(page_lines)
    vocabulary = {word for text in pages for word in _WORDS.findall(text.lower())}
    builder = _TextBuilder()
    article: tuple[str, ...] = ()
    for number, lines in enumerate(page_lines, start=1):
        body = [line for i, line in enumerate(lines) if not _is_running(line, i, len(lines), running)]
        for paragraph in _pdf_paragraphs(body):
            text = _join_pdf_lines(paragraph, vocabulary)
            article = _current_article(text, article)
            builder.add(text, article, number)
    title = _pdf_title(metadata_title) or _first_line_title(builder)
    still_blank = [number for number, lines in enumerate(page_lines, start=1) if not lines]
    ocr_read = sorted(number for number in read if page_lines[number - 1])
    return _Parsed(builder, title, pages=len(pages), pages_without_text=still_blank, pages_ocr=ocr_read)


def _pdf_page_texts(data: bytes, name: str) -> tuple[list[str], str]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise LoadError(f"{name}: encrypted PDF (a password is required to open it)") from None
        raise LoadError(f"{name}: corrupt or truncated PDF ({_one_line(exc)})") from None
    try:
        return [_pdf_page_text(pdf, index, name) for index in range(len(pdf))], pdf.get_metadata_value("Title")
    finally:
        pdf.close()


def _pdf_page_text(pdf, index: int, name: str) -> str:
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


def _pdf_segments(textpage, turn: int) -> list[_Segment]:
    """Runs of characters on one line without a wide gap, in PDFium's order, one pass over the characters (PDFium's
    own "rects" need a bounded-text call each, quadratic on dense pages). Spaces and line breaks PDFium generates
    have no box: spaces stay in the run, line breaks end it."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    segments: list[_Segment] = []
    chars: list[str] = []
    box = [0.0, 0.0, 0.0, 0.0]  # left, top, right, bottom of the current run, in the text's frame
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
            box = [min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom)]
        else:
            box = [left, top, right, bottom]
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


def _text_direction(textpage) -> int:
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
PDF_MIN_COLUMN_SHARE = 0.3  # each column's typical line fills this share of the section's width (a form's labels do not)


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
    for previous, segment in zip(line, line[1:]):
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
    gaps = [(a[1], b[0]) for a, b in zip(covered, covered[1:]) if b[0] - a[1] >= width]
    return max(gaps, key=lambda gap: gap[1] - gap[0]) if gaps else None


def _column_sections(lines: list[list[_Segment]], gutter: float) -> Iterator[list[list[_Segment]]]:
    """Consecutive lines grouped while they keep a common gutter; lines crossing it (a title) stand alone."""
    section: list[list[_Segment]] = []
    covered: list[tuple[float, float]] = []
    for line in lines:
        grown = _covered(covered, line)
        if section and _widest_gap(grown, gutter) is None and (len(section) < 2 or _widest_gap(covered, gutter)):
            yield from [section] if len(section) >= PDF_MIN_COLUMN_LINES else ([single] for single in section)
            section, grown = [], _covered([], line)
        section.append(line)
        covered = grown
    yield from [section] if len(section) >= PDF_MIN_COLUMN_LINES else ([single] for single in section)


def _median_width(lines: list[list[_Segment]]) -> float:
    widths = sorted(line[-1].right - line[0].left for line in lines if line)
    return widths[len(widths) // 2] if widths else 0.0


def _read_section(section: list[list[_Segment]], gutter_width: float) -> list[str]:
    covered: list[tuple[float, float]] = []
    for line in section:
        covered = _covered(covered, line)
    gutter = _widest_gap(covered, gutter_width) if len(section) >= PDF_MIN_COLUMN_LINES else None
    if gutter is None:
        return [text for line in section if (text := _line_text(line))]
    left = [[s for s in line if s.right <= gutter[0]] for line in section]
    right = [[s for s in line if s.left >= gutter[1]] for line in section]
    width = covered[-1][1] - covered[0][0]
    if min(_median_width(left), _median_width(right)) < PDF_MIN_COLUMN_SHARE * width:  # labels and values, a table
        return [text for line in section if (text := _line_text(line))]
    return _read_section([line for line in left if line], gutter_width) + _read_section(
        [line for line in right if line], gutter_width
    )


def _pdf_lines(page_text: str) -> list[str]:
    """Visible lines of a page, keeping PDFium's soft-hyphen marks (U+FFFE) for the de-hyphenation."""
    lines = []
    for line in page_text.replace("\r\n", "\n").split("\n"):
        line = line.replace("\x02", "\ufffe").replace("\u00ad", "\ufffe")
        if line.count(".") >= 4:
            line = _DOT_LEADER.sub(" … ", line)
        line = " ".join(_PDF_REMOVED_CHARS.sub("", line).split())
        if _ALNUM.search(line):  # drops rules, leaders and stray glyphs
            lines.append(line)
    return lines


def _line_key(line: str) -> str:
    return _DIGITS.sub("#", line.lower())


def _running_lines(page_lines: list[list[str]]) -> frozenset[str]:
    """Headers and footers: lines at a page's edge that recur (numbers aside) on many pages."""
    if len(page_lines) < 4:
        return frozenset()
    counts: Counter[str] = Counter()
    for lines in page_lines:
        edges = lines[:3] + lines[-3:]
        counts.update({_line_key(line) for line in edges if not _ARTICLE_HEAD.match(line)})  # "Art. 5." is text
    threshold = max(3, min(5, 0.4 * len(page_lines)))  # a chapter's running head spans only its own pages
    return frozenset(key for key, count in counts.items() if count >= threshold)


def _is_running(line: str, index: int, count: int, running: frozenset[str]) -> bool:
    return (index < 3 or index >= count - 3) and _line_key(line) in running


def _pdf_paragraphs(lines: list[str]) -> Iterator[list[str]]:
    """Group a page's lines into paragraphs.

    PDF text has no paragraph marks, only lines. In justified legal text a paragraph ends on a short line with
    closing punctuation, and articles, numbered alineas and list items start on a new line.
    """
    if not lines:
        return
    lengths = sorted(len(line) for line in lines)
    full = lengths[int(0.9 * (len(lengths) - 1))]
    current: list[str] = []
    for line in lines:
        if current and _starts_paragraph(line, current[-1], full):
            yield current
            current = []
        current.append(line)
    yield current


def _starts_paragraph(line: str, previous: str, full_length: int) -> bool:
    if _PARAGRAPH_START.match(line):
        return True
    short = len(previous) < 0.8 * full_length
    if short and previous.endswith(_SENTENCE_END):
        return True
    return len(previous) < 0.5 * full_length and not previous.endswith((",", "-")) and line[:1].isupper()


def _join_pdf_lines(lines: list[str], vocabulary: set[str]) -> str:
    """One paragraph from its lines: a space at line breaks, line-end hyphens resolved word by word."""
    text = lines[0]
    for line in lines[1:]:
        left = _WORD_END.search(text, max(0, len(text) - 100)) if text[-1] in "-\ufffe" else None
        right = _WORD_START.match(line)
        if left and right:
            joined = _dehyphenate(left.group(1), right.group(1), vocabulary)
            text = text[: left.start()] + joined + line[right.end() :]
        else:
            text += " " + line
    if "\ufffe" in text:  # PDFium already joined these lines; the mark is where the hyphen was
        text = _SOFT_HYPHEN.sub(lambda m: _dehyphenate(m.group(1), m.group(2), vocabulary), text).replace("\ufffe", "")
    return text


def _dehyphenate(left: str, right: str, vocabulary: set[str]) -> str:
    """Decide between "régle|ment" -> "réglement", "Grand-|Duché" -> "Grand-Duché" and "Lohn-|und" -> "Lohn- und".

    The document itself is the best dictionary: a form seen elsewhere in it wins; otherwise a lowercase
    continuation is a split word and anything else (capital, digit) a real hyphen.
    """
    if f"{left}{right}".lower() in vocabulary:
        return left + right
    if f"{left}-{right}".lower() in vocabulary:
        return f"{left}-{right}"
    if right.lower() in _DETACHED_WORDS:
        return f"{left}- {right}"
    if right[:1].islower() and left[-1:].isalpha():
        return left + right
    return f"{left}-{right}"


def _current_article(text: str, article: tuple[str, ...]) -> tuple[str, ...]:
    """The article a paragraph of unstructured text (PDF, plain text) belongs to: its own heading, or the last
    one, until a chapter starts."""
    match = _ARTICLE_HEAD.match(text)
    if match:
        number = _CODE_PREFIX.sub(r"\1. ", match.group(2))
        label = f"{match.group(1)} {number}"
        first_line = text.split("\n", 1)[0]
        subject = _ARTICLE_SUBJECT.match(first_line, match.end())
        if subject and len(first_line) <= 100:  # "Article 2 - Passwords" on a line of its own
            label = f"{label} - {subject.group(1)}"
        return (label,)
    if _SECTION_HEAD.match(text):
        return ()
    return article


def _pdf_title(title: str) -> str:
    """The metadata title unless it is a placeholder ("CODE", "untitled", "Microsoft Word - x.doc")."""
    title = _one_line(re.sub(r"^Microsoft Word - ", "", title or ""))
    meaningful = len(title.split()) >= 2 and len(_ALNUM.findall(title)) >= 8
    return title if meaningful and not re.search(r"\.(docx?|pdf)$", title, re.IGNORECASE) else ""


# ----------------------------------------------------------------------------------------------------- DOCX


def _load_docx(data: bytes, name: str) -> _Parsed:
    """The text as Word shows it with tracked changes accepted: paragraphs and tables of the body in order, also
    inside content controls, insertions, hyperlinks and fields (their shown result, not the field code); deleted
    and moved-away text and hidden runs left out; then headers, footers, footnotes and endnotes, each text once.

    python-docx opens the package and resolves styles; the body is walked on its XML, because python-docx's own
    paragraph and table views skip content controls and tracked insertions."""
    import docx

    _check_zip_bomb(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors... on bad packages
        raise LoadError(f"{name}: corrupt or invalid Word document ({_one_line(exc)})") from None
    styles = {style.style_id: style for style in document.styles}
    builder, outline = _TextBuilder(), _Outline()
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
            first_heading = first_heading or _one_line(text)
    seen: set[str] = set()
    for part in sorted(document.part.package.iter_parts(), key=lambda part: str(part.partname)):
        if _DOCX_MARGIN_PART.match(str(part.partname)):
            for text in _docx_part_texts(_parse_xml(part.blob, name)):
                if text not in seen:
                    seen.add(text)
                    builder.add(text, outline.path)
    title = _one_line(document.core_properties.title or "") or first_heading or _first_line_title(builder)
    return _Parsed(builder, title)


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


def _docx_blocks(container) -> Iterator[tuple[str, etree._Element]]:
    """("paragraph" | "table", element) in reading order under a body, cell or wrapper element."""
    for element in _docx_children(container, (f"{_W}p", f"{_W}tbl")):
        yield ("paragraph" if element.tag == f"{_W}p" else "table"), element


def _docx_children(container, tags: tuple[str, ...]) -> Iterator[etree._Element]:
    """The children with one of `tags`, also those wrapped in content controls, insertions and custom XML."""
    for child in container:
        if child.tag in tags:
            yield child
        elif child.tag in _DOCX_CONTAINERS:
            yield from _docx_children(child, tags)


def _docx_paragraph_text(paragraph) -> str:
    """A paragraph's shown text: runs (also in insertions, hyperlinks, fields, content controls, text boxes)."""
    parts: list[str] = []

    def visit(element) -> None:
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


def _docx_hidden(run) -> bool:
    """A run formatted as hidden text (w:vanish), which Word does not show."""
    vanish = run.find(f"{_W}rPr/{_W}vanish")
    return vanish is not None and vanish.get(f"{_W}val", "true") not in ("0", "false", "off")


def _docx_part_texts(root) -> Iterator[str]:
    """Paragraph and table texts of a header, footer, footnotes or endnotes part (separator notes skipped)."""
    notes = root.findall(f"{_W}footnote") + root.findall(f"{_W}endnote")
    for container in notes or [root]:
        if container.get(f"{_W}type") in ("separator", "continuationSeparator", "continuationNotice"):
            continue
        for kind, element in _docx_blocks(container):
            yield from (_docx_rows(element) if kind == "table" else [_docx_paragraph_text(element)])


def _check_zip_bomb(data: bytes, name: str, *, kind: str = "Word document") -> None:
    """Refuse archives that would inflate to hundreds of MB before their library (python-docx, python-pptx, openpyxl,
    odfpy) decompresses anything; `kind` names the file in the messages, e.g. "Excel workbook"."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LoadError(f"{name}: corrupt {kind} (broken ZIP container: {_one_line(exc)})") from None
    ratio = total / len(data)
    if total > MAX_DOCX_UNCOMPRESSED or (total > DOCX_RATIO_FLOOR and ratio > MAX_DOCX_RATIO):
        raise LoadError(
            f"{name}: refused, the {kind} would expand to {total / 2**20:.0f} MB ({ratio:.0f}x its size; "
            f"limits {MAX_DOCX_UNCOMPRESSED // 2**20} MB and {MAX_DOCX_RATIO}x) - possibly a zip bomb"
        )


_DOCX_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)


def _docx_heading_level(style) -> int | None:
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
        style = style.base_style
    return None


def _docx_rows(table) -> Iterator[str]:
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


# ----------------------------------------------------------------------------------------------------- HTML

_HTML_SKIP = frozenset({"script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "object",
                        "canvas", "button", "select", "option", "datalist"})  # fmt: skip
_HTML_BLOCKS = frozenset({"p", "div", "li", "pre", "blockquote", "dd", "dt", "figcaption", "caption", "address",
                          "section", "article", "main", "header", "footer", "aside", "ul", "ol", "dl", "table",
                          "thead", "tbody", "tfoot", "form", "fieldset", "legend", "details", "summary", "figure",
                          "hr", "body", "html", "center"})  # fmt: skip
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def _load_html(data: bytes, name: str) -> _Parsed:
    import lxml.html

    text = _XML_DECLARATION.sub("", _decode_html(data, name))  # lxml refuses str input that declares an encoding
    parser = lxml.html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)
    root = lxml.html.document_fromstring(text, parser=parser)
    _drop_hidden(root)
    walker = _HtmlWalker()
    walker.walk(root)
    walker.flush()
    title_element = root.find(".//title")
    title = _one_line(title_element.text_content()) if title_element is not None else ""
    return _Parsed(walker.builder, title or walker.first_heading)


def _decode_html(data: bytes, name: str) -> str:
    """Valid UTF-8 wins over the declared charset (pages saved as UTF-8 often still declare latin-1); the declaration
    then rescues non-Western legacy encodings before the generic cp1252 fallback."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    declared = _HTML_CHARSET.search(data[:4096])
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass
    return _decode_text(data, name)


HTML_MAX_HIDING_RULES = 2000  # style rules that hide, matched per page: each costs a pass over the tree (~2 ms per
# 1,000 elements), and a style-sheet flood must not eat the parse time limit; real sheets have tens to hundreds
_CSS_HIDING = {  # declarations that make an element and its content invisible
    "display": {"none"},
    "visibility": {"hidden", "collapse"},
    "content-visibility": {"hidden"},
    "opacity": {"0", "0.0", "0%"},
    "font-size": {"0", "0px", "0pt", "0em", "0rem", "0%"},
}


def _drop_hidden(root) -> None:
    """Remove what a browser does not show, keeping the text that follows it: elements with the `hidden` attribute
    or `aria-hidden="true"`, and those hidden by an inline `style` or a rule of a `<style>` sheet (display: none,
    visibility: hidden, opacity: 0, font-size: 0).

    Style sheets are parsed with tinycss2 and their selectors matched with cssselect (lxml's CSS engine): both
    well-kept libraries, where a hand-written CSS parser would miss comments, escapes and nested @media blocks."""
    import tinycss2
    from cssselect import SelectorError
    from lxml.cssselect import CSSSelector, ExpressionError

    hidden = [e for e in root.iter() if isinstance(e.tag, str) and (
        e.get("hidden") is not None or (e.get("aria-hidden") or "").strip().lower() == "true"
        or _css_hides(e.get("style") or ""))]  # fmt: skip
    selectors = (selector for style in root.iter("style")
                 for selector in _hiding_selectors(tinycss2.parse_stylesheet(style.text or "", True, True)))
    for selector in itertools.islice(selectors, HTML_MAX_HIDING_RULES):
        try:
            hidden += CSSSelector(selector, translator="html")(root)
        except (SelectorError, ExpressionError):  # pseudo-classes (:hover) and invalid selectors hide nothing
            continue
    for element in hidden:
        if element is not root and element.getparent() is not None:
            element.drop_tree()


def _hiding_selectors(rules) -> Iterator[str]:
    """Selectors of the style rules that hide, also inside @media and @supports blocks (except print-only media)."""
    import tinycss2

    for rule in rules:
        if rule.type == "qualified-rule" and _css_hides(rule.content):
            yield tinycss2.serialize(rule.prelude).strip()
        elif rule.type == "at-rule" and rule.content and rule.lower_at_keyword in ("media", "supports"):
            media = tinycss2.serialize(rule.prelude).lower()
            if "print" not in media or "screen" in media:
                yield from _hiding_selectors(tinycss2.parse_rule_list(rule.content, True, True))


def _css_hides(declarations: str | list) -> bool:
    """Whether a CSS declaration list (a `style` attribute, or the tinycss2 tokens of a rule's block) hides."""
    import tinycss2

    for declaration in tinycss2.parse_blocks_contents(declarations, skip_comments=True, skip_whitespace=True):
        if declaration.type == "declaration":
            value = tinycss2.serialize(declaration.value).strip().lower()
            if value in _CSS_HIDING.get(declaration.lower_name, ()):
                return True
    return False


class _HtmlWalker:
    """Flattens the element tree into blocks: inline text accumulates until a block-level boundary."""

    def __init__(self) -> None:
        self.builder = _TextBuilder()
        self.outline = _Outline()
        self.first_heading = ""
        self._buffer: list[str] = []

    def walk(self, element, preformatted: bool = False) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag and tag not in _HTML_SKIP:
            if tag in _HTML_HEADINGS:
                self._heading(element, int(tag[1]))
            elif tag == "tr":
                self.flush()
                self.builder.add(_html_row(element), self.outline.path)
            elif tag == "br":
                self._buffer.append("\n")
            else:
                self._container(element, tag in _HTML_BLOCKS, preformatted or tag == "pre")
        self._buffer.append(_html_text(element.tail, preformatted))

    def flush(self) -> None:
        self.builder.add("".join(self._buffer), self.outline.path)
        self._buffer.clear()

    def _heading(self, element, level: int) -> None:
        self.flush()
        text = _html_inline_text(element)
        self.builder.add(text, self.outline.enter(level, text))
        self.first_heading = self.first_heading or _one_line(text)

    def _container(self, element, is_block: bool, preformatted: bool) -> None:
        if is_block:
            self.flush()
        self._buffer.append(_html_text(element.text, preformatted))
        for child in element:
            self.walk(child, preformatted)
        if is_block:
            self.flush()


def _html_text(text: str | None, preformatted: bool) -> str:
    return (text or "") if preformatted else _source_text(text)


def _html_inline_text(element) -> str:
    """Visible text of an element, with a space where block-level children would break the line."""
    parts: list[str] = []

    def visit(node) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag and tag not in _HTML_SKIP:
            boundary = tag in _HTML_BLOCKS or tag in _HTML_HEADINGS or tag == "br"
            parts.append(" " if boundary else "")
            parts.append(node.text or "")
            for child in node:
                visit(child)
            parts.append(" " if boundary else "")
        if node is not element:
            parts.append(node.tail or "")

    visit(element)
    return " ".join("".join(parts).split())


def _html_row(row) -> str:
    cells = [_html_inline_text(cell) for cell in row if isinstance(cell.tag, str) and cell.tag in ("td", "th")]
    return " | ".join(cell for cell in cells if cell)


# ------------------------------------------------------------------------------------------ Markdown and text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(---|\.\.\.)[ \t]*\n", re.DOTALL)


def _load_markdown(data: bytes, name: str) -> _Parsed:
    from markdown_it import MarkdownIt

    text = _FRONT_MATTER.sub("", _decode_text(data, name))
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    builder, outline = _TextBuilder(), _Outline()
    first_heading = ""
    heading_level: int | None = None
    row: list[str] | None = None
    for token in tokens:
        if token.type == "heading_open":
            heading_level = int(token.tag[1])
        elif token.type == "heading_close":
            heading_level = None
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            builder.add(" | ".join(cell for cell in row or [] if cell), outline.path)
            row = None
        elif token.type == "inline" and heading_level is not None:
            heading = _markdown_inline(token)
            builder.add(heading, outline.enter(heading_level, heading))
            first_heading = first_heading or _one_line(heading)
        elif token.type == "inline" and row is not None:
            row.append(_one_line(_markdown_inline(token)))
        elif token.type == "inline":
            builder.add(_markdown_inline(token), outline.path)
        elif token.type in ("fence", "code_block"):
            builder.add(token.content, outline.path)
        elif token.type == "html_block":
            builder.add(_html_fragment_text(token.content), outline.path)
    return _Parsed(builder, first_heading or _first_line_title(builder))


def _markdown_inline(token) -> str:
    """Readable text of an inline token: markup dropped, images by their alt text, hard breaks kept."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


def _html_fragment_text(markup: str) -> str:
    import lxml.html

    try:
        fragment = lxml.html.fragment_fromstring(markup, create_parent="div")
        _drop_hidden(fragment)
        return _html_inline_text(fragment)
    except etree.ParserError:
        return ""


_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def _load_text(data: bytes, name: str) -> _Parsed:
    builder = _TextBuilder()
    article: tuple[str, ...] = ()
    text = _decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n")
    for paragraph in _BLANK_LINE.split(text):
        article = _current_article(paragraph.strip(), article)
        builder.add(paragraph, article)
    return _Parsed(builder, _first_line_title(builder))


def _decode_text(data: bytes, name: str) -> str:
    text = _decode(data)
    if text is None or not _looks_textual(text):
        raise LoadError(f"{name}: not readable as text (undecodable or binary bytes)")
    return text


# --------------------------------------------------------------------------------------------------- XML

# No entity expansion, no DTD or network fetches (XXE, billion laughs); comments and processing instructions
# (Formex page marks) carry no text.
_SAFE_XML = dict(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True)


def _parse_xml(data: bytes, name: str) -> etree._Element:
    try:
        return etree.fromstring(data, etree.XMLParser(**_SAFE_XML))
    except etree.XMLSyntaxError as exc:
        raise LoadError(f"{name}: corrupt XML ({_one_line(exc)})") from None


@dataclass(frozen=True)
class _FlattenRules:
    """How to turn an XML subtree into block text for one vocabulary."""

    skip: frozenset[str]  # subtrees without reading text: notes, deleted text, metadata
    lines: frozenset[str]  # start and end a line
    spaced: frozenset[str] = frozenset()  # numbers followed by their text: "(a)" + "text" -> "(a) text"
    cells: frozenset[str] = frozenset()  # table cells, joined by " | "
    foreign: Callable[[str | None], bool] = lambda namespace: False  # elements of other vocabularies to skip


def _flatten(element, rules: _FlattenRules) -> str:
    parts: list[str] = []
    _flatten_into(element, rules, parts)
    return "".join(parts)


def _flatten_into(element, rules: _FlattenRules, parts: list[str]) -> None:
    if not isinstance(element.tag, str):  # an unexpanded entity reference: no text of ours (its tail is)
        return
    qname = etree.QName(element)
    name = qname.localname
    if name in rules.skip or rules.foreign(qname.namespace):
        return
    if name in rules.lines:
        parts.append("\n")
    elif name in rules.cells and element.getprevious() is not None:
        parts.append(" | ")
    parts.append(_source_text(element.text))
    for child in element:
        _flatten_into(child, rules, parts)
        parts.append(_source_text(child.tail))
    parts.append("\n" if name in rules.lines else " " if name in rules.spaced else "")


def _source_text(text: str | None) -> str:
    """Line breaks in markup source are layout, not content: only structural elements start lines."""
    return text.replace("\n", " ") if text else ""


def _inline(element, rules: _FlattenRules) -> str:
    return _one_line(_flatten(element, rules)) if element is not None else ""


# ------------------------------------------------------------------------------------------- Akoma Ntoso

_MATHML = "http://www.w3.org/1998/Math/MathML"
_AKN_HIERARCHY = frozenset({"book", "tome", "part", "subpart", "title", "subtitle", "chapter", "subchapter",
                            "section", "subsection", "division", "subdivision", "article", "clause", "subclause",
                            "rule", "subrule", "level"})  # fmt: skip
_AKN_NUMBERED = frozenset({"paragraph", "subparagraph", "point", "indent", "alinea", "list", "item"})
_AKN_WRAPPERS = frozenset({"akomaNtoso", "act", "bill", "doc", "statement", "portion", "amendment", "debate",
                           "judgment", "body", "mainBody", "judgmentBody", "debateBody", "amendmentBody",
                           "preface", "preamble", "conclusions", "attachments", "attachment", "components",
                           "component", "documentCollection", "collectionBody"})  # fmt: skip
_AKN_LABELS = frozenset({"num", "heading", "subheading"})


def _load_akoma_ntoso(data: bytes, name: str) -> _Parsed:
    root = _parse_xml(data, name)
    namespace = etree.QName(root).namespace
    rules = _FlattenRules(
        # del: text repealed in this consolidated version; notes and noteRefs: editorial amendment history
        skip=frozenset({"meta", "notes", "note", "noteRef", "authorialNote", "del", "remark", "eop"}),
        lines=frozenset({"p", "li", "tr", "br", "ul", "ol", "table", "blockList", "item", "listIntroduction",
                         "listWrapUp", "alinea", "content", "paragraph", "point", "article", "embeddedStructure",
                         "quotedStructure", "subFlow", "tblock", "intro", "wrapUp", "heading", "longTitle"}),
        spaced=frozenset({"num"}),
        cells=frozenset({"td", "th"}),
        foreign=lambda ns: ns not in (namespace, _MATHML),  # Legilux's scl: metadata inside articles
    )  # fmt: skip
    builder = _TextBuilder()
    for text, path in _akn_units(root, (), rules):
        builder.add(text, path)
    title = _inline(root.find(".//{*}preface//{*}longTitle"), rules) or _inline(root.find(".//{*}docTitle"), rules)
    return _Parsed(builder, title)


def _akn_units(element, path: tuple[str, ...], rules: _FlattenRules) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(text, heading path) per readable unit, in document order.

    Hierarchy elements (chapter, section, article...) extend the heading path with "num - heading" and emit it as a
    short heading unit; numbered paragraphs prefix their number to their first unit; any other element is one unit
    of flattened text, so quoted articles inside amending provisions stay text and never become structure.
    """
    for child in element:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        name = qname.localname
        if name in rules.skip or name in _AKN_LABELS or rules.foreign(qname.namespace):
            continue
        if name in _AKN_HIERARCHY:
            label = _akn_label(child, rules)
            inner_path = (*path, label) if label else path
            units = list(_akn_units(child, inner_path, rules))
            if units and label:
                yield label, inner_path
            yield from units
        elif name in _AKN_NUMBERED:
            yield from _prefixed(_akn_number(child, rules), _akn_units(child, path, rules))
        elif name in _AKN_WRAPPERS:
            yield from _akn_units(child, path, rules)
        else:
            yield _flatten(child, rules), path


def _akn_label(element, rules: _FlattenRules) -> str:
    number = _akn_number(element, rules).rstrip(" .:-\u2013")
    heading = _inline(element.find("{*}heading"), rules).strip(" -\u2013")
    return " - ".join(part for part in (number, heading) if part)


def _akn_number(element, rules: _FlattenRules) -> str:
    return _inline(element.find("{*}num"), rules)


def _prefixed(prefix: str, units: Iterable[tuple[str, tuple[str, ...]]]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """The units, the first one starting with `prefix` ("(2)", "1.") so the number stays with its text."""
    for index, (text, path) in enumerate(units):
        yield (f"{prefix} {text.lstrip()}" if index == 0 and prefix else text), path


# ------------------------------------------------------------------------------------------------- Formex

_FORMEX_RULES = _FlattenRules(
    skip=frozenset({"NOTE"}),
    lines=frozenset({"P", "ALINEA", "ITEM", "LIST", "ROW", "TI", "STI", "CONSID", "VISA", "NP"}),
    spaced=frozenset({"NO.P"}),
    cells=frozenset({"CELL"}),
)
_FORMEX_BODIES = ("PREAMBLE", "ENACTING.TERMS", "FINAL")
_FORMEX_HEADINGS = {"DIVISION": ("TITLE/TI", "TITLE/STI"), "ARTICLE": ("TI.ART", "STI.ART")}  # number, subject
_FORMEX_LABELS = frozenset({"TITLE", "TI.ART", "STI.ART"})  # read into the heading path, not repeated as text
_RECITAL = {"EN": "Recital", "FR": "Considérant", "DE": "Erwägungsgrund"}


def _load_formex(data: bytes, name: str) -> _Parsed:
    root = _parse_xml(data, name)
    for mark in root.iter("QUOT.START", "QUOT.END"):  # quotes are empty elements carrying the character's code
        mark.text = _quote_char(mark.get("CODE", ""))
    builder = _TextBuilder()
    title_element = root.find(".//BIB.DATA/TITLE/TI")
    title = _inline(title_element, _FORMEX_RULES)
    builder.add(title)
    recital = _RECITAL.get((root.findtext(".//LG.DOC") or "").strip().upper(), "Recital")
    for body in root.iter(*_FORMEX_BODIES):
        if not any(ancestor.tag in _FORMEX_BODIES for ancestor in body.iterancestors()):
            for text, path in _formex_units(body, (), recital):
                builder.add(text, path)
    return _Parsed(builder, title)


def _quote_char(code: str) -> str:
    try:
        return chr(int(code, 16))
    except ValueError:
        return '"'


def _formex_units(element, path: tuple[str, ...], recital: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(text, heading path) per unit: divisions and articles label the path; paragraphs and recitals are units."""
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or tag in _FORMEX_RULES.skip or tag in _FORMEX_LABELS:
            continue
        if tag in _FORMEX_HEADINGS:
            label = " - ".join(_inline(child.find(part), _FORMEX_RULES) for part in _FORMEX_HEADINGS[tag]).strip(" -")
            yield label, (*path, label)
            yield from _formex_units(child, (*path, label), recital)
        elif tag == "PARAG":
            body = "\n".join(_flatten(part, _FORMEX_RULES) for part in child if part.tag != "NO.PARAG")
            yield f"{_inline(child.find('NO.PARAG'), _FORMEX_RULES)} {body.lstrip()}", path
        elif tag == "CONSID":
            number = _inline(child.find(".//NO.P"), _FORMEX_RULES).strip("()")
            yield _flatten(child, _FORMEX_RULES), (*path, f"{recital} {number}".strip())
        elif tag in ("GR.CONSID", "GR.VISA"):
            yield from _formex_units(child, path, recital)
        else:
            yield _flatten(child, _FORMEX_RULES), path


def _elsewhere(module: str, function: str) -> Callable[[bytes, str], _Parsed]:
    """The parser `function` of the package's `module` (rag/load_office.py, rag/load_mail.py), imported on first use:
    those modules build on this one's helpers, so this one cannot import them while it is being imported."""

    def parse(data: bytes, name: str) -> _Parsed:
        return getattr(importlib.import_module(f".{module}", __package__), function)(data, name)

    return parse


_PARSERS: dict[str, Callable[[bytes, str], _Parsed]] = {  # and "pdf": _load_pdf, which also takes OcrOptions
    "docx": _load_docx,
    "html": _load_html,
    "markdown": _load_markdown,
    "text": _load_text,
    "akoma-ntoso": _load_akoma_ntoso,
    "formex": _load_formex,
    **{fmt: _elsewhere("load_office", f"load_{fmt}") for fmt in ("pptx", "xlsx", "csv", "odt", "ods", "odp")},
    "eml": _elsewhere("load_mail", "load_eml"),
}
