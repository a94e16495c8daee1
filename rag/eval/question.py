"""One question in, one plain JSON-ready record out.

A record keeps what was retrieved and answered, so a run can be inspected question by question, and a flat `scores`
dict of this question's metric values. A metric that does not apply (no gold document, an unanswerable question, an
abstention has no sentences to cite) is absent rather than 0, so it is left out of the averages instead of pulling
them down. The aggregation and the bootstrap need nothing else.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from ..answer import Answer
from ..cite import Sentence, support
from ..confidence import rounded
from ..language import detect_language
from ..pipeline import Pipeline
from ..store import ChunkRecord
from .datasets import Dataset, Question
from .metrics import (
    alce_citations,
    best_over_answers,
    dedupe,
    exact_match,
    lexical_support,
    ranking_metrics,
    token_f1,
    token_recall,
)

RETRIEVERS = ("dense", "bm25", "hybrid")
DEPTH = 20  # documents kept per ranking in a record: the recall@k curves go this far


class Ranker:
    """Document rankings of every retriever from one dense and one BM25 search per question.

    Hybrid fuses the two with the product's `fuse` and dense weight for the question's language, so the figures are
    the product's; `weights` adds hybrids with other dense weights (bench/retrieval's sweep) at no extra search.
    """

    def __init__(self, pipeline: Pipeline, dataset: Dataset):
        self.retriever = pipeline.retriever
        self.store = pipeline.store
        self.chunk_key = dataset.chunk_key
        self._keys: dict[int, str] = {}  # chunk id -> gold key (document, or article), fetched once per chunk

    def rank(self, text: str, weights: tuple[float, ...] = ()) -> dict[str, list[str]]:
        """Document keys in rank order, duplicates removed, per retriever: dense, bm25 (Robertson & Zaragoza 2009),
        hybrid (rag.retrieve.fuse, a convex combination of normalised scores) and `hybrid@w=W` for each dense weight
        in `weights`; returns {retriever: [key, ...]}."""
        lang = detect_language(text)
        retriever = self.retriever
        dense, lexical = retriever.rankings(text, lang, retriever.settings.candidates)
        chunks = {"dense": dense, "bm25": lexical, "hybrid": retriever.fuse(dense, lexical, lang)}
        chunks |= {f"hybrid@w={w}": retriever.fuse(dense, lexical, lang, w) for w in weights}
        self._learn({cid for ranking in chunks.values() for cid, _ in ranking})
        return {
            name: dedupe([self._keys[cid] for cid, _ in ranking if cid in self._keys])
            for name, ranking in chunks.items()
        }

    def _learn(self, chunk_ids: set[int]) -> None:
        missing = sorted(chunk_ids - self._keys.keys())
        self._keys.update({cid: self.chunk_key(chunk) for cid, chunk in self.store.chunks(missing).items()})


def evaluate(question: Question, ranker: Ranker, pipeline: Pipeline, mode: str) -> dict:
    """The record of one question; `mode` is generate, quote or retrieval (rankings only, no answer)."""
    started = time.perf_counter()
    rankings = ranker.rank(question.text)
    record: dict[str, Any] = {
        "id": question.id,
        "question": question.text,
        "answerable": question.answerable,
        "answers": list(question.answers),
        "gold_doc_ids": sorted(question.gold_doc_ids),
        "retrieved": {name: rankings[name][:DEPTH] for name in RETRIEVERS},
        "timings": {"rank_ms": _ms(started)},
        "scores": retrieval_scores(rankings, question.gold_doc_ids),
    }
    if mode != "retrieval":
        answer = pipeline.ask(question.text, mode=mode)
        record |= answer_record(answer)
        record["scores"] |= answer_scores(record["prediction"], question)
        record["scores"] |= citation_scores(answer, pipeline.settings.answer.min_support)
        record["timings"] |= stage_timings(answer)
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def retrieval_scores(rankings: dict[str, list[str]], gold: frozenset[str]) -> dict[str, float]:
    """Ranking metrics (hit@k, recall@k, MRR@10, nDCG@10; rag/eval/metrics.py) of every retriever against the gold
    documents, keyed `retrieval.<retriever>.<metric>`, each in [0, 1]; empty when the question has no gold document."""
    if not gold:
        return {}
    return {
        f"retrieval.{name}.{metric}": value
        for name in RETRIEVERS
        for metric, value in ranking_metrics(rankings[name], set(gold)).items()
    }


def answer_scores(prediction: str, question: Question) -> dict[str, float | None]:
    """EM, token F1 and token recall against the closest gold answer; only answerable questions with answers count
    (an abstention on one is an empty prediction and scores 0)."""
    if not question.answerable or not question.answers:
        return {}
    return {
        f"answer.{name}": best_over_answers(metric, prediction, question.answers)
        for name, metric in (("em", exact_match), ("f1", token_f1), ("token_recall", token_recall))
    }


def answer_record(answer: Answer) -> dict:
    """The answer as plain data; every sentence with its verifier support (see `_sentence_row`)."""
    passages = _passages(answer)
    kept = [_sentence_row(s, True, verifier_support(s.text, _cited(s, passages))) for s in answer.sentences]
    removed = [_sentence_row(s, False, s.support) for s in answer.removed]
    return {
        "abstained": answer.abstained,
        "prediction": "" if answer.abstained else answer_text(answer),
        "answer": answer.text,
        "evidence": round(answer.evidence, 4),
        "confidence": round(answer.confidence, 4),
        "features": {name: rounded(value) for name, value in answer.features.items()},
        "sentences": kept + removed,
        "sources": [
            {"n": s.n, "doc_id": s.chunk.doc_id, "source": s.chunk.source, "cited": s.cited} for s in answer.sources
        ],
    }


def answer_text(answer: Answer) -> str:
    """The answer's sentences without citation markers: what is compared with the gold answers."""
    return " ".join(s.text for s in answer.sentences)


def _sentence_row(sentence: Sentence, kept: bool, score: float) -> dict:
    """A kept sentence's support is recomputed on its cited passages: in generate mode that equals the Answer's own
    verifier score, in quote mode the Answer holds a ranking score instead. A removed sentence keeps the verifier's
    score (only generation removes sentences), whose passages an abstention no longer lists."""
    return {
        "text": sentence.text,
        "citations": [c.marker for c in sentence.citations],
        "kept": kept,
        "support": round(score, 4),
    }


def _passages(answer: Answer) -> dict[int, ChunkRecord]:
    """The passages the answer's `[n]` citations refer to, by n."""
    return {source.n: source.chunk for source in answer.sources}


def _cited(sentence: Sentence, passages: dict[int, ChunkRecord]) -> list[ChunkRecord]:
    return [passages[m] for m in dict.fromkeys(c.marker for c in sentence.citations)]


def verifier_support(text: str, cited: list[ChunkRecord]) -> float:
    """The project's verifier (rag.cite.support) on the union of the cited passages, as `verify` computes it."""
    return support(text, " ".join(c.text for c in cited), cited[0].lang).score if cited else 0.0


def citation_scores(answer: Answer, min_support: float) -> dict[str, float]:
    """ALCE citation recall/precision of the answer's sentences under two judges, the project's verifier and the
    strict lexical check, and the share of the generated sentences the verifier removed."""
    passages = _passages(answer)
    sentences = answer.sentences
    judges = {
        "verifier": lambda i, ids: verifier_support(sentences[i].text, [passages[n] for n in ids]) >= min_support,
        "strict": lambda i, ids: lexical_support(sentences[i].text, [passages[n].text for n in ids]) == 1.0,
    }
    written = len(sentences) + len(answer.removed)
    scores = {"citation.removed_share": len(answer.removed) / written} if written else {}
    cited = [[c.marker for c in s.citations] for s in sentences]
    for name, judge in judges.items():
        result = alce_citations(cited, judge)
        scores |= {f"citation.{name}.{metric}": value for metric, value in (result or {}).items()}
    return scores


def stage_timings(answer: Answer) -> dict:
    """The Answer's timings plus `answer_ms`, the time between retrieval and verification: generating the text,
    or choosing the quotes."""
    timings = asdict(answer.timings)
    timings["answer_ms"] = round(timings["total_ms"] - timings["retrieval_ms"] - timings["verify_ms"], 2)
    return timings


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
