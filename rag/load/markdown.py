"""Markdown (markdown-it-py tokens): headings as the heading path, front matter dropped, inline HTML read as text
a browser would show."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lxml import etree

from .document import Outline, Parsed, TextBuilder, first_line_title, one_line
from .html import drop_hidden, html_inline_text
from .text import decode_text

if TYPE_CHECKING:
    from markdown_it.token import Token

# ------------------------------------------------------------------------------------------ Markdown and text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(---|\.\.\.)[ \t]*\n", re.DOTALL)


def load_markdown(data: bytes, name: str) -> Parsed:
    """A CommonMark document (tables enabled; YAML front matter dropped): one block per paragraph, list item, table
    row or code block under its heading path; the title is the first heading, else the first line.

    Raises `LoadError` when the bytes do not decode as text."""
    from markdown_it import MarkdownIt

    text = _FRONT_MATTER.sub("", decode_text(data, name))
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    builder, outline = TextBuilder(), Outline()
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
            first_heading = first_heading or one_line(heading)
        elif token.type == "inline" and row is not None:
            row.append(one_line(_markdown_inline(token)))
        elif token.type == "inline":
            builder.add(_markdown_inline(token), outline.path)
        elif token.type in ("fence", "code_block"):
            builder.add(token.content, outline.path)
        elif token.type == "html_block":
            builder.add(_html_fragment_text(token.content), outline.path)
    return Parsed(builder, first_heading or first_line_title(builder))


def _markdown_inline(token: Token) -> str:
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
        drop_hidden(fragment)
        return html_inline_text(fragment)
    except etree.ParserError:
        return ""
