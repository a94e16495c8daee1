"""Find passages: dense (FAISS), lexical (BM25) and their fusion, with filters applied inside each search.

Fusion is reciprocal-rank fusion weighted by the query's language. A plain RRF of the English-only default embedder
with BM25 ranks *below* BM25 alone on German and French, because the dense ranking is close to noise there; the dense
weight per language (`retrieval.dense_weight`) lets the better retriever lead while the other still breaks ties.
The figures that justify the defaults are in docs/evaluation.md (`python -m bench.retrieval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .embed import Embedder
from .language import detect_language
from .lexical import tokenize
from .settings import RetrievalSettings
from .store import ChunkRecord, IndexStore, SearchFilter

Mode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True)
class Hit:
    chunk: ChunkRecord
    score: float  # fused score (hybrid) or the retriever's own score
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None  # 1-based rank in that retriever's list, None when absent
    bm25_rank: int | None = None

    def to_dict(self) -> dict:
        c = self.chunk
        return {
            "chunk_id": c.id, "doc_id": c.doc_id, "title": c.title, "source": c.source, "page": c.page,
            "heading_path": list(c.heading_path), "start": c.start, "end": c.end, "lang": c.lang,
            "content_hash": c.content_hash, "text": c.text, "score": round(self.score, 6),
            "dense_score": _round(self.dense_score), "bm25_score": _round(self.bm25_score),
            "dense_rank": self.dense_rank, "bm25_rank": self.bm25_rank,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class Retriever:
    def __init__(self, store: IndexStore, embedder: Embedder, settings: RetrievalSettings):
        self.store = store
        self.embedder = embedder
        self.settings = settings

    def search(
        self, query: str, k: int | None = None, mode: Mode | None = None, search_filter: SearchFilter | None = None,
        lang: str | None = None,
    ) -> list[Hit]:
        k = k or self.settings.k
        mode = mode or self.settings.mode
        lang = lang or detect_language(query)
        dense, lexical = self.rankings(query, lang, max(self.settings.candidates, k), mode, search_filter)
        if mode == "dense":
            ranked = dense
        elif mode == "bm25":
            ranked = lexical
        else:
            ranked = fuse(dense, lexical, self.dense_weight(lang), self.settings.rrf_k)
        return self._hits(ranked[:k], dense, lexical)

    def rankings(
        self, query: str, lang: str, depth: int, mode: Mode = "hybrid", search_filter: SearchFilter | None = None
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Each retriever's (chunk id, score) list, best first, filtered inside the search."""
        self.store.refresh()
        mask = self.store.allowed_rows(search_filter)
        dense = self._dense(query, depth, mask) if mode in ("hybrid", "dense") else []
        lexical = self._lexical(query, lang, depth, mask) if mode in ("hybrid", "bm25") else []
        return dense, lexical

    def _dense(self, query: str, depth: int, mask) -> list[tuple[int, float]]:
        vector = self.embedder.encode([query])[0]
        return self.store.dense_search(vector, depth, mask)

    def _lexical(self, query: str, lang: str, depth: int, mask) -> list[tuple[int, float]]:
        return self.store.lexical_search(tokenize(query, lang), depth, mask)

    def dense_weight(self, lang: str) -> float:
        weights = self.settings.dense_weight
        return weights.get(lang, weights.get("default", 1.0))

    def _hits(self, ranked, dense, lexical) -> list[Hit]:
        records = self.store.chunks([cid for cid, _ in ranked])
        dense_at = {cid: (rank, s) for rank, (cid, s) in enumerate(dense, 1)}
        lexical_at = {cid: (rank, s) for rank, (cid, s) in enumerate(lexical, 1)}
        hits = []
        for cid, score in ranked:
            if cid not in records:  # deleted between the search and the fetch
                continue
            d_rank, d_score = dense_at.get(cid, (None, None))
            b_rank, b_score = lexical_at.get(cid, (None, None))
            hits.append(Hit(records[cid], float(score), d_score, b_score, d_rank, b_rank))
        return hits


def fuse(
    dense: list[tuple[int, float]], lexical: list[tuple[int, float]], dense_weight: float, rrf_k: int
) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion; BM25 weighs 1, ties broken by chunk id for determinism."""
    scores: dict[int, float] = {}
    for weight, ranking in ((dense_weight, dense), (1.0, lexical)):
        for rank, (cid, _) in enumerate(ranking, 1):
            scores[cid] = scores.get(cid, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))

