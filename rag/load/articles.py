"""Articles of legal texts set in prose (PDF, plain text): "Art. 5bis.", "Article 12 - Subject", and the book,
title, chapter and section headings above them, tracked as the heading path."""

from __future__ import annotations

import re

ARTICLE_HEAD = re.compile(  # "Art. 1er.", "Art. 5bis.", "Art. L. 121-1.", "Article 12", "Article unique."
    r"^«?\s?(Art\.|Article)\s?((?:[LRAD]\.\s?)?(?:\d+(?:[-.]\d+)*|[IVXLC]+)(?:er|re)?"
    r"(?:\s?(?:bis|ter|quater|quinquies|sexies|septies|octies|nonies|decies))?|unique|premier)"
    r"(?=\s*(?:\.|$|[-\u2013\u2014]\s))"
)


_CODE_PREFIX = re.compile(r"^([LRAD])\.\s?")  # codes number "Art. L. 121-1"; "L.121-1" is the same article


_ARTICLE_SUBJECT = re.compile(r"\s*[-\u2013\u2014]\s+(.*?)[\s.]*$")


SECTION_HEAD = re.compile(r"^(Livre|Titre|Chapitre|Section|Sous-section|Partie|Annexe)\s+([IVXLC\d]+|premier)\b")


def current_article(text: str, article: tuple[str, ...]) -> tuple[str, ...]:
    """The article a paragraph of unstructured text (PDF, plain text) belongs to: its own heading, or the last
    one, until a chapter starts."""
    match = ARTICLE_HEAD.match(text)
    if match:
        number = _CODE_PREFIX.sub(r"\1. ", match.group(2))
        label = f"{match.group(1)} {number}"
        first_line = text.split("\n", 1)[0]
        subject = _ARTICLE_SUBJECT.match(first_line, match.end())
        if subject and len(first_line) <= 100:  # "Article 2 - Passwords" on a line of its own
            label = f"{label} - {subject.group(1)}"
        return (label,)
    if SECTION_HEAD.match(text):
        return ()
    return article
