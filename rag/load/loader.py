"""The entry points: `load_document(path)` / `load_bytes(data, name)` -> `Document`, and the input files of a tree.

The format is decided from the content (rag/load/detect.py), then one parser per format family reads it (text,
PDF, office, HTML, Markdown, legal XML, mail). Every problem with an input file surfaces as one `LoadError` line
naming the file and the reason; no parser exception escapes."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
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
    """Read one file and extract it like an upload of the same bytes. Only a regular file is read: the file is
    opened without blocking (a FIFO put in its place after `input_files` looked would otherwise wait for a writer)
    and refused with a LoadError when it is not a regular file."""
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            kind = _special_kind(os.fstat(handle).st_mode)
            if kind is not None:
                raise LoadError(f"{path}: {_not_regular(kind)}")
            with open(handle, "rb", closefd=False) as file:
                data = file.read()
        finally:
            os.close(handle)
    except OSError as exc:
        raise LoadError(f"{path}: {_unreachable(path, exc)}") from None
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
            " - scanned pages without a text layer, and OCR found no text, is off (ingest.ocr) or ran out of "
            "time (ingest.ocr_time_share)"
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


@dataclass
class InputFiles:
    """What `input_files` found: the regular files to read, and the paths it will not read, each as
    (path as given or found, reason naming it)."""

    files: list[Path] = field(default_factory=list)  # regular files (or symlinks to one), in order, each once
    skipped: list[tuple[str, str]] = field(default_factory=list)  # FIFOs, sockets, devices: never opened
    broken: list[tuple[str, str]] = field(default_factory=list)  # dangling or looping symlinks, unreachable entries


def input_files(paths: list[Path]) -> InputFiles:
    """Each given file, and the document files inside each given folder (recursively, sorted); each file once.

    Inside folders, hidden files and folders (".git", ".DS_Store") and non-document suffixes are left out, and
    symlinked folders are not followed, so a link cycle cannot make ingestion loop. Of the rest, given or found, a
    path that is not a regular file (a FIFO, a socket, a device, or a symlink to one) is `skipped` without being
    opened (reading a FIFO waits for a writer, a device may never end), and a symlink that leads nowhere (dangling,
    looping) is `broken`, both named by their own path. Raises LoadError for a given path that does not exist."""
    found = InputFiles()
    seen: set[Path] = set()  # regular files by their resolved path, the others by their own absolute path
    for path in map(Path, paths):
        if not os.path.lexists(path):
            raise LoadError(f"{path}: no such file or directory")
        for file in _files_under(path) if path.is_dir() else [path]:
            try:
                kind = _special_kind(file.stat().st_mode)
            except OSError as exc:
                _add_once(found.broken, seen, file, _unreachable(file, exc))
                continue
            if kind is not None:
                _add_once(found.skipped, seen, file, _not_regular(kind))
            elif (key := file.resolve()) not in seen:
                seen.add(key)
                found.files.append(file)
    return found


def _add_once(entries: list[tuple[str, str]], seen: set[Path], file: Path, reason: str) -> None:
    """Append (file, "file: reason") unless this path (absolute, links not followed) was met already."""
    key = Path(os.path.abspath(file))
    if key not in seen:
        seen.add(key)
        entries.append((str(file), f"{file}: {reason}"))


def _files_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in DOCUMENT_SUFFIXES]
    return sorted(found)


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))  # fmt: skip


def _special_kind(mode: int) -> str | None:
    """What a file of this `st_mode` is when it is not a regular file ("a FIFO"), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "of another kind")


def _not_regular(kind: str) -> str:
    return f"not a regular file ({kind}), not read"


def _unreachable(path: Path, exc: OSError) -> str:
    """Why `path` (whose own entry exists) cannot be reached: a symlink loop, a dangling symlink, or the OS error."""
    if path.is_symlink():
        if exc.errno == errno.ELOOP:
            return "symbolic link loop, not read"
        if exc.errno == errno.ENOENT:
            return f"dangling symbolic link (to {os.readlink(path)}), not read"
    return f"cannot read file ({exc.strerror or exc})"


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
