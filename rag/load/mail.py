"""E-mail (EML, RFC 5322 / MIME) with the standard library's `email` package (policy `default`: decoded headers,
charsets and transfer encodings handled by the parser every Python ships, nothing to install).

One EML file is one `Document`, so it stays one entry in the index, one original file and one thing to delete:
- a header block (From, To, Cc, Date, Subject, and the names of the attachments), under the heading path (subject,);
- the body (text/plain preferred, else text/html read like an HTML file), under (subject,);
- each attachment read like an uploaded file of its own (`rag.load.load_bytes`, passed in by rag/load/loader.py, so
  every format is supported and a forwarded message is read as e-mail too), its blocks under (subject,
  "Attachment: <file name>", *its own path).
  Attachment blocks carry no page number: the document's original is the e-mail, not the attachment. An attachment
  that cannot be read (an image, a corrupt file) keeps its name in the header block and adds no text.
Messages attached inside messages, and multiparts inside multiparts (a signed message wraps its body and attachments
in one), are followed `MAX_MAIL_DEPTH` levels deep; deeper ones fail the file, as does MIME nesting too deep for the
standard library's recursive parser.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from email.message import EmailMessage, MIMEPart

from ..errors import LoadError
from .detect import detect_format
from .document import Document, Parsed, TextBuilder, one_line
from .html import load_html

MAX_MAIL_DEPTH = 5  # a forward of a forward of ... : real threads rarely nest beyond 3
_SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject")


class _TooDeep(Exception):
    """Messages or multiparts nested beyond MAX_MAIL_DEPTH."""


def load_eml(data: bytes, name: str, *, read_attachment: Callable[[bytes, str], Document]) -> Parsed:
    """Header block, body and attachments of a message as described in the module docstring; `read_attachment`
    reads an attached file given its bytes and name (`rag.load.load_bytes`), raising LoadError when it cannot.

    Raises LoadError for nesting beyond `MAX_MAIL_DEPTH` or beyond what the parser's recursion can read."""
    builder = TextBuilder()
    try:
        subject = _add_message(builder, _parse(data), name, (), depth=0, read=read_attachment)
    except _TooDeep:
        raise LoadError(f"{name}: messages or MIME parts nested more than {MAX_MAIL_DEPTH} levels deep") from None
    except RecursionError:
        raise LoadError(f"{name}: MIME parts nested too deeply to read") from None
    return Parsed(builder, subject)


def _parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def _add_message(
    builder: TextBuilder,
    message: MIMEPart,
    name: str,
    path: tuple[str, ...],
    *,
    depth: int,
    read: Callable[[bytes, str], Document],
) -> str:
    """Add one message's blocks under `path`; returns its subject ("" when it has none)."""
    if depth > MAX_MAIL_DEPTH:
        raise _TooDeep
    subject = one_line(message.get("Subject", "") or "")
    path = (*path, subject) if subject else path
    parts = list(message.iter_attachments()) if message.is_multipart() else []
    containers = [part for part in parts if part.get_content_maintype() == "multipart"]
    attachments = [part for part in parts if part.get_content_maintype() != "multipart"]
    headers = [f"{header}: {one_line(message.get(header))}" for header in _SHOWN_HEADERS if message.get(header)]
    names = [_attachment_name(part, index) for index, part in enumerate(attachments, start=1)]
    if names:
        headers.append("Attachments: " + ", ".join(names))
    builder.add("\n".join(headers), path)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        _add_body(builder, body, name, path)
    for part, part_name in zip(attachments, names, strict=True):
        _add_attachment(
            builder, part, f"{name}/{part_name}", (*path, f"Attachment: {part_name}"), depth=depth, read=read
        )
    for container in containers:  # e.g. the signed content of multipart/signed: body and attachments of its own
        _add_message(builder, container, name, path, depth=depth + 1, read=read)
    return subject


def _add_body(builder: TextBuilder, body: MIMEPart, name: str, path: tuple[str, ...]) -> None:
    text = _content_text(body)
    if body.get_content_subtype() == "html":
        html = load_html(text.encode("utf-8"), name)
        for block in html.builder.blocks:
            builder.add(html.builder.text[block.start : block.end], (*path, *block.heading_path))
    else:
        for paragraph in re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n")):
            builder.add(paragraph, path)


def _content_text(part: MIMEPart) -> str:
    """A text part decoded with its declared charset; an unknown or wrong charset falls back to latin-1."""
    try:
        return part.get_content()
    except (LookupError, UnicodeDecodeError):
        payload = part.get_payload(decode=True)  # bytes, or None for a part without content
        return payload.decode("latin-1") if isinstance(payload, bytes) else ""


def _attachment_name(part: MIMEPart, index: int) -> str:
    filename = part.get_filename()
    if filename:
        return one_line(filename, 120)
    if part.get_content_type() == "message/rfc822":
        return f"message-{index}.eml"
    return f"attachment-{index}"


def _add_attachment(
    builder: TextBuilder,
    part: MIMEPart,
    name: str,
    path: tuple[str, ...],
    *,
    depth: int,
    read: Callable[[bytes, str], Document],
) -> None:
    """An attachment's blocks under `path`; a forwarded message recursively, any other file through `read`."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], MIMEPart):  # always so under policy.default
            _add_message(builder, inner[0], name, path, depth=depth + 1, read=read)
        return
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data.strip():
        return
    if detect_format(data, name) == "eml":  # an .eml sent as a plain file: its depth counts like a forward's
        _add_message(builder, _parse(data), name, path, depth=depth + 1, read=read)
        return
    try:
        document = read(data, name)
    except LoadError:
        return  # named in the header block; an image or a corrupt file fails no e-mail
    for block in document.blocks:
        builder.add(document.text[block.start : block.end], (*path, *block.heading_path))
