"""Lean prompts: only the sentences of the retrieved passages that bear on the question.

Time to first token is set by the part of the prompt that is not cached: the passages. Whole passages also bury the
answer for a small model. So the passages' sentences are ranked as quote mode ranks them (`rank_sentences`), the best
are kept within a token budget, and each passage is shown as its kept sentences in their original order, with "…"
where sentences were left out. A passage with no kept sentence is left out of the prompt, so every `[n]` the model can
write names a passage it saw. Citations still point to the whole passage, and verification checks a sentence against
the whole passage it cites.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from .chunk import sentence_spans
from .lexical import tokenize
from .retrieve import Hit
from .store import ChunkRecord

GAP = " … "
# A sentence scoring below this share of the best sentence's score does not bear on the question: it stays out of
# the prompt even when the budget has room (chosen on XQuAD-en, docs/benchmarks.md "Lean prompts").
RELEVANCE_FLOOR = 0.4


@dataclass(frozen=True)
class RankedSentence:
    """One sentence of a retrieved passage, scored for the question (0..1, see `rank_sentences`)."""

    passage: int  # index of the passage in the hits
    position: int  # index of the sentence in `passage_sentences` of that passage
    text: str
    score: float  # mean of the question-word coverage and the embedding cosine


def passage_sentences(chunk: ChunkRecord) -> list[str]:
    """Sentences of a passage, verbatim except that line breaks inside one become spaces; headings are not quoted,
    nor the pieces the sentence rule cuts a numbered heading into ("Art." and "3 - Plafond hebdomadaire")."""
    text = chunk.text
    spans = [(a, b) for a, b in sentence_spans(text, 0, len(text)) if not _in_heading_line(text, a, b, chunk)]
    sentences = [re.sub(r"\s+", " ", text[a:b]).strip() for a, b in spans]
    return [s for s in sentences if len(s) > 1 and s not in chunk.heading_path]


def _in_heading_line(text: str, start: int, end: int, chunk: ChunkRecord) -> bool:
    """Whether text[start:end] lies within a line of the passage that is one of its headings."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : len(text) if line_end < 0 else line_end]
    return " ".join(line.split()) in chunk.heading_path


def coverage(question: str, text: str, lang: str) -> float:
    """Share of the question's distinct content words that `text` contains."""
    words = set(tokenize(question, lang))
    return len(words & set(tokenize(text, lang))) / len(words) if words else 0.0


def rank_sentences(
    question: str, hits: Sequence[Hit], encode: Callable, *, lang: str | None = None
) -> list[RankedSentence]:
    """Every sentence of the passages, best first (ties: passage rank, then order in the passage).

    Score = mean of lexical coverage (share of the question's content words in the sentence) and cosine similarity of
    the embeddings: coverage finds the exact terms, the embedding finds paraphrases. In a passage written in another
    language than the question's `lang` (None: every passage counts as in it) words cannot match, so the score is the
    cosine alone. `encode` maps n texts to unit vectors, `(n, dim) float32` (the embedder's `encode`).
    """
    candidates = [(i, p, text) for i, hit in enumerate(hits) for p, text in enumerate(passage_sentences(hit.chunk))]
    if not candidates:
        return []
    vectors = encode([question] + [text for *_, text in candidates])
    similarity = vectors[1:] @ vectors[0]
    ranked = [
        RankedSentence(
            i,
            p,
            text,
            0.5 * coverage(question, text, hits[i].chunk.lang) + 0.5 * float(cos)
            if hits[i].in_language(lang)
            else float(cos),
        )
        for (i, p, text), cos in zip(candidates, similarity, strict=True)
    ]
    return sorted(ranked, key=lambda s: (-s.score, s.passage, s.position))


def relevant(ranked: Sequence[RankedSentence]) -> list[RankedSentence]:
    """The sentences of `ranked` (best first, `rank_sentences`) that bear on the question: the best one, and those
    scoring at least `RELEVANCE_FLOOR` of it."""
    floor = RELEVANCE_FLOOR * ranked[0].score if ranked else 0.0
    return [s for s in ranked if s is ranked[0] or 0 < floor <= s.score]


def focus(
    question: str,
    hits: Sequence[Hit],
    encode: Callable,
    budget: int,
    count_tokens: Callable[[str], int],
    *,
    lang: str | None = None,
) -> tuple[list[Hit], list[str]]:
    """The passages worth showing and, for each, the excerpt to show: best sentences first until `budget` tokens.

    A sentence too long for what is left of the budget is skipped for shorter ones; the best sentence is always kept;
    sentences below `RELEVANCE_FLOOR` of the best score are never kept. `budget` and `count_tokens` are in the
    language model's tokens; `lang` is the question's (`rank_sentences`). Returns the kept hits in their original
    order and one excerpt per kept hit.
    """
    chosen: list[RankedSentence] = []
    used = 0
    for sentence in relevant(rank_sentences(question, hits, encode, lang=lang)):
        cost = count_tokens(sentence.text)
        if used + cost <= budget or not chosen:
            chosen.append(sentence)
            used += cost
    kept, excerpts = [], []
    for i, hit in enumerate(hits):
        mine = sorted((s for s in chosen if s.passage == i), key=lambda s: s.position)
        if mine:
            kept.append(hit)
            excerpts.append(excerpt(mine))
    return kept, excerpts


def excerpt(sentences: Sequence[RankedSentence]) -> str:
    """Sentences in passage order; a gap between two that were not neighbours is marked with an ellipsis."""
    parts = [sentences[0].text]
    for previous, sentence in pairwise(sentences):
        parts.append((" " if sentence.position == previous.position + 1 else GAP) + sentence.text)
    return "".join(parts)
