"""Split a `Document` into `Chunk`s that follow its structure and fit the embedder's window.

Chunks never cross a heading/article boundary, are packed from whole blocks where possible, fall back to sentences
and then to words for oversized blocks, and repeat up to `overlap_tokens` of the previous chunk. Sizes are counted
with the embedder's own tokenizer on exactly the text that is embedded (heading line included), so nothing is lost to
truncation; `Chunker.split` re-checks every chunk and shrinks any that would not fit. A heading path may take at
most half the budget: longer ones (Markdown allows any heading length, Akoma Ntoso nests labels without limit) are
shortened, their longest labels cut first and then their outermost levels dropped (`Chunker.fit_heading`).
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .load import Block, Document

TokenCounter = Callable[[Sequence[str]], list[int]]
_Splitter = Callable[[str, int, int], list[tuple[int, int]]]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[\"'«(\[]?[A-ZÀ-ÖØ-Þ0-9])|\n+")
# Abbreviations that refer to a numbered part ("Art. 3", "Abs. 2", "Nr. 5", "p. 12", "al. 1er"): the period after
# one, before a number, ends no sentence. Legal texts in fr/de/en/lb cite this way on nearly every line.
_NUMBERED_ABBREVIATION = re.compile(
    r"(?:^|[^\w.])(?:art|arts|abs|nr|no|nos|n|s|p|pp|ziff|lit|al|vol|chap|kap|para|rn|rz|bd|fig|tab|anm|sec)\.$",
    re.IGNORECASE,
)
# A German or Luxembourgish date writes its day as an ordinal: "am 1. Juli 2024", "den 3. Mäerz".
_ORDINAL_DAY = re.compile(r"(?:^|\D)(?:[1-9]|[12]\d|3[01])\.$")
_MONTH = re.compile(
    r"(?:Januar|Jänner|Februar|März|Mäerz|April|Abrëll|Mai|Mee|Juni|Juli|August|September|Oktober|November|"
    r"Dezember)\b"
)
_WORD = re.compile(r"\S+")
HEADING_SHARE = 2  # a heading line takes at most 1/HEADING_SHARE of the chunk budget
_MIN_LABEL_CHARS = 24  # labels are cut down to this before levels are dropped


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: `text` is `document.text[start:end]` (character offsets), `ordinal` its 0-based
    position among the document's chunks, `page` the 1-based page it starts on (None for formats without pages),
    `heading_path` the (possibly shortened) headings above it, outermost first."""

    doc_id: str
    ordinal: int
    text: str  # == document.text[start:end]
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...]
    lang: str
    title: str

    @property
    def embed_text(self) -> str:
        """The text the embedder and BM25 see: the heading line, then the passage (see `embed_text`)."""
        return embed_text(self.heading_path, self.text)

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of `embed_text` in UTF-8: identical passages share a stored vector."""
        return hashlib.sha256(self.embed_text.encode()).hexdigest()


def embed_text(heading_path: Sequence[str], text: str) -> str:
    """What the embedder and BM25 see: the heading line gives a passage its context."""
    heading = " > ".join(heading_path)
    return f"{heading}\n{text}" if heading else text


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int


class Chunker:
    """Splits documents into chunks of at most `max_tokens` tokens, heading line included.

    Parameters
    ----------
    count_tokens : TokenCounter
        The embedder's token count of each text in a batch (special tokens excluded).
    max_tokens : int
        Budget of one chunk's `embed_text`, in the embedder's tokens.
    overlap_tokens : int
        Up to this many tokens of whole pieces at the end of a chunk start the next one.

    Raises ValueError when `overlap_tokens >= max_tokens`.
    """

    def __init__(self, count_tokens: TokenCounter, max_tokens: int, overlap_tokens: int):
        if overlap_tokens >= max_tokens:
            raise ValueError(f"overlap_tokens ({overlap_tokens}) must be smaller than max_tokens ({max_tokens})")
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens

    def split(self, doc: Document) -> list[Chunk]:
        """The document's chunks in order; each `embed_text` fits `max_tokens`, each `text` slices `doc.text`."""
        chunks: list[Chunk] = []
        fitted: dict[tuple[str, ...], tuple[str, ...]] = {}  # sections often repeat a path (one per PDF page)
        for full_path, blocks in _sections(doc):
            if full_path not in fitted:
                fitted[full_path] = self.fit_heading(full_path)
            heading_path = fitted[full_path]
            budget = self.max_tokens - self._heading_tokens(heading_path)
            pieces = self._pieces(doc.text, blocks, budget)
            for start, end in self._pack(pieces, budget):
                chunks.append(self._chunk(doc, len(chunks), start, end, heading_path, blocks))
        return self._enforce_budget(doc, chunks)

    def fit_heading(self, heading_path: tuple[str, ...]) -> tuple[str, ...]:
        """`heading_path` shortened until its line takes at most 1/HEADING_SHARE of `max_tokens`.

        Labels longer than a common cap are cut to it (ending in "…"), the cap being the largest that fits; when not
        even labels of `_MIN_LABEL_CHARS` fit, the outermost levels are dropped as well, keeping the innermost (most
        specific) ones. Both searches bisect, so a path costs O(log(characters) + log(levels)) token counts. May return
        () when not even one short label fits.
        """
        limit = self.max_tokens // HEADING_SHARE

        def fits(path: tuple[str, ...]) -> bool:
            return self._heading_tokens(path) <= limit

        if fits(heading_path):
            return heading_path
        caps = range(_MIN_LABEL_CHARS, max(map(len, heading_path)) + 1)
        too_long = bisect.bisect_left(caps, True, key=lambda cap: not fits(_cut_labels(heading_path, cap)))
        if too_long > 0:  # caps[too_long - 1] was counted and fits
            return _cut_labels(heading_path, caps[too_long - 1])
        short = _cut_labels(heading_path, _MIN_LABEL_CHARS)
        return short[bisect.bisect_left(range(len(short) + 1), True, key=lambda first: fits(short[first:])) :]

    def _heading_tokens(self, heading_path: tuple[str, ...]) -> int:
        """Tokens of the heading line and its line break (0 without headings)."""
        if not heading_path:
            return 0
        return self.count_tokens([" > ".join(heading_path)])[0] + 1

    def _pieces(self, text: str, blocks: list[Block], budget: int) -> list[_Piece]:
        """Whole blocks where they fit, else their sentences, else word windows."""
        spans = [(b.start, b.end) for b in blocks]
        counts = self.count_tokens([text[s:e] for s, e in spans])
        pieces: list[_Piece] = []
        for (start, end), tokens in zip(spans, counts, strict=True):
            if tokens <= budget:
                pieces.append(_Piece(start, end, tokens))
            else:
                pieces.extend(self._split_span(text, start, end, budget, sentence_spans))
        return pieces

    def _split_span(self, text: str, start: int, end: int, budget: int, splitter: _Splitter) -> list[_Piece]:
        """`text[start:end]` cut by `splitter`, each part recut more finely (sentences, words, characters) until it
        fits `budget` tokens."""
        spans = splitter(text, start, end)
        counts = self.count_tokens([text[s:e] for s, e in spans])
        pieces: list[_Piece] = []
        for (s, e), tokens in zip(spans, counts, strict=True):
            if tokens <= budget:
                pieces.append(_Piece(s, e, tokens))
            elif splitter is sentence_spans:
                pieces.extend(self._split_span(text, s, e, budget, _word_spans))
            else:  # a single "word" longer than the budget (e.g. a URL or table row without spaces)
                pieces.extend(self._split_characters(text, s, e, budget))
        return _merge_words(pieces, budget) if splitter is _word_spans else pieces

    def _split_characters(self, text: str, start: int, end: int, budget: int) -> list[_Piece]:
        """Fixed windows of `2 * budget` characters, for a "word" longer than the budget."""
        step = max(1, budget * 2)  # a token covers at least one character; two keeps windows under budget
        pieces = []
        for s in range(start, end, step):
            e = min(end, s + step)
            pieces.append(_Piece(s, e, self.count_tokens([text[s:e]])[0]))
        return pieces

    def _pack(self, pieces: list[_Piece], budget: int) -> list[tuple[int, int]]:
        """Greedy packing of consecutive pieces; each new chunk starts with the tail of the previous one."""
        windows: list[tuple[int, int]] = []
        i = 0
        while i < len(pieces):
            j, used = i, 0
            while j < len(pieces) and used + pieces[j].tokens <= budget:
                used += pieces[j].tokens
                j += 1
            j = max(j, i + 1)
            windows.append((pieces[i].start, pieces[j - 1].end))
            if j >= len(pieces):
                break
            i = self._overlap_start(pieces, i, j)
        return windows

    def _overlap_start(self, pieces: list[_Piece], first: int, stop: int) -> int:
        """Index of the first piece of the next chunk: the last pieces before `stop` that fit `overlap_tokens`,
        never `first` itself (each chunk advances)."""
        back, used = stop, 0
        while back - 1 > first and used + pieces[back - 1].tokens <= self.overlap_tokens:
            used += pieces[back - 1].tokens
            back -= 1
        return back

    def _chunk(
        self, doc: Document, ordinal: int, start: int, end: int, heading_path: tuple[str, ...], blocks: list[Block]
    ) -> Chunk:
        """The chunk of `doc.text[start:end]`, on the page of the block it starts in."""
        page = next((b.page for b in blocks if b.start <= start < b.end or start < b.start), None)
        return Chunk(doc.doc_id, ordinal, doc.text[start:end], start, end, page, heading_path, doc.lang, doc.title)

    def _enforce_budget(self, doc: Document, chunks: list[Chunk]) -> list[Chunk]:
        """Token counts of joined pieces can exceed their sum by a few; shrink the rare chunk that does."""
        counts = self.count_tokens([c.embed_text for c in chunks])
        fixed: list[Chunk] = []
        for chunk, tokens in zip(chunks, counts, strict=True):
            if tokens <= self.max_tokens or len(chunk.text) < 2:  # a single character cannot be halved further
                fixed.append(chunk)
                continue
            halves = _halve(chunk.text)
            for offset_start, offset_end in halves:
                part = replace(
                    chunk,
                    text=chunk.text[offset_start:offset_end],
                    start=chunk.start + offset_start,
                    end=chunk.start + offset_end,
                )
                fixed.extend(self._enforce_budget(doc, [part]))
        return [replace(c, ordinal=i) for i, c in enumerate(fixed)]


def _sections(doc: Document) -> list[tuple[tuple[str, ...], list[Block]]]:
    """Consecutive blocks that share a heading path; chunks never span two of them."""
    blocks = doc.blocks or [Block(0, len(doc.text))]
    sections: list[tuple[tuple[str, ...], list[Block]]] = []
    for block in blocks:
        if block.end <= block.start:
            continue
        if sections and sections[-1][0] == block.heading_path and sections[-1][1][-1].page == block.page:
            sections[-1][1].append(block)
        else:
            sections.append((block.heading_path, [block]))
    return sections


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of `text[start:end]`, without the whitespace between them.

    A sentence ends at `.`, `!`, `?`, `;` or `:` followed by whitespace and an upper-case letter, a digit or an
    opening quote or bracket, and at every line break; not at the period of an abbreviation of a numbered part
    followed by its number ("Art. 3", "Abs. 2", "p. 12"), nor at a day's ordinal before its month ("am 1. Juli")."""
    spans, cursor = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        if _no_sentence_end(text, match, start):
            continue
        if match.start() > cursor:
            spans.append((cursor, match.start()))
        cursor = match.end()
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _no_sentence_end(text: str, match: re.Match[str], start: int) -> bool:
    """Whether the `_SENTENCE_END` match (not a line break) is inside a reference or a date: after "Art.", "Abs.",
    "p." ... before a number, or after a day's ordinal before a month ("am 1. Juli")."""
    if match.group()[0] == "\n":
        return False
    before, after = text[max(start, match.start() - 6) : match.start()], text[match.end() : match.end() + 10]
    if after[:1].isdigit():
        return _NUMBERED_ABBREVIATION.search(before) is not None
    return _ORDINAL_DAY.search(before) is not None and _MONTH.match(after) is not None


def _word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) offsets of the whitespace-separated words of `text[start:end]`."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def _merge_words(pieces: list[_Piece], budget: int) -> list[_Piece]:
    """Words are too fine to pack across: group them into windows close to the budget."""
    merged: list[_Piece] = []
    for piece in pieces:
        if merged and merged[-1].tokens + piece.tokens <= budget:
            last = merged[-1]
            merged[-1] = _Piece(last.start, piece.end, last.tokens + piece.tokens)
        else:
            merged.append(piece)
    return merged


def _cut_labels(path: tuple[str, ...], cap: int) -> tuple[str, ...]:
    """Each label longer than `cap` characters cut to `cap`, its last one an ellipsis."""
    return tuple(label if len(label) <= cap else label[: cap - 1].rstrip() + "…" for label in path)


def _halve(text: str) -> list[tuple[int, int]]:
    """Two (start, end) spans cutting `text` at the last space before its middle (at the middle if there is none)."""
    middle = len(text) // 2
    cut = text.rfind(" ", 0, middle)
    cut = middle if cut <= 0 else cut
    rest = cut + 1 if text[cut : cut + 1] == " " else cut
    return [(0, cut), (rest, len(text))]
