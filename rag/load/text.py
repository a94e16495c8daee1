"""Plain text: decoding per byte run (UTF-8, UTF-16 with BOM, stray Windows-1252 bytes repaired in place) and
paragraphs split at blank lines."""

from __future__ import annotations

import codecs
import re

from ..errors import LoadError
from .articles import current_article
from .document import Parsed, TextBuilder, first_line_title


def decode(data: bytes, final: bool = True) -> str | None:
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


_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def load_text(data: bytes, name: str) -> Parsed:
    """Plain text: one block per paragraph (blank-line separated), under the article heading it follows, if any.

    Raises `LoadError` when the bytes are not readable as text."""
    builder = TextBuilder()
    article: tuple[str, ...] = ()
    text = decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n")
    for paragraph in _BLANK_LINE.split(text):
        article = current_article(paragraph.strip(), article)
        builder.add(paragraph, article)
    return Parsed(builder, first_line_title(builder))


def decode_text(data: bytes, name: str) -> str:
    """The text of `data` as `decode` reads it; raises `LoadError` naming `name` when it is undecodable or binary."""
    text = decode(data)
    if text is None or not looks_textual(text):
        raise LoadError(f"{name}: not readable as text (undecodable or binary bytes)")
    return text


_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def looks_textual(text: str) -> bool:
    """Text has almost no control characters; binary junk decoded as cp1252 is full of them."""
    return len(_CONTROL_CHARS.findall(text)) <= len(text) * 0.01
