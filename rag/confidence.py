"""Calibrated abstention: the probability that the retrieved passages answer the question.

The answerer (rag/answer.py) answers only when this probability reaches `answer.min_confidence`, in both modes and
before any generation. The probability is a logistic model over features of retrieval and of the verified quote
candidates (`features`), with coefficients fitted on labelled questions and shipped beside this module
(`confidence.json`: the coefficients, the feature names, the data they were fitted on and its figures). Refit with
`python -m rag.eval.calibration` (docs/evaluation.md "Calibrated abstention").

Features are plain numbers in [0, 1] or small ranges, computed from what the answerer has anyway: the hits' scores
and ranks, the question's content words folded as each passage's language folds them, and the quote candidates after
verification with the question rules (rag/cite.py: missing question terms, restatement).

Across languages: a passage written in another language than the question shares almost no words with it, so its
word-matching features (`TERM_FEATURES`: term shares, BM25's rank) say nothing and are `None`, missing; the model
takes a missing value at its fitted mean (it contributes nothing), and `across` (the best passage is in another
language) carries what being cross-lingual itself tells. The labelled data holds such questions: the GDPR sets asked
of the regulation's other language versions (docs/evaluation.md "Calibrated abstention").

Not a feature: the share of quote candidates that pass verification (constant in the labelled data but for a few
questions, so its standardised coefficient would swing a question by logits on no evidence).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .cite import Sentence, asks_for_number, passage_text, question_terms, states_number
from .lexical import tokenize
from .retrieve import Hit
from .untrusted import fold

MODEL_FILE = Path(__file__).with_name("confidence.json")

_ASKS_NAME = re.compile(r"\b(?:who|whom|whose|qui|wer|wem|wen|wessen|wien|wiem)\b")
_NAME = re.compile(r"(?<=\S\s)[A-ZÀ-Ý][\w-]+")

FEATURES = (
    "dense_top",
    "dense_gap",
    "fused_gap",
    "bm25_rank_top",
    "evidence",
    "terms_top",
    "terms_top3",
    "quote_terms",
    "quote_score",
    "quote_restates",
    "asks_number_missing",
    "asks_name_missing",
    "across",
)
# Features that match the question's words in passages (shares of its terms, BM25's rank): unknown (None) for
# passages in another language, where words cannot match.
TERM_FEATURES = frozenset({"bm25_rank_top", "evidence", "terms_top", "terms_top3", "quote_terms"})


def features(
    question: str,
    hits: Sequence[Hit],
    quotes: Sequence[Sentence],
    quote_scores: Sequence[float],
    *,
    lang: str | None = None,
) -> dict[str, float | None]:
    """The model's inputs for one question (names: `FEATURES`).

    `hits` are the passages the answer may use, best first; `quotes` their best sentences for the question after
    `rag.cite.verify` with the question (supported, support 0 when they restate it or carry a question term their
    passage lacks), with `quote_scores` their ranking scores (rag/focus.py: mean of coverage and cosine); `lang`
    the question's language (None: every passage counts as in it). Values are floats, and None for the word-matching
    features (`TERM_FEATURES`) when the best passage is in another language than `lang` (when it is in `lang`, they
    count only the passages in `lang`); an empty `hits` gives all zeros.
    """
    if not hits:
        return dict.fromkeys(FEATURES, 0.0)
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    top = hits[0]
    best_quote = quotes[0] if quotes else None
    folded = fold(question)
    quoted_text = " ".join(q.text for q in quotes[:1])
    same = [h for h in hits if h.in_language(lang)]
    # The word-matching features describe the best passage and those beside it in the question's language; when the
    # best passage is in another language, nothing lexical describes the passage that would answer.
    lexical: dict[str, float | None] = (
        {
            "bm25_rank_top": 1.0 / top.bm25_rank if top.bm25_rank else 0.0,
            "evidence": max(term_share(question, [h]) for h in same),
            "terms_top": term_share(question, hits[:1]),
            "terms_top3": term_share(question, [h for h in hits[:3] if h.in_language(lang)]),
            "quote_terms": _share_in_text(question, quoted_text, top.chunk.lang) if best_quote else 0.0,
        }
        if top.in_language(lang)
        else dict.fromkeys(TERM_FEATURES)
    )
    return {
        "dense_top": max(dense, default=0.0),
        "dense_gap": (dense[0] - dense[1]) if len(dense) > 1 else 0.0,
        "fused_gap": top.score - hits[1].score if len(hits) > 1 else top.score,
        **lexical,
        "quote_score": quote_scores[0] if quote_scores else 0.0,
        "quote_restates": float(best_quote is not None and best_quote.support == 0.0 and not best_quote.missing),
        "asks_number_missing": float(asks_for_number(question) and not states_number(quoted_text)),
        "asks_name_missing": float(bool(_ASKS_NAME.search(folded)) and not _NAME.search(quoted_text)),
        "across": float(not top.in_language(lang)),
    }


def rounded(value: float | None) -> float | None:
    """A feature value as answers and records show it: 4 decimals, None (missing) kept."""
    return None if value is None else round(value, 4)


def term_share(question: str, hits: Sequence[Hit]) -> float:
    """Share of the question's terms (rag.cite.question_terms) that one of `hits` contains, each passage folding
    them as its language does: 1.0 when every term is present somewhere in `hits`, 1.0 for a question without
    terms."""
    if not hits:
        return 0.0
    found: set[int] = set()  # indices into the question's terms
    total: set[int] = set()
    for hit in hits:
        terms = question_terms(question, hit.chunk.lang)
        words = set(tokenize(passage_text(hit), hit.chunk.lang))
        total.update(range(len(terms)))
        found.update(i for i, t in enumerate(terms) if t in words)
    return len(found) / len(total) if total else 1.0


def _share_in_text(question: str, text: str, lang: str) -> float:
    terms = question_terms(question, lang)
    words = set(tokenize(text, lang))
    return sum(t in words for t in terms) / len(terms) if terms else 1.0


@dataclass(frozen=True)
class ConfidenceModel:
    """A logistic model: p = 1 / (1 + exp(-(intercept + sum(coef[f] * (x[f] - mean[f]) / scale[f]))))."""

    names: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def probability(self, values: Mapping[str, float | None]) -> float:
        """P(the passages answer the question), in [0, 1], for one feature dict (`features`); a value None or NaN is
        missing and taken at its mean. KeyError when the dict lacks one of the model's features (a model file of
        another version)."""
        z = self.intercept + sum(
            c * (value - m) / s
            for n, c, m, s in zip(self.names, self.coef, self.mean, self.scale, strict=True)
            if (value := values[n]) is not None and not math.isnan(value)
        )
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceModel:
        """The model from its JSON form (the file rag/eval/calibration.py writes); KeyError when a field is missing."""
        return cls(
            tuple(data["features"]),
            tuple(data["coef"]),
            float(data["intercept"]),
            tuple(data["mean"]),
            tuple(data["scale"]),
        )


@lru_cache(maxsize=1)
def shipped_model() -> ConfidenceModel:
    """The model fitted for the default configuration (`confidence.json` beside this module)."""
    return ConfidenceModel.from_dict(json.loads(MODEL_FILE.read_text(encoding="utf-8")))
