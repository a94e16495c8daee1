"""Legal XML: Akoma Ntoso (Legilux, many parliaments) and Formex (EU Publications Office), parsed without entity
expansion or network access, articles and their hierarchy as the heading path."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from lxml import etree

from ..errors import LoadError
from .document import Parsed, TextBuilder, one_line

# --------------------------------------------------------------------------------------------------- XML

# No entity expansion, no DTD or network fetches (XXE, billion laughs); comments and processing instructions
# (Formex page marks) carry no text.
SAFE_XML = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "remove_comments": True,
    "remove_pis": True,
}


def parse_xml(data: bytes, name: str) -> etree._Element:
    """The root element of an XML file, parsed without network access, DTDs or entity expansion (`SAFE_XML`).

    Raises `LoadError` naming `name` when the XML is not well-formed."""
    try:
        return etree.fromstring(data, etree.XMLParser(**SAFE_XML))
    except etree.XMLSyntaxError as exc:
        raise LoadError(f"{name}: corrupt XML ({one_line(exc)})") from None


@dataclass(frozen=True)
class _FlattenRules:
    """How to turn an XML subtree into block text for one vocabulary."""

    skip: frozenset[str]  # subtrees without reading text: notes, deleted text, metadata
    lines: frozenset[str]  # start and end a line
    spaced: frozenset[str] = frozenset()  # numbers followed by their text: "(a)" + "text" -> "(a) text"
    cells: frozenset[str] = frozenset()  # table cells, joined by " | "
    foreign: Callable[[str | None], bool] = lambda namespace: False  # elements of other vocabularies to skip


def _flatten(element: etree._Element, rules: _FlattenRules) -> str:
    parts: list[str] = []
    _flatten_into(element, rules, parts)
    return "".join(parts)


def _flatten_into(element: etree._Element, rules: _FlattenRules, parts: list[str]) -> None:
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
    parts.append(source_text(element.text))
    for child in element:
        _flatten_into(child, rules, parts)
        parts.append(source_text(child.tail))
    parts.append("\n" if name in rules.lines else " " if name in rules.spaced else "")


def source_text(text: str | None) -> str:
    """Line breaks in markup source are layout, not content: only structural elements start lines."""
    return text.replace("\n", " ") if text else ""


def _inline(element: etree._Element | None, rules: _FlattenRules) -> str:
    return one_line(_flatten(element, rules)) if element is not None else ""


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


def load_akoma_ntoso(data: bytes, name: str) -> Parsed:
    """An Akoma Ntoso (OASIS LegalDocML) act: one block per unit of text (numbered paragraphs keep their number),
    under the path of the hierarchy elements (chapters, sections, articles...) above it, each also a short heading
    block; repealed text and editorial notes are left out.

    Raises `LoadError` when the XML is not well-formed."""
    root = parse_xml(data, name)
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
    builder = TextBuilder()
    for text, path in _akn_units(root, (), rules):
        builder.add(text, path)
    title = _inline(root.find(".//{*}preface//{*}longTitle"), rules) or _inline(root.find(".//{*}docTitle"), rules)
    return Parsed(builder, title)


def _akn_units(
    element: etree._Element, path: tuple[str, ...], rules: _FlattenRules
) -> Iterator[tuple[str, tuple[str, ...]]]:
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


def _akn_label(element: etree._Element, rules: _FlattenRules) -> str:
    number = _akn_number(element, rules).rstrip(" .:-\u2013")
    heading = _inline(element.find("{*}heading"), rules).strip(" -\u2013")
    return " - ".join(part for part in (number, heading) if part)


def _akn_number(element: etree._Element, rules: _FlattenRules) -> str:
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


def load_formex(data: bytes, name: str) -> Parsed:
    """A Formex 4 act (the EU Publications Office's XML): one block per recital or paragraph, under the path of the
    divisions and articles above it; the title is the act's BIB.DATA/TITLE/TI.

    Raises `LoadError` when the XML is not well-formed."""
    root = parse_xml(data, name)
    for mark in root.iter("QUOT.START", "QUOT.END"):  # quotes are empty elements carrying the character's code
        mark.text = _quote_char(mark.get("CODE", ""))
    builder = TextBuilder()
    title_element = root.find(".//BIB.DATA/TITLE/TI")
    title = _inline(title_element, _FORMEX_RULES)
    builder.add(title)
    recital = _RECITAL.get((root.findtext(".//LG.DOC") or "").strip().upper(), "Recital")
    for body in root.iter(*_FORMEX_BODIES):
        if not any(ancestor.tag in _FORMEX_BODIES for ancestor in body.iterancestors()):
            for text, path in _formex_units(body, (), recital):
                builder.add(text, path)
    return Parsed(builder, title)


def _quote_char(code: str) -> str:
    try:
        return chr(int(code, 16))
    except ValueError:
        return '"'


def _formex_units(
    element: etree._Element, path: tuple[str, ...], recital: str
) -> Iterator[tuple[str, tuple[str, ...]]]:
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
