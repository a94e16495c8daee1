"""Find passages: dense (FAISS), lexical (BM25) and their fusion, with filters applied inside each search.

Fusion is a convex combination of normalised scores whose dense share depends on the question's language. A plain
reciprocal-rank fusion of the English-only default embedder with BM25 ranks *below* BM25 alone on German and French:
rank fusion gives a near-random dense ranking as much say as a good lexical one, whatever the scores. Score fusion
with a small dense share there lets BM25 lead while the embedder still reorders close calls. The figures behind the
defaults are in docs/evaluation.md (`python -m bench.retrieval --sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .embed import Embedder
from .language import detect_language
from .lexical import query_tokens
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
            ranked = fuse(dense, lexical, self.dense_weight(lang))
        return self._hits(ranked, dense, lexical, k)

    def rankings(
        self, query: str, lang: str, depth: int, mode: Mode = "hybrid", search_filter: SearchFilter | None = None
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Each retriever's (chunk id, score) list, best first, filtered inside the search.

        The mask and both searches use one generation's `Snapshot`, so a commit meanwhile cannot swap the rows
        between the mask being built and being applied (which would filter the wrong passages).
        """
        vector = self.embedder.encode([query])[0] if mode in ("hybrid", "dense") else None
        snapshot = self.store.current()
        mask = snapshot.allowed_rows(search_filter)
        dense = snapshot.dense_search(vector, depth, mask) if vector is not None else []
        lexical = snapshot.lexical_search(query_tokens(query, lang), depth, mask) if mode in ("hybrid", "bm25") else []
        return dense, lexical

    def dense_weight(self, lang: str) -> float:
        weights = self.settings.dense_weight
        return weights.get(lang, weights["default"])

    def _hits(self, ranked, dense, lexical, k: int) -> list[Hit]:
        """The best `k` passages with their scores; a passage identical to a better one (same heading and text, its
        `content_hash`: a copy of a file, a repeated clause) is dropped, so one passage never fills several places.
        The candidates beyond `k` (retrieval.candidates deep) fill the places of the dropped ones."""
        records = self.store.chunks([cid for cid, _ in ranked])
        dense_at = {cid: (rank, s) for rank, (cid, s) in enumerate(dense, 1)}
        lexical_at = {cid: (rank, s) for rank, (cid, s) in enumerate(lexical, 1)}
        hits: list[Hit] = []
        seen: set[str] = set()
        for cid, score in ranked:
            if len(hits) == k:
                break
            if cid not in records or records[cid].content_hash in seen:  # deleted meanwhile, or a repeat
                continue
            seen.add(records[cid].content_hash)
            d_rank, d_score = dense_at.get(cid, (None, None))
            b_rank, b_score = lexical_at.get(cid, (None, None))
            hits.append(Hit(records[cid], float(score), d_score, b_score, d_rank, b_rank))
        return hits


def fuse(
    dense: list[tuple[int, float]], lexical: list[tuple[int, float]], dense_weight: float
) -> list[tuple[int, float]]:
    """Convex combination of normalised scores: BM25 divided by its best score, cosine min-max scaled over the
    candidates; a passage missing from one list gets 0 from it. Ties broken by chunk id for determinism."""
    scores: dict[int, float] = {}
    for weight, normalised in ((1.0 - dense_weight, _scaled_by_max(lexical)), (dense_weight, _min_max(dense))):
        for cid, value in normalised:
            scores[cid] = scores.get(cid, 0.0) + weight * value
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _scaled_by_max(ranking: list[tuple[int, float]]) -> list[tuple[int, float]]:
    top = max((score for _, score in ranking), default=0.0)
    return [(cid, score / top) for cid, score in ranking] if top > 0 else []


def _min_max(ranking: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if not ranking:
        return []
    high = max(score for _, score in ranking)
    low = min(score for _, score in ranking)
    span = high - low if high > low else 1.0
    return [(cid, (score - low) / span) for cid, score in ranking]
