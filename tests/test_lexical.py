"""BM25: the vectorised matrix builder against bm25s's own indexing (reference test), and a save/load round trip."""

from __future__ import annotations

import bm25s
import numpy as np

from rag.lexical import LexicalIndex, tokenize, top_k

ROWS = [
    "Les agents ont droit à vingt-six jours de congé par an.",
    "Le congé parental est accordé sur demande de l'agent.",
    "",  # a chunk without tokens (only stop words or punctuation)
    "Les jours de congé non pris sont reportés à l'année suivante, jours ouvrables.",
    "Art. 2. Abrogé.",
]


def _stored() -> list[str]:
    return [" ".join(tokenize(text, "fr")) for text in ROWS]


def _reference(stored: list[str]) -> tuple[bm25s.BM25, dict]:
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in row.split()] for row in stored]
    vocab.setdefault("", len(vocab))
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    return bm25, vocab


def test_matrix_equals_bm25s_index():
    stored = _stored()
    ours = LexicalIndex.build(stored)
    reference, vocab = _reference(stored)
    assert ours.vocab == vocab and ours.size == len(ROWS)
    for part in ("data", "indices", "indptr"):
        assert np.array_equal(ours.bm25.scores[part], reference.scores[part]), part
    for query in ("jours de congé", "agent", "abrogé", "inconnu"):
        ids = [vocab[t] for t in tokenize(query, "fr") if t in vocab] or [vocab[""]]
        assert np.array_equal(ours.bm25.get_scores_from_ids(ids), reference.get_scores_from_ids(ids)), query


def test_save_then_load_scores_the_same(tmp_path):
    built = LexicalIndex.build(_stored())
    built.save(tmp_path / "lexical-1")
    loaded = LexicalIndex.load(tmp_path / "lexical-1")
    mask = np.array([True, False, True, True, True])
    tokens = tokenize("jours de congé", "fr")
    assert np.array_equal(built.scores(tokens, mask), loaded.scores(tokens, mask))
    assert loaded.scores(tokens, mask)[1] == 0.0


def test_top_k_equals_a_full_sort():
    rng = np.random.default_rng(0)
    for size, k in ((10, 3), (1000, 50), (100_000, 50), (100_000, 1), (70_000, 100)):
        scores = np.where(rng.random(size) < 0.5, 0.0, rng.integers(0, 40, size) / 4).astype(np.float32)  # ties
        expected = np.lexsort((np.arange(size), -scores))[:k]
        assert np.array_equal(top_k(scores, k), expected), (size, k)
    assert len(top_k(np.zeros(0, dtype=np.float32), 5)) == 0
