"""What every loader produces: a `Document` (one flat text, `Block`s pointing into it by character offsets) and
the helpers that assemble it (`TextBuilder`, `Outline`, `Parsed`, text cleaning), shared by every format family."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Block:
    """A structural unit of a document (paragraph, article body, heading) as a span of `Document.text`."""

    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None  # 1-based: PDF page, or PPTX/ODP slide


@dataclass
class Document:
    """One loaded file: its cleaned text, metadata and the spans of its structural blocks (`rag.load.load_document`).

    `text` is the blocks' texts joined by blank lines; each `Block` points into it by character offsets. Pages are
    1-based; `pages` is None for formats without pages."""

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
        """The document's stable id, derived from `source` only (see `document_id`)."""
        return document_id(self.source)


def document_id(source: str) -> str:
    """A stable id per source, so re-ingesting the same file replaces the same document: a readable slug of the
    file name (at most 48 characters) and 128 bits of sha256 of `source` exactly as given (`rag ingest` passes
    resolved absolute paths, uploads `upload://<principal>/<labels>/<name>`), e.g. `conges-3f9a…` (32 hex digits).

    128 bits make an accidental or searched-for collision infeasible (a 32-bit hash collided by chance in large
    collections, and could be searched for offline); the store still refuses a put whose id is held by a document
    of another source (rag/store/)."""
    name = Path(source).stem.lower()
    slug = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")[:48] or "doc"
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"{slug}-{digest}"


# Inside folders only these are picked up, so that ingesting a tree skips its images, JSON sidecars and archives;


# ----------------------------------------------------------------------------------------- assembling the text


class TextBuilder:
    """Concatenates cleaned block texts with blank lines between them and records each block's span."""

    SEPARATOR = "\n\n"

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self.blocks: list[Block] = []

    def add(self, text: str, heading_path: tuple[str, ...] = (), page: int | None = None) -> None:
        """Append one block: `text` cleaned (control characters, ligatures, spacing); nothing when it is empty after.

        `heading_path` is the headings above the block, outermost first; `page` is 1-based (PDF page, slide)."""
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
        """The text so far: the added blocks joined by `SEPARATOR`; `blocks` hold their character spans in it."""
        return "".join(self._parts)


@dataclass
class Parsed:
    """What a format's loader returns: the assembled text and what it found about pages and the title.

    `title` is empty when the file names none (the caller then falls back to the file name); page numbers are
    1-based, `pages` None for formats without pages."""

    builder: TextBuilder
    title: str = ""
    pages: int | None = None
    pages_without_text: list[int] = field(default_factory=list)
    pages_ocr: list[int] = field(default_factory=list)


class Outline:
    """The heading path of documents whose headings carry levels (HTML, Markdown, DOCX)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        """Enter a heading of `level` (1 = outermost): headings of the same or a deeper level are closed.

        Returns the new path (`path`); an empty `title` closes the deeper headings but adds none."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        title = one_line(title)
        if title:
            self._stack.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        """The titles of the open headings, outermost first."""
        return tuple(title for _, title in self._stack)


# control characters, soft hyphens, zero-width marks, BOMs, non-characters, private-use glyphs (symbol-font bullets)
REMOVED_CHARS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200d\u2060\ufeff\ufffe\uffff\ue000-\uf8ff]")
_LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
              "\ufb06": "st"}  # fmt: skip
_LIGATURE = re.compile("[\ufb00-\ufb06]")
_HSPACE = re.compile(r"[^\S\n]+")


def _clean(text: str) -> str:
    """Canonical block text: NFC, no invisible characters, single spaces, no blank lines (they separate blocks)."""
    text = _LIGATURE.sub(lambda m: _LIGATURES[m.group()], unicodedata.normalize("NFC", text))
    text = REMOVED_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n"))
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def prose(text: str) -> str:
    """The sentences, for language identification: lists and tables of names mislead it (village names read as lb)."""
    sentences = "\n".join(line for line in text.split("\n") if " | " not in line and line.count(" ") >= 5)
    return sentences if len(sentences) >= 200 else text


def one_line(value: object, limit: int = 300) -> str:
    """`str(value)` with its whitespace runs collapsed to single spaces, cut to `limit` characters (ending in "…")."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stem(name: str) -> str:
    """The file name without its folder and last extension (`name` itself when that leaves nothing)."""
    return Path(name).stem or name


def first_line_title(builder: TextBuilder, limit: int = 150) -> str:
    """A fallback title: the document's first line, when it looks like one (a lone "CODE" says less than the name)."""
    if not builder.blocks:
        return ""
    first = builder.text[builder.blocks[0].start : builder.blocks[0].end].split("\n")[0]
    return first if len(first) <= limit and len(first.split()) >= 2 else ""
