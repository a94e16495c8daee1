"""E-mail (EML, RFC 5322 / MIME) with the standard library's `email` package (policy `default`: decoded headers,
charsets and transfer encodings handled by the parser every Python ships, nothing to install).

One EML file is one `Document`, so it stays one entry in the index, one original file and one thing to delete:
- a header block (From, To, Cc, Date, Subject, and the names of the attachments), under the heading path (subject,);
- the body (text/plain preferred, else text/html read like an HTML file), under (subject,);
- each attachment read like an uploaded file of its own (`rag.load.load_bytes`, so every format is supported and a
  forwarded message is read as e-mail too), its blocks under (subject, "Attachment: <file name>", *its own path).
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
from email.message import EmailMessage

from .errors import LoadError
from .load import _one_line, _Parsed, _TextBuilder

MAX_MAIL_DEPTH = 5  # a forward of a forward of ... : real threads rarely nest beyond 3
_SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject")
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


class _TooDeep(Exception):
    """Messages or multiparts nested beyond MAX_MAIL_DEPTH."""


def load_eml(data: bytes, name: str) -> _Parsed:
    """Header block, body and attachments of a message as described in the module docstring.

    Raises LoadError for nesting beyond `MAX_MAIL_DEPTH` or beyond what the parser's recursion can read."""
    builder = _TextBuilder()
    try:
        subject = _add_message(builder, _parse(data), name, (), depth=0)
    except _TooDeep:
        raise LoadError(f"{name}: messages or MIME parts nested more than {MAX_MAIL_DEPTH} levels deep") from None
    except RecursionError:
        raise LoadError(f"{name}: MIME parts nested too deeply to read") from None
    return _Parsed(builder, subject)


def _parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def _add_message(builder: _TextBuilder, message: EmailMessage, name: str, path: tuple[str, ...], *,
                 depth: int) -> str:
    """Add one message's blocks under `path`; returns its subject ("" when it has none)."""
    if depth > MAX_MAIL_DEPTH:
        raise _TooDeep
    subject = _one_line(message.get("Subject", "") or "")
    path = (*path, subject) if subject else path
    parts = list(message.iter_attachments()) if message.is_multipart() else []
    containers = [part for part in parts if part.get_content_maintype() == "multipart"]
    attachments = [part for part in parts if part.get_content_maintype() != "multipart"]
    headers = [f"{header}: {_one_line(message.get(header))}" for header in _SHOWN_HEADERS if message.get(header)]
    names = [_attachment_name(part, index) for index, part in enumerate(attachments, start=1)]
    if names:
        headers.append("Attachments: " + ", ".join(names))
    builder.add("\n".join(headers), path)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        _add_body(builder, body, name, path)
    for part, part_name in zip(attachments, names, strict=True):
        _add_attachment(builder, part, f"{name}/{part_name}", (*path, f"Attachment: {part_name}"), depth=depth)
    for container in containers:  # e.g. the signed content of multipart/signed: body and attachments of its own
        _add_message(builder, container, name, path, depth=depth + 1)
    return subject


def _add_body(builder: _TextBuilder, body: EmailMessage, name: str, path: tuple[str, ...]) -> None:
    from .load import _load_html

    text = _content_text(body)
    if body.get_content_subtype() == "html":
        html = _load_html(text.encode("utf-8"), name)
        for block in html.builder.blocks:
            builder.add(html.builder.text[block.start : block.end], (*path, *block.heading_path))
    else:
        for paragraph in re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n")):
            builder.add(paragraph, path)


def _content_text(part: EmailMessage) -> str:
    """A text part decoded with its declared charset; an unknown or wrong charset falls back to latin-1."""
    try:
        return part.get_content()
    except (LookupError, UnicodeDecodeError):
        return (part.get_payload(decode=True) or b"").decode("latin-1")


def _attachment_name(part: EmailMessage, index: int) -> str:
    filename = part.get_filename()
    if filename:
        return _one_line(filename, 120)
    if part.get_content_type() == "message/rfc822":
        return f"message-{index}.eml"
    return f"attachment-{index}"


def _add_attachment(builder: _TextBuilder, part: EmailMessage, name: str, path: tuple[str, ...], *,
                    depth: int) -> None:
    """An attachment's blocks under `path`; a forwarded message recursively, any other file through `load_bytes`."""
    from .load import detect_format, load_bytes

    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner:
            _add_message(builder, inner[0], name, path, depth=depth + 1)
        return
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data.strip():
        return
    if detect_format(data, name) == "eml":  # an .eml sent as a plain file: its depth counts like a forward's
        _add_message(builder, _parse(data), name, path, depth=depth + 1)
        return
    try:
        document = load_bytes(data, name)
    except LoadError:
        return  # named in the header block; an image or a corrupt file fails no e-mail
    for block in document.blocks:
        builder.add(document.text[block.start : block.end], (*path, *block.heading_path))
