"""Candidate passage-reading features for the abstention model (issue 16 item 3), measured on ClapNQ dev samples.

The shipped model (rag/confidence.py) reads retrieval and term-overlap features only, and ClapNQ's unanswerable
questions come with an on-topic passage. This benchmark measures whether a feature that reads the passage separates
them, with what is installed offline: the bundled Gemma 3 270M (a base model, so few-shot prompts) and the embedder.
Steps, each writing JSONL into --out (default runs/abstention-reading, git-ignored):

    python -m bench.abstention_reading collect --half fit --per-class 100    # fit.jsonl: shipped features, passages
    python -m bench.abstention_reading collect --half held --per-class 150   # held.jsonl
    python -m bench.abstention_reading extract --half fit [--quotes 2]       # LLM few-shot extraction features
    python -m bench.abstention_reading verdict --half fit                    # LLM yes/no answerability verdict
    python -m bench.abstention_reading sentences --half fit                  # best sentence cosine (embedder)
    python -m bench.abstention_reading evaluate [--held]                     # AUC, F1 at <= 10% answerable abstained

`collect` takes questions of one side of the calibration split (rag.eval.calibration.split), `per-class` answerable
and as many unanswerable, evenly spread, and records what the answerer computes before deciding (retrieval, verified
quote candidates, the shipped features and probability) plus the top 3 passages and the quotes. `extract` prompts
"Passage / Question / Answer:" with six invented examples (three answered by a span, three "not stated") over the
top passage (or with --quotes K its K best quote candidates), cut to --chars characters, greedy, 16 tokens at most,
and records the log-probability of " not" as first answer token, the best other first token's, the span's mean token
log-probability, whether it says "not stated" and whether the span occurs verbatim in the passage. `verdict` asks
"Does the passage answer the question?" after the same examples (yes/no) and records the log-probabilities of
" yes" and " no". `sentences` records the best, second and mean cosine between the question and the top passage's
sentences, and the whole passage's cosine. `evaluate` compares the shipped features with and without each
candidate: 5-fold cross-validated on fit.jsonl, and with --held fitted on fit.jsonl and judged on held.jsonl (same
logistic model as rag.eval.calibration, C 0.1); it writes evaluate.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rag.answer import question_language
from rag.cite import passage_text
from rag.confidence import FEATURES, features
from rag.eval.calibration import split
from rag.eval.datasets import Question, read_dataset
from rag.eval.index import open_index
from rag.focus import passage_sentences
from rag.generate import create_llm
from rag.pipeline import Pipeline
from rag.settings import load_settings
from rag.untrusted import fold, screen

CLAPNQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qa" / "clapnq" / "annotated_data" / "dev"

# Invented examples (none from ClapNQ): three answered by a span of the passage, three whose passage is on topic but
# does not say.
SHOTS = [
    (
        "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris. It is 330 metres "
        "tall and was the tallest structure in the world until 1930.",
        "when was the eiffel tower built",
        "1889",
    ),
    (
        "The Amazon river flows through Peru, Colombia and Brazil into the Atlantic Ocean. It carries more water than "
        "any other river and its basin covers seven million square kilometres.",
        "who was the first european to sail down the amazon",
        "not stated",
    ),
    (
        "Marie Curie shared the 1903 Nobel Prize in Physics with Pierre Curie and Henri Becquerel. In 1911 she "
        "received the Nobel Prize in Chemistry for the discovery of polonium and radium.",
        "what did marie curie win the chemistry prize for",
        "the discovery of polonium and radium",
    ),
    (
        "The Great Barrier Reef lies off the coast of Queensland, Australia. It is the largest coral reef system in "
        "the world and can be seen from outer space.",
        "how many species of fish live on the great barrier reef",
        "not stated",
    ),
    (
        "Basketball was invented in 1891 by James Naismith, a Canadian physical education teacher, at a YMCA school "
        "in Springfield, Massachusetts.",
        "who invented basketball",
        "James Naismith",
    ),
    (
        "The song was recorded in London in 1965 and released as a single in the United States, where it reached "
        "number one on the Billboard charts for four weeks.",
        "who wrote the lyrics of the song",
        "not stated",
    ),
]
VERDICT = "Does the passage answer the question?"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _open() -> tuple[Pipeline, list[Question]]:
    dataset = read_dataset(CLAPNQ)
    pipeline, _ = open_index(load_settings(), dataset, progress=False)
    return pipeline, dataset.questions


def collect(out: Path, half: str, per_class: int) -> None:
    """Shipped features and passages of `per_class` answerable and unanswerable questions of one split side."""
    pipeline, questions = _open()
    fit_ids, held_ids = split([q.id for q in questions])
    side = [q for q in questions if q.id in (fit_ids if half == "fit" else held_ids)]

    def spread(items: list[Question]) -> list[Question]:
        return [items[i * len(items) // per_class] for i in range(min(per_class, len(items)))]

    sample = spread([q for q in side if q.answerable]) + spread([q for q in side if not q.answerable])
    answerer = pipeline.answerer
    with out.open("w", encoding="utf-8") as sink:
        for q in sample:
            found = answerer.search(q.text, k=None)
            hits, _ = screen(found)  # the passages the answer may use, as Answerer.stream screens them
            lang = question_language(q.text, hits or found)
            quotes, scores = answerer._quotes(q.text, lang, hits)  # what Answerer.stream computes before deciding
            values = features(q.text, hits, quotes, scores, lang=lang)
            record = {
                "id": q.id,
                "question": q.text,
                "answerable": q.answerable,
                "features": values,
                "p": answerer.confidence.probability(values),
                "passages": [passage_text(h) for h in hits[:3]],
                "quotes": [[s.text, s.supported] for s in quotes],
            }
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    top = s.max()
    return s - (top + math.log(np.exp(s - top).sum()))


def _llm_pass(
    rows: list[dict], quotes: int, chars: int, shot: Callable[[str, str, str], str], ask: str, tokens: int
) -> Iterator[tuple[dict, str, str, list[np.ndarray], Callable[[str], list[int]]]]:
    """Greedy completions of the few-shot prompt for each row; yields (row, passage, text, first-token-onwards
    log-softmax per step, tokenizer) and prints the cost."""
    from llama_cpp import LogitsProcessorList

    llama = create_llm(load_settings()).llama
    prefix = "".join(shot(*example) for example in SHOTS)

    def tokenize(text: str) -> list[int]:
        return llama.tokenize(text.encode(), add_bos=False, special=False)

    started, prompt_tokens = time.perf_counter(), 0
    for row in rows:
        passage = " ".join(q[0] for q in row["quotes"][:quotes]) if quotes else (row["passages"] or [""])[0]
        passage = " ".join(passage.split())[:chars]
        prompt = prefix + f"Passage: {passage}\nQuestion: {row['question']}\n{ask}"
        prompt_tokens += len(tokenize(prompt)) - len(tokenize(prefix))
        steps: list[np.ndarray] = []

        def record(_ids: np.ndarray, scores: np.ndarray, steps: list[np.ndarray] = steps) -> np.ndarray:
            steps.append(_log_softmax(scores))
            return scores

        result = llama.create_completion(
            prompt, max_tokens=tokens, temperature=0.0, stop=["\n"], logits_processor=LogitsProcessorList([record])
        )
        yield row, passage, result["choices"][0]["text"].strip(), steps, tokenize
    seconds = time.perf_counter() - started
    print(
        f"{len(rows)} questions, {seconds / max(len(rows), 1):.2f} s each, "
        f"{prompt_tokens / max(len(rows), 1):.0f} uncached prompt tokens each (prefix {len(tokenize(prefix))})"
    )


def extract(src: Path, out: Path, quotes: int, chars: int) -> None:
    """Few-shot extraction features (module docstring)."""

    def shot(passage: str, question: str, answer: str) -> str:
        return f"Passage: {passage}\nQuestion: {question}\nAnswer: {answer}\n\n"

    with out.open("w", encoding="utf-8") as sink:
        for row, passage, text, steps, tokenize in _llm_pass(_rows(src), quotes, chars, shot, "Answer:", 16):
            not_id = tokenize(" not")[0]
            logprobs = [float(step[t]) for step, t in zip(steps, tokenize(" " + text) if text else [], strict=False)]
            says_not = text.lower().startswith("not")
            record = {
                "id": row["id"],
                "text": text,
                "lp_not": float(steps[0][not_id]),
                "lp_top_other": float(np.max(np.delete(steps[0], not_id))),
                "span_mean_lp": float(np.mean(logprobs)) if logprobs else 0.0,
                "says_not": float(says_not),
                "verbatim": float(bool(text) and not says_not and fold(" ".join(text.split())) in fold(passage)),
                "span_tokens": len(logprobs),
            }
            record["margin_not"] = record["lp_top_other"] - record["lp_not"]
            sink.write(json.dumps(record) + "\n")


def verdict(src: Path, out: Path, quotes: int, chars: int) -> None:
    """Few-shot yes/no answerability verdict (module docstring)."""

    def shot(passage: str, question: str, answer: str) -> str:
        return f"Passage: {passage}\nQuestion: {question}\n{VERDICT} {'no' if answer == 'not stated' else 'yes'}\n\n"

    with out.open("w", encoding="utf-8") as sink:
        for row, _passage, _text, steps, tokenize in _llm_pass(_rows(src), quotes, chars, shot, VERDICT, 1):
            yes, no = float(steps[0][tokenize(" yes")[0]]), float(steps[0][tokenize(" no")[0]])
            sink.write(json.dumps({"id": row["id"], "lp_yes": yes, "lp_no": no, "yes_minus_no": yes - no}) + "\n")


def sentences(src: Path, out: Path) -> None:
    """Best, second and mean cosine between the question and the top passage's sentences, and the whole passage's
    (one batch: the int8 embedder quantises activations per batch, so the batch decides the last digits)."""
    pipeline, _ = _open()
    answerer = pipeline.answerer
    with out.open("w", encoding="utf-8") as sink:
        for row in _rows(src):
            hits, _ = screen(answerer.search(row["question"], k=None))
            texts = passage_sentences(hits[0].chunk)
            vectors = answerer.encode([row["question"], *texts, hits[0].chunk.text])
            cosine = np.sort(vectors[1:-1] @ vectors[0])
            record = {
                "id": row["id"],
                "whole_passage": float(vectors[-1] @ vectors[0]),
                "best_sentence": float(cosine[-1]),
                "second_sentence": float(cosine[-2]) if len(cosine) > 1 else 0.0,
                "mean_sentence": float(cosine.mean()),
            }
            sink.write(json.dumps(record) + "\n")


def _judge(p: np.ndarray, y: np.ndarray) -> dict:
    """AUC, and the best abstention F1 (unanswerable = positive) over thresholds abstaining on <= 10% of answerable."""
    from sklearn.metrics import roc_auc_score

    best = (0.0, 0.0)
    for t in np.linspace(0, 1, 201):
        abstain = p < t
        tp, fp, fn = (abstain & (y == 0)).sum(), (abstain & (y == 1)).sum(), (~abstain & (y == 0)).sum()
        if tp and fp <= 0.10 * (y == 1).sum():
            best = max(best, (2 * tp / (2 * tp + fp + fn), float(t)))
    return {"auc": round(float(roc_auc_score(y, p)), 3), "f1_at_10pct": round(best[0], 3), "threshold": best[1]}


def evaluate(folder: Path, held: bool) -> None:
    """Shipped features alone and with each candidate feature found beside fit.jsonl (module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def table(half: str) -> tuple[list[dict], dict[str, dict]]:
        base = _rows(folder / f"{half}.jsonl")
        extra: dict[str, dict] = {r["id"]: {} for r in base}
        for path in sorted(folder.glob(f"{half}-*.jsonl")):
            for r in _rows(path):
                extra[r["id"]].update({f"{path.stem[len(half) + 1 :]}:{k}": v for k, v in r.items() if k != "id"})
        return base, extra

    fit_base, fit_extra = table("fit")
    candidates = [k for k, v in next(iter(fit_extra.values())).items() if isinstance(v, int | float)]

    def matrix(base: list[dict], extra: dict[str, dict], cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x = [[r["features"][c] if c in FEATURES else extra[r["id"]][c] for c in cols] for r in base]
        return np.array(x, float), np.array([r["answerable"] for r in base], int)

    def model() -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))

    results = {}
    for name, cols in [("shipped features", list(FEATURES))] + [(f"+ {c}", [*FEATURES, c]) for c in candidates]:
        x, y = matrix(fit_base, fit_extra, cols)
        alone = _judge(x[:, -1], y)["auc"] if name != "shipped features" else None
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        figures = {
            "alone_auc": alone,
            "cv": _judge(cross_val_predict(model(), x, y, cv=folds, method="predict_proba")[:, 1], y),
        }
        if held:
            held_base, held_extra = table("held")
            if all(c in FEATURES or c in next(iter(held_extra.values())) for c in cols):
                xh, yh = matrix(held_base, held_extra, cols)
                figures["held"] = _judge(model().fit(x, y).predict_proba(xh)[:, 1], yh)  # type: ignore[attr-defined]
        results[name] = figures
        print(f"{name:34s} {json.dumps(figures)}")
    (folder / "evaluate.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["collect", "extract", "verdict", "sentences", "evaluate"])
    parser.add_argument("--out", type=Path, default=Path("runs/abstention-reading"))
    parser.add_argument("--half", choices=["fit", "held"], default="fit")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--quotes", type=int, default=0, help="read the K best quote candidates, not the top passage")
    parser.add_argument("--chars", type=int, default=1200, help="passage cut to this many characters")
    parser.add_argument("--held", action="store_true", help="evaluate: also fit on fit, judge on held")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.out / f"{args.half}.jsonl"
    suffix = f"-quotes{args.quotes}" if args.quotes else ""
    if args.step == "collect":
        collect(src, args.half, args.per_class)
    elif args.step == "extract":
        extract(src, args.out / f"{args.half}-extract{suffix}.jsonl", args.quotes, args.chars)
    elif args.step == "verdict":
        verdict(src, args.out / f"{args.half}-verdict{suffix}.jsonl", args.quotes, args.chars)
    elif args.step == "sentences":
        sentences(src, args.out / f"{args.half}-sentences.jsonl")
    else:
        evaluate(args.out, args.held)


if __name__ == "__main__":
    main()
