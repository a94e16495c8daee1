"""The entry points: `load_document(path)` / `load_bytes(data, name)` -> `Document`, and the input files of a tree.

The format is decided from the content (rag/load/detect.py), then one parser per format family reads it (text,
PDF, office, HTML, Markdown, legal XML, mail). Every problem with an input file surfaces as one `LoadError` line
naming the file and the reason; no parser exception escapes."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import LoadError, UnsupportedFormatError
from ..language import detect_language
from . import office
from .detect import describe_unsupported, detect_format
from .document import Document, Parsed, one_line, prose, stem
from .docx import load_docx
from .html import load_html
from .legal import load_akoma_ntoso, load_formex
from .mail import load_eml
from .markdown import load_markdown
from .ocr import OcrOptions
from .pdf import load_pdf
from .text import load_text

# Inside folders only these are picked up, so that ingesting a tree skips its images, JSON sidecars and archives;
# a file named explicitly is always tried (and its content decides).
DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt", ".text", ".xml",
                               ".pptx", ".xlsx", ".csv", ".odt", ".ods", ".odp", ".eml"})  # fmt: skip


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
        raise UnsupportedFormatError(f"{name}: unsupported file type ({describe_unsupported(data)})")
    try:
        parsed = load_pdf(data, name, ocr or OcrOptions()) if fmt == "pdf" else _PARSERS[fmt](data, name)
    except (LoadError, MemoryError):  # out of memory is the process's limit, not a property of the file
        raise
    except Exception as exc:  # a parser choking on hostile input must still give one clean LoadError
        raise LoadError(f"{name}: cannot read {fmt} file ({one_line(exc)})") from exc
    text = parsed.builder.text
    if not text:
        hint = (
            " - scanned pages without a text layer, and OCR found no text or is off (ingest.ocr)"
            if fmt == "pdf"
            else ""
        )
        raise LoadError(f"{name}: no extractable text{hint}")
    return Document(
        source=name,
        title=parsed.title or stem(name),
        text=text,
        format=fmt,
        lang=detect_language(prose(text)),
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


def _files_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in DOCUMENT_SUFFIXES]
    return sorted(found)


_PARSERS: dict[str, Callable[[bytes, str], Parsed]] = {  # and "pdf": load_pdf, which also takes OcrOptions
    "docx": load_docx,
    "html": load_html,
    "markdown": load_markdown,
    "text": load_text,
    "akoma-ntoso": load_akoma_ntoso,
    "formex": load_formex,
    "pptx": office.load_pptx,
    "xlsx": office.load_xlsx,
    "csv": office.load_csv,
    "odt": office.load_odt,
    "ods": office.load_ods,
    "odp": office.load_odp,
    "eml": functools.partial(load_eml, read_attachment=load_bytes),  # attachments are read like uploads
}
