"""Pure metric functions over plain data: ranked ids in, numbers out. No I/O, no models.

Conventions: `ranked` is a list of ids, best first, without duplicates; `gold` is a set of relevant ids (binary
relevance). An item with no gold ids is skipped by the averaging helpers, not scored as 0 or 1.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence


def hit_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1.0 when any of the first `k` ids of `ranked` (best first) is in `gold`, else 0.0."""
    return float(any(doc in gold for doc in ranked[:k]))


def recall_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Share of `gold` among the first `k` ids of `ranked`, in [0, 1]; 0.0 when `gold` is empty."""
    return len(gold.intersection(ranked[:k])) / len(gold) if gold else 0.0


def mrr_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Reciprocal rank (1/rank, rank 1-based) of the first gold id within the first `k` of `ranked`; 0.0 if none."""
    for rank, doc in enumerate(ranked[:k], 1):
        if doc in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Normalised discounted cumulative gain at `k` with binary relevance (Järvelin & Kekäläinen 2002), in [0, 1].

    Gain 1/log2(rank + 1) per gold id in the first `k` of `ranked`, divided by the gain of an ideal ranking."""
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], 1) if doc in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal if ideal else 0.0


def dedupe(ids: Sequence[str]) -> list[str]:
    """Chunk hits to document ranking: a document ranks where its best chunk ranks."""
    return list(dict.fromkeys(ids))


def ranking_metrics(ranked: Sequence[str], gold: set[str]) -> dict[str, float]:
    """hit@1/5/10, recall@5/10, MRR@10 and nDCG@10 of one question (which must have gold)."""
    return {
        "hit@1": hit_at_k(ranked, gold, 1),
        "hit@5": hit_at_k(ranked, gold, 5),
        "hit@10": hit_at_k(ranked, gold, 10),
        "recall@5": recall_at_k(ranked, gold, 5),
        "recall@10": recall_at_k(ranked, gold, 10),
        "mrr@10": mrr_at_k(ranked, gold, 10),
        "ndcg@10": ndcg_at_k(ranked, gold, 10),
    }


def retrieval_metrics(runs: Sequence[tuple[Sequence[str], set[str]]]) -> dict[str, float]:
    """Mean `ranking_metrics` over (ranked ids, gold ids) pairs that have gold."""
    scored = [ranking_metrics(ranked, gold) for ranked, gold in runs if gold]
    if not scored:
        return {}
    return {name: sum(s[name] for s in scored) / len(scored) for name in scored[0]} | {"questions": len(scored)}


# ---------------------------------------------------------------------------------------------- answers
def answer_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation: lower case, punctuation and English articles removed."""
    words = re.findall(r"[^\W_]+", text.lower())
    return [w for w in words if w not in ("a", "an", "the")]


def exact_match(prediction: str, gold: str) -> float:
    """SQuAD exact match: equal after normalisation (two answers that normalise to nothing are equal)."""
    return float(answer_tokens(prediction) == answer_tokens(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1; when either side normalises to nothing, 1 if both do, else 0 (as the official script)."""
    predicted, expected = Counter(answer_tokens(prediction)), Counter(answer_tokens(gold))
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((predicted & expected).values())
    if not common:
        return 0.0
    precision, recall = common / sum(predicted.values()), common / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def best_over_answers(metric: Callable[[str, str], float], prediction: str, answers: Sequence[str]) -> float | None:
    """A question with several gold answers scores against the closest one; one without any is not scored."""
    return max((metric(prediction, gold) for gold in answers), default=None)


def token_recall(prediction: str, gold: str) -> float:
    """Share of the gold answer's tokens (with multiplicity) that the prediction contains."""
    gold_tokens = Counter(answer_tokens(gold))
    if not gold_tokens:
        return 0.0
    found = gold_tokens & Counter(answer_tokens(prediction))
    return sum(found.values()) / sum(gold_tokens.values())


def abstention_metrics(runs: Sequence[tuple[bool, bool]]) -> dict[str, float]:
    """Precision and recall of abstaining over (abstained, answerable) pairs: the positives are the unanswerable."""
    abstained = sum(1 for a, _ in runs if a)
    unanswerable = sum(1 for _, ok in runs if not ok)
    correct = sum(1 for a, ok in runs if a and not ok)
    precision = correct / abstained if abstained else 0.0
    recall = correct / unanswerable if unanswerable else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "abstain_rate": abstained / len(runs) if runs else 0.0}


# ---------------------------------------------------------------------------------------------- citations
def lexical_support(sentence: str, passages: Sequence[str]) -> float:
    """Share of the sentence's distinct words found verbatim in the passages, with no stemming and no stop-word
    allowance: an independent, stricter check than the project's verifier (which stems and weighs names).
    A sentence without words gets 0: it states nothing that could be checked."""
    words = set(answer_tokens(sentence))
    if not words:
        return 0.0
    return len(words.intersection(answer_tokens(" ".join(passages)))) / len(words)


def alce_citations(
    cited: Sequence[Sequence[Hashable]], supports: Callable[[int, tuple[Hashable, ...]], bool]
) -> dict[str, float] | None:
    """ALCE citation recall and precision of one answer (Gao et al. 2023, "Enabling LLMs to generate text with
    citations"), with `supports(i, ids)` judging whether passages `ids` together support sentence i.

    Recall: share of sentences that their cited passages jointly support (a sentence without citation is not).
    Precision: share of citations that are needed. Every citation of an unsupported sentence is imprecise; one of a
    supported sentence is imprecise only when it does not support the sentence alone and the others still do
    without it. A passage cited twice by one sentence counts once. None for an answer without sentences.
    """
    if not cited:
        return None
    supported = precise = total = 0
    for i, ids in enumerate(cited):
        ids = tuple(dict.fromkeys(ids))
        joint = bool(ids) and supports(i, ids)
        supported += joint
        total += len(ids)
        if joint:
            precise += sum(1 for c in ids if not _redundant(i, c, ids, supports))
    return {"recall": supported / len(cited), "precision": precise / total if total else 0.0}


def _redundant(
    i: int, citation: Hashable, ids: tuple[Hashable, ...], supports: Callable[[int, tuple[Hashable, ...]], bool]
) -> bool:
    if len(ids) == 1 or supports(i, (citation,)):
        return False
    return supports(i, tuple(c for c in ids if c != citation))
