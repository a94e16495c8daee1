"""HTML: the text a browser shows (hidden by attribute, CSS or ARIA: not indexed), headings as the heading path,
table rows as cells joined by " | "."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .document import Outline, Parsed, TextBuilder, one_line
from .legal import source_text
from .text import decode_text

if TYPE_CHECKING:  # lxml and tinycss2 ship no type information: these name the classes for the reader
    import tinycss2.ast
    from lxml import etree

# ----------------------------------------------------------------------------------------------------- HTML

_HTML_SKIP = frozenset({"script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "object",
                        "canvas", "button", "select", "option", "datalist"})  # fmt: skip
_HTML_BLOCKS = frozenset({"p", "div", "li", "pre", "blockquote", "dd", "dt", "figcaption", "caption", "address",
                          "section", "article", "main", "header", "footer", "aside", "ul", "ol", "dl", "table",
                          "thead", "tbody", "tfoot", "form", "fieldset", "legend", "details", "summary", "figure",
                          "hr", "body", "html", "center"})  # fmt: skip
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w-]+)""", re.IGNORECASE)
XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def load_html(data: bytes, name: str) -> Parsed:
    """An HTML page's visible text, one block per paragraph, list item, table row or heading, under its h1-h6 path.

    Content a reader does not see (scripts, styles, navigation, `hidden`, CSS that hides) is dropped; the title is
    <title>, else the first heading. `name` labels errors: raises `LoadError` when the bytes do not decode as text."""
    import lxml.html

    text = XML_DECLARATION.sub("", _decode_html(data, name))  # lxml refuses str input that declares an encoding
    parser = lxml.html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)
    root = lxml.html.document_fromstring(text, parser=parser)
    drop_hidden(root)
    walker = _HtmlWalker()
    walker.walk(root)
    walker.flush()
    title_element = root.find(".//title")
    title = one_line(title_element.text_content()) if title_element is not None else ""
    return Parsed(walker.builder, title or walker.first_heading)


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
    return decode_text(data, name)


# Style rules that hide are matched one pass over the tree each (~0.4 ms per 1,000 elements): a page gets as many rules
# as keep rules x elements under this budget (~1.5 s), so a style-sheet flood cannot eat the parse time limit (5,000
# rules over 15,000 elements took 12 s with a flat cap of 2,000 rules); real sheets have tens to hundreds of hiding
# rules, and a page of 3,000 elements still gets 1,000.
HTML_HIDING_BUDGET = 3_000_000  # rules x elements
_CSS_HIDING = {  # declarations that make an element and its content invisible
    "display": {"none"},
    "visibility": {"hidden", "collapse"},
    "content-visibility": {"hidden"},
    "opacity": {"0", "0.0", "0%"},
    "font-size": {"0", "0px", "0pt", "0em", "0rem", "0%"},
}


def drop_hidden(root: etree._Element) -> None:
    """Remove what a browser does not show, keeping the text that follows it: elements with the `hidden` attribute
    or `aria-hidden="true"`, and those hidden by an inline `style` or a rule of a `<style>` sheet (display: none,
    visibility: hidden, opacity: 0, font-size: 0).

    Style sheets are parsed with tinycss2 and their selectors matched with cssselect (lxml's CSS engine): both
    well-kept libraries, where a hand-written CSS parser would miss comments, escapes and nested @media blocks."""
    import tinycss2
    from cssselect import SelectorError
    from lxml.cssselect import CSSSelector, ExpressionError

    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    hidden = [e for e in elements if (
        e.get("hidden") is not None or (e.get("aria-hidden") or "").strip().lower() == "true"
        or _css_hides(e.get("style") or ""))]  # fmt: skip
    selectors = (
        selector
        for style in root.iter("style")
        for selector in _hiding_selectors(tinycss2.parse_stylesheet(style.text or "", True, True))
    )
    for selector in itertools.islice(selectors, max(1, HTML_HIDING_BUDGET // max(1, len(elements)))):
        try:
            hidden += CSSSelector(selector, translator="html")(root)
        except (SelectorError, ExpressionError):  # pseudo-classes (:hover) and invalid selectors hide nothing
            continue
    for element in hidden:
        if element is not root and element.getparent() is not None:
            element.drop_tree()


def _hiding_selectors(rules: Iterable[tinycss2.ast.Node]) -> Iterator[str]:
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
        self.builder = TextBuilder()
        self.outline = Outline()
        self.first_heading = ""
        self._buffer: list[str] = []

    def walk(self, element: etree._Element, preformatted: bool = False) -> None:
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

    def _heading(self, element: etree._Element, level: int) -> None:
        self.flush()
        text = html_inline_text(element)
        self.builder.add(text, self.outline.enter(level, text))
        self.first_heading = self.first_heading or one_line(text)

    def _container(self, element: etree._Element, is_block: bool, preformatted: bool) -> None:
        if is_block:
            self.flush()
        self._buffer.append(_html_text(element.text, preformatted))
        for child in element:
            self.walk(child, preformatted)
        if is_block:
            self.flush()


def _html_text(text: str | None, preformatted: bool) -> str:
    return (text or "") if preformatted else source_text(text)


def html_inline_text(element: etree._Element) -> str:
    """Visible text of an element, with a space where block-level children would break the line."""
    parts: list[str] = []

    def visit(node: etree._Element) -> None:
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


def _html_row(row: etree._Element) -> str:
    cells = [html_inline_text(cell) for cell in row if isinstance(cell.tag, str) and cell.tag in ("td", "th")]
    return " | ".join(cell for cell in cells if cell)
