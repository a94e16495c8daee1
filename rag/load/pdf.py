"""PDF: pages read by PDFium in reading order (rag/load/pdf_layout.py), pages without text read by OCR
(rag/load/ocr.py), then running heads and footers dropped, lines joined into paragraphs (hyphenation undone with
the document's own vocabulary) and articles of legal texts tracked as the heading path."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator

from .articles import ARTICLE_HEAD, SECTION_HEAD, current_article
from .document import REMOVED_CHARS, Parsed, TextBuilder, first_line_title, one_line
from .ocr import OcrOptions, ocr_pages
from .pdf_layout import pdf_page_texts

# ------------------------------------------------------------------------------------------------------ PDF

PDFIUM_LOCK = threading.Lock()  # PDFium is not thread-safe; the server may load uploads concurrently

_PARAGRAPH_START = re.compile(  # "(2) Le", "3°", "b) ", "- ", "• ", and article or chapter headings
    r"^(\(\d+[a-z]*\)\s+[A-ZÀ-Ý«\"]|\d+°|[a-z]\)\s|[-\u2013\u2022\u25aa]\s|"
    + f"{ARTICLE_HEAD.pattern[1:]}|{SECTION_HEAD.pattern[1:]})"
)
_SENTENCE_END = (".", ":", ";", "!", "?", "»", '"', ")")
_DOT_LEADER = re.compile(r"(?:\s?\.){4,}")
_ALNUM = re.compile(r"[^\W_]")
_DIGITS = re.compile(r"\d+")
_PDF_REMOVED_CHARS = re.compile(REMOVED_CHARS.pattern.replace("\ufffe", ""))  # keep PDFium's soft-hyphen marks
_WORD_END = re.compile(r"(\w+)[-\ufffe]$")
_WORD_START = re.compile(r"^(\w+(?:-\w+)*)")  # with the rest of a compound: "c'est-|à-dire"
_SOFT_HYPHEN = re.compile(r"(\w+)\ufffe(\w+(?:-\w+)*)")
_WORDS = re.compile(r"\w+(?:-\w+)*")
_DETACHED_WORDS = frozenset({"und", "oder", "bzw", "sowie", "bis", "et", "ou", "and", "or", "to"})  # "Lohn- und"


def load_pdf(data: bytes, name: str, ocr: OcrOptions) -> Parsed:
    """A PDF's text layer (pdfium), in reading order, as paragraphs with their 1-based page and article path.

    Running headers and footers are dropped, hyphenated line ends rejoined. Pages without text are read by OCR
    when `ocr.enabled` (at most `ocr.max_pages`, within `ocr.budget_s` from the start of this call); those still
    blank are listed in `pages_without_text`. The title is the metadata title, else the first line. Raises
    `LoadError` for an encrypted, corrupt or truncated PDF."""
    started = ocr.clock()
    with PDFIUM_LOCK:
        pages, metadata_title = pdf_page_texts(data, name)
        page_lines = [_pdf_lines(text) for text in pages]
        blank = [number for number, lines in enumerate(page_lines, start=1) if not lines]
        texts = ["\n".join(lines) for lines in page_lines if lines]
        read = ocr_pages(data, blank[: ocr.max_pages], options=ocr, texts=texts, started=started) if ocr.enabled else {}
    for number, text in read.items():
        pages[number - 1], page_lines[number - 1] = text, _pdf_lines(text)
    running = _running_lines(page_lines)
    vocabulary = {word for text in pages for word in _WORDS.findall(text.lower())}
    builder = TextBuilder()
    article: tuple[str, ...] = ()
    for number, lines in enumerate(page_lines, start=1):
        body = [line for i, line in enumerate(lines) if not _is_running(line, i, len(lines), running)]
        for paragraph in _pdf_paragraphs(body):
            text = _join_pdf_lines(paragraph, vocabulary)
            article = current_article(text, article)
            builder.add(text, article, number)
    title = _pdf_title(metadata_title) or first_line_title(builder)
    still_blank = [number for number, lines in enumerate(page_lines, start=1) if not lines]
    ocr_read = sorted(number for number in read if page_lines[number - 1])
    return Parsed(builder, title, pages=len(pages), pages_without_text=still_blank, pages_ocr=ocr_read)


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
        counts.update({_line_key(line) for line in edges if not ARTICLE_HEAD.match(line)})  # "Art. 5." is text
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


def _pdf_title(title: str) -> str:
    """The metadata title unless it is a placeholder ("CODE", "untitled", "Microsoft Word - x.doc")."""
    title = one_line(re.sub(r"^Microsoft Word - ", "", title or ""))
    meaningful = len(title.split()) >= 2 and len(_ALNUM.findall(title)) >= 8
    return title if meaningful and not re.search(r"\.(docx?|pdf)$", title, re.IGNORECASE) else ""
