"""BM25 over language-aware tokens (Snowball stemming and stop words per language), backed by bm25s.

Chunks are tokenised once at ingestion with their document's language and the tokens are stored, so the BM25 matrix
can be rebuilt from the metadata store at any time without re-reading files.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s import stopwords as bm25_stopwords

from .files import fsync

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_GROUP = 64  # scores per group in top_k

SNOWBALL = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "lb": "german",
    "nl": "dutch",
    "it": "italian",
    "es": "spanish",
    "pt": "portuguese",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "ru": "russian",
}
_STOPWORDS = {
    "en": bm25_stopwords.STOPWORDS_EN,
    "fr": bm25_stopwords.STOPWORDS_FRENCH,
    "de": bm25_stopwords.STOPWORDS_GERMAN,
    "nl": bm25_stopwords.STOPWORDS_DUTCH,
    "it": bm25_stopwords.STOPWORDS_ITALIAN,
    "es": bm25_stopwords.STOPWORDS_SPANISH,
}


@cache
def _stemmer(lang: str) -> Stemmer.Stemmer | None:
    """PyStemmer's Snowball stemmer for `lang` (ISO 639-1), or None for a language Snowball lacks."""
    algorithm = SNOWBALL.get(lang)
    return Stemmer.Stemmer(algorithm) if algorithm else None


@cache
def _stopwords(lang: str) -> frozenset[str]:
    """bm25s's stop word list for `lang`, empty for the languages it has none for."""
    return frozenset(_STOPWORDS.get(lang, ()))


# The languages the product serves: a query's words are also tokenised as each of them would tokenise them (see
# `query_tokens`), so a word matches a document whatever language the query was detected as.
SERVED_LANGUAGES: tuple[str, ...] = ("fr", "de", "en", "lb")


def tokenize(text: str, lang: str) -> list[str]:
    """Lower-cased word tokens without the language's stop words, stemmed with its Snowball stemmer.

    A token is a run of letters and digits (`_` separates); `lang` is ISO 639-1 ("lb" is stemmed as German, "und" and
    other languages without a stemmer are only lower-cased). Stemmers: Snowball (snowballstem.org) via PyStemmer.
    """
    stop = _stopwords(lang)
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    stemmer = _stemmer(lang)
    return stemmer.stemWords(words) if stemmer else words


@cache
def any_stopwords() -> frozenset[str]:
    """Stop words of every language with a list: a word that is one in any language is never a cross-language term
    ("de" is French, "die" German)."""
    return frozenset().union(*_STOPWORDS.values())


def query_tokens(query: str, lang: str) -> list[str]:
    """BM25 query tokens: the query tokenised in its detected language, then its words that are a stop word in no
    language, stemmed and folded as each served language does it (`SERVED_LANGUAGES`).

    Documents are tokenised in their own language at ingestion (the German stemmer folds ü to u, the English one keeps
    it), so "What is the Kündigungsfrist?" tokenised as English alone misses a German document's `kundigungsfrist`.
    Every form is looked up; forms absent from the index cost nothing. Order: detected language's tokens first, then
    the others, without repeats.
    """
    words = " ".join(w for w in _TOKEN.findall(query.lower()) if w not in any_stopwords())
    forms = [*tokenize(query, lang), *(t for other in SERVED_LANGUAGES for t in tokenize(words, other))]
    return list(dict.fromkeys(forms))


class LexicalIndex:
    """A BM25 matrix whose rows are aligned with an array of chunk ids.

    Parameters
    ----------
    bm25 : bm25s.BM25 or None
        The scorer holding the matrix (None for an index without rows).
    vocab : dict[str, int]
        Token to column id.
    size : int
        Number of rows.
    """

    def __init__(self, bm25: bm25s.BM25 | None, vocab: dict[str, int], size: int):
        self.bm25 = bm25
        self.vocab = vocab
        self.size = size

    @classmethod
    def build(cls, stored_tokens: Iterable[str]) -> LexicalIndex:
        """From each row's stored tokens (space-separated). Tokens become ids as they stream in (a million rows'
        token strings would take gigabytes at once); `_bm25_matrix` then scores them in a few vectorised passes."""
        growing: defaultdict[str, int] = defaultdict()
        growing.default_factory = growing.__len__  # an unseen token gets the next id, without leaving C
        token_ids, lengths = array("i"), array("q")
        for tokens in stored_tokens:
            ids = list(map(growing.__getitem__, tokens.split()))
            token_ids.extend(ids)
            lengths.append(len(ids))
        if not lengths:
            return cls(None, {}, 0)
        vocab = dict(growing)
        vocab.setdefault("", len(vocab))  # bm25s scores token-less chunks through an empty token
        bm25 = bm25s.BM25()
        bm25.scores = _bm25_matrix(
            np.frombuffer(token_ids, dtype=np.int32),
            np.frombuffer(lengths, dtype=np.int64),
            len(vocab),
            bm25.k1,
            bm25.b,
        )
        bm25.vocab_dict, bm25.unique_token_ids_set, bm25.nonoccurrence_array = vocab, set(vocab.values()), None
        return cls(bm25, vocab, len(lengths))

    def scores(self, query_tokens: list[str], mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every row, `(size,) float32`: 0 for rows outside `mask` and rows sharing no query term.

        `query_tokens` come from `tokenize`; `mask`, `(size,)` bool, admits rows by position. Scores are Lucene's BM25
        with bm25s's defaults (k1 1.5, b 0.75), unbounded and not comparable across indexes.
        """
        if self.bm25 is None:
            return np.zeros(0, dtype=np.float32)
        ids = [self.vocab[t] for t in dict.fromkeys(query_tokens) if t in self.vocab and t]
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        weight = None if mask is None else mask.astype(np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids, weight_mask=weight), dtype=np.float32)

    def save(self, directory: Path) -> None:
        """Write into the new folder `directory` and fsync its files; the caller names it and publishes it
        (rag/store/: a temporary name of its own, then a rename under the structures lock). Raises OSError,
        FileExistsError when the folder exists."""
        directory.mkdir(parents=True)
        if self.bm25 is not None:
            self.bm25.save(str(directory))
        (directory / "lexical.json").write_text(json.dumps({"size": self.size, "vocab": self.vocab}))
        for path in directory.iterdir():
            fsync(path)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """The index `save` wrote into `directory`. Raises OSError for missing files, ValueError for damaged JSON."""
        meta = json.loads((directory / "lexical.json").read_text())
        bm25 = bm25s.BM25.load(str(directory), mmap=False) if meta["size"] else None
        if bm25 is not None:
            bm25.scores["indices"] = bm25.scores["indices"].astype(np.intp, copy=False)  # see _bm25_matrix
        return cls(bm25, meta["vocab"], meta["size"])


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest scores, best first, ties by row: `(min(k, n),) intp` for `scores` of shape `(n,)`.

    Partitioning a million scores took as long as computing them (~20 ms on the loaded 2-core machine). Instead: cut
    the rows into groups of 64 (row i joins group i mod n/64, so the maxima are one vectorised pass), take the k-th
    best group maximum (k distinct scores, so at most the k-th best score) and partition only the rows reaching it,
    typically a few hundred: ~1 ms."""
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    groups = len(scores) // _GROUP
    if groups >= 4 * k:
        maxima = scores[: groups * _GROUP].reshape(_GROUP, groups).max(axis=0)
        rows = np.flatnonzero(scores >= np.partition(maxima, groups - k)[groups - k])
    else:
        rows = np.arange(len(scores))
    values = scores[rows]
    rows = rows[values >= np.partition(values, len(values) - k)[len(values) - k]]  # the k best and their ties
    return rows[np.lexsort((rows, -scores[rows]))][:k]


def _bm25_matrix(token_ids: np.ndarray, lengths: np.ndarray, vocab_size: int, k1: float, b: float) -> dict:
    """The score matrix `bm25s.BM25.index` builds with its defaults (Lucene BM25, CSC layout: one column of
    (row, score) per token), computed in whole-array passes: bm25s loops over documents in Python (~100 s for a
    million chunks, extrapolated). tests/test_lexical.py checks both agree."""
    rows = len(lengths)
    doc = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    pairs, tf = np.unique(token_ids.astype(np.int64) * rows + doc, return_counts=True)  # by token, then row
    token, doc = np.divmod(pairs, rows)
    df = np.bincount(token, minlength=vocab_size)
    idf = np.log(1 + (rows - df + 0.5) / (df + 0.5)).astype(np.float32)
    tf = tf.astype(np.float32)
    tfc = tf / (k1 * ((1 - b) + b * lengths[doc] / lengths.mean()) + tf)
    indptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    # Rows as intp, not bm25s's int32: numpy's add.at, which sums a query's postings, casts int32 indices on every
    # call; at a million chunks that made scoring ~1.5x slower (docs/benchmarks.md) for 4 more bytes per posting.
    return {
        "data": (idf[token] * tfc).astype(np.float32),
        "indices": doc.astype(np.intp),
        "indptr": indptr,
        "num_docs": rows,
    }
