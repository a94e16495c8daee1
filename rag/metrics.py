"""Pure metric functions over plain data: ranked ids in, numbers out. No I/O, no models.

Conventions: `ranked` is a list of ids, best first, without duplicates; `gold` is a set of relevant ids (binary
relevance). An item with no gold ids is skipped by the averaging helpers, not scored as 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def hit_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return float(any(doc in gold for doc in ranked[:k]))


def recall_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return len(gold.intersection(ranked[:k])) / len(gold) if gold else 0.0


def mrr_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    for rank, doc in enumerate(ranked[:k], 1):
        if doc in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], 1) if doc in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal if ideal else 0.0


def dedupe(ids: Sequence[str]) -> list[str]:
    """Chunk hits to document ranking: a document ranks where its best chunk ranks."""
    return list(dict.fromkeys(ids))


def retrieval_metrics(runs: Sequence[tuple[Sequence[str], set[str]]]) -> dict[str, float]:
    """Mean hit@1/5/10, recall@5/10, MRR@10 and nDCG@10 over (ranked ids, gold ids) pairs that have gold."""
    scored = [(ranked, gold) for ranked, gold in runs if gold]
    if not scored:
        return {}
    table = {
        "hit@1": lambda r, g: hit_at_k(r, g, 1),
        "hit@5": lambda r, g: hit_at_k(r, g, 5),
        "hit@10": lambda r, g: hit_at_k(r, g, 10),
        "recall@5": lambda r, g: recall_at_k(r, g, 5),
        "recall@10": lambda r, g: recall_at_k(r, g, 10),
        "mrr@10": lambda r, g: mrr_at_k(r, g, 10),
        "ndcg@10": lambda r, g: ndcg_at_k(r, g, 10),
    }
    return {name: sum(fn(r, g) for r, g in scored) / len(scored) for name, fn in table.items()} | {
        "questions": len(scored)
    }
