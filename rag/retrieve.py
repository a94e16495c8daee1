"""Find passages: dense (FAISS), lexical (BM25) and their fusion, with filters applied inside each search.

Fusion is a convex combination of normalised scores whose dense share depends on the question's language. A plain
reciprocal-rank fusion of the English-only default embedder with BM25 ranks *below* BM25 alone on German and French:
rank fusion gives a near-random dense ranking as much say as a good lexical one, whatever the scores. Score fusion
with a small dense share there lets BM25 lead while the embedder still reorders close calls. The figures behind the
defaults are in docs/evaluation.md (`python -m bench.retrieval --sweep`).

A passage written in another language than the question's can only be matched by BM25 on names and numbers, so
`retrieval.dense_weight_across` (when set) replaces the question language's share for such passages: with a
multilingual embedder (rag/embed_multilingual.py) the dense side then decides them (`python -m bench.crosslingual`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .embed import Embedder
from .language import UNDETERMINED, comparable, detect_language
from .lexical import query_tokens
from .records import ChunkRecord, SearchFilter
from .settings import RetrievalSettings
from .store import Store

Mode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with its fused score and each retriever's score and 1-based rank (None: absent)."""

    chunk: ChunkRecord
    score: float  # fused score (hybrid) or the retriever's own score
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None  # 1-based rank in that retriever's list, None when absent
    bm25_rank: int | None = None

    def in_language(self, lang: str | None) -> bool:
        """Whether the passage can be compared word for word with text in `lang`: it is written in `lang`, or either
        language is unknown (None, undetermined)."""
        return comparable(self.chunk.lang, lang)

    def to_dict(self) -> dict:
        """JSON-ready fields (the `rag search --json` and `POST /search` hit shape); scores rounded to 6 places."""
        c = self.chunk
        return {
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "title": c.title,
            "source": c.source,
            "page": c.page,
            "heading_path": list(c.heading_path),
            "start": c.start,
            "end": c.end,
            "lang": c.lang,
            "content_hash": c.content_hash,
            "text": c.text,
            "score": round(self.score, 6),
            "dense_score": _round(self.dense_score),
            "bm25_score": _round(self.bm25_score),
            "dense_rank": self.dense_rank,
            "bm25_rank": self.bm25_rank,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class Retriever:
    """Dense, lexical or hybrid search over a `Store`, with the query embedded by `embedder`."""

    def __init__(self, store: Store, embedder: Embedder, settings: RetrievalSettings):
        self.store = store
        self.embedder = embedder
        self.settings = settings

    def search(
        self,
        query: str,
        k: int | None = None,
        mode: Mode | None = None,
        search_filter: SearchFilter | None = None,
        lang: str | None = None,
    ) -> list[Hit]:
        """The best `k` distinct passages for `query` (defaults: retrieval.k, retrieval.mode, detected language)."""
        k = k or self.settings.k
        mode = mode or self.settings.mode
        lang = lang or detect_language(query)
        dense, lexical = self.rankings(query, lang, max(self.settings.candidates, k), mode, search_filter)
        if mode == "dense":
            ranked = dense
        elif mode == "bm25":
            ranked = lexical
        else:
            ranked = self.fuse(dense, lexical, lang)
        return self._hits(ranked, dense, lexical, k)

    def rankings(
        self, query: str, lang: str, depth: int, mode: Mode = "hybrid", search_filter: SearchFilter | None = None
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Each retriever's (chunk id, score) list, best first, filtered inside the search.

        Both come from one committed generation (`Store.search`), so a commit meanwhile cannot mix the rows of one
        generation with the structures or filter of another.
        """
        vector = self.embedder.encode([query])[0] if mode in ("hybrid", "dense") else None
        tokens = query_tokens(query, lang) if mode in ("hybrid", "bm25") else []
        return self.store.search(vector=vector, tokens=tokens, depth=depth, search_filter=search_filter)

    def dense_weight(self, lang: str) -> float:
        """The dense share of the fused score for questions in `lang` (retrieval.dense_weight), in [0, 1]."""
        weights = self.settings.dense_weight
        return weights.get(lang, weights["default"])

    def fuse(
        self,
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
        lang: str,
        dense_weight: float | None = None,
    ) -> list[tuple[int, float]]:
        """`fuse` with the dense share of a question in `lang` (or `dense_weight`), and `dense_weight_across` for
        the candidates written in another determined language (their languages are read from the store)."""
        weight = self.dense_weight(lang) if dense_weight is None else dense_weight
        across_weight = self.settings.dense_weight_across
        if across_weight is None or lang == UNDETERMINED:
            return fuse(dense, lexical, weight)
        candidates = sorted({cid for cid, _ in dense} | {cid for cid, _ in lexical})
        across = frozenset(
            cid for cid, chunk in self.store.chunks(candidates).items() if not comparable(chunk.lang, lang)
        )
        return fuse(dense, lexical, weight, across=across, across_weight=across_weight)

    def _hits(
        self,
        ranked: list[tuple[int, float]],
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
        k: int,
    ) -> list[Hit]:
        """The best `k` passages with their scores; a passage whose text is that of a better-ranked one (`same_text`:
        a copy of a file, a clause repeated in documents of different titles or headings) is dropped, so one passage
        never fills several places. The candidates beyond `k` (retrieval.candidates deep) fill the places of the
        dropped ones. `ranked` holds only what the search filter admitted, so a passage the caller may not see never
        removes one it may."""
        records = self.store.chunks([cid for cid, _ in ranked])
        dense_at = {cid: (rank, s) for rank, (cid, s) in enumerate(dense, 1)}
        lexical_at = {cid: (rank, s) for rank, (cid, s) in enumerate(lexical, 1)}
        hits: list[Hit] = []
        seen: set[str] = set()
        for cid, score in ranked:
            if len(hits) == k:
                break
            if cid not in records or same_text(records[cid].text) in seen:  # deleted meanwhile, or a repeat
                continue
            seen.add(same_text(records[cid].text))
            d_rank, d_score = dense_at.get(cid, (None, None))
            b_rank, b_score = lexical_at.get(cid, (None, None))
            hits.append(Hit(records[cid], float(score), d_score, b_score, d_rank, b_rank))
        return hits


def same_text(text: str) -> str:
    """What two passages must share to count as one: the passage text (heading path excluded, it carries the
    document's title) with whitespace runs collapsed to one space, ends trimmed and case folded."""
    return " ".join(text.split()).casefold()


def fuse(
    dense: list[tuple[int, float]],
    lexical: list[tuple[int, float]],
    dense_weight: float,
    *,
    across: frozenset[int] = frozenset(),
    across_weight: float = 1.0,
) -> list[tuple[int, float]]:
    """Convex combination of normalised scores: BM25 divided by its best score, cosine min-max scaled over the
    candidates; a passage missing from one list gets 0 from it. The chunks in `across` take `across_weight` as their
    dense share instead of `dense_weight`. Ties broken by chunk id for determinism."""
    lexical_scores, dense_scores = dict(_scaled_by_max(lexical)), dict(_min_max(dense))
    scores: dict[int, float] = {}
    for cid in lexical_scores.keys() | dense_scores.keys():
        weight = across_weight if cid in across else dense_weight
        scores[cid] = (1.0 - weight) * lexical_scores.get(cid, 0.0) + weight * dense_scores.get(cid, 0.0)
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
