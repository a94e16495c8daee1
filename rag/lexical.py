"""BM25 over language-aware tokens (Snowball stemming and stop words per language), backed by bm25s.

Chunks are tokenised once at ingestion with their document's language and the tokens are stored, so the BM25 matrix
can be rebuilt from the metadata store at any time without re-reading files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s import stopwords as bm25_stopwords

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

_SNOWBALL = {
    "en": "english", "fr": "french", "de": "german", "lb": "german", "nl": "dutch", "it": "italian",
    "es": "spanish", "pt": "portuguese", "sv": "swedish", "da": "danish", "no": "norwegian", "ru": "russian",
}
_STOPWORDS = {
    "en": bm25_stopwords.STOPWORDS_EN, "fr": bm25_stopwords.STOPWORDS_FRENCH,
    "de": bm25_stopwords.STOPWORDS_GERMAN, "nl": bm25_stopwords.STOPWORDS_DUTCH,
    "it": bm25_stopwords.STOPWORDS_ITALIAN, "es": bm25_stopwords.STOPWORDS_SPANISH,
}


@lru_cache(maxsize=None)
def _stemmer(lang: str):
    algorithm = _SNOWBALL.get(lang)
    return Stemmer.Stemmer(algorithm) if algorithm else None


@lru_cache(maxsize=None)
def _stopwords(lang: str) -> frozenset[str]:
    return frozenset(_STOPWORDS.get(lang, ()))


def tokenize(text: str, lang: str) -> list[str]:
    """Lower-cased word tokens without the language's stop words, stemmed with its Snowball stemmer."""
    stop = _stopwords(lang)
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    stemmer = _stemmer(lang)
    return stemmer.stemWords(words) if stemmer else words


class LexicalIndex:
    """A BM25 matrix whose rows are aligned with an array of chunk ids."""

    def __init__(self, bm25: bm25s.BM25 | None, vocab: dict[str, int], size: int):
        self.bm25 = bm25
        self.vocab = vocab
        self.size = size

    @classmethod
    def build(cls, token_lists: list[list[str]]) -> LexicalIndex:
        if not token_lists:
            return cls(None, {}, 0)
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(tok, len(vocab)) for tok in tokens] for tokens in token_lists]
        vocab.setdefault("", len(vocab))  # bm25s scores token-less chunks through an empty token
        bm25 = bm25s.BM25()
        bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        return cls(bm25, vocab, len(token_lists))

    def scores(self, query_tokens: list[str], mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every row (0 for rows outside `mask` and rows sharing no term with the query)."""
        if self.bm25 is None:
            return np.zeros(0, dtype=np.float32)
        ids = [self.vocab[t] for t in dict.fromkeys(query_tokens) if t in self.vocab and t]
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        weight = None if mask is None else mask.astype(np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids, weight_mask=weight), dtype=np.float32)

    def save(self, directory: Path) -> None:
        """Write to a temporary folder and rename it into place, so a reader never sees half a save."""
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.bm25 is not None:
            self.bm25.save(str(tmp))
        (tmp / "lexical.json").write_text(json.dumps({"size": self.size, "vocab": self.vocab}))
        _fsync_dir(tmp)
        os.rename(tmp, directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        meta = json.loads((directory / "lexical.json").read_text())
        bm25 = bm25s.BM25.load(str(directory), mmap=False) if meta["size"] else None
        return cls(bm25, meta["vocab"], meta["size"])


def _fsync_dir(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
