"""Offline evaluation: `rag eval run` and `rag eval compare` (docs/evaluation.md).

index.py     a scratch index of the dataset's documents, cached by content and embedder/chunker identity
question.py  one question -> one plain record (rankings, answer, citations, scores, timings)
summary.py   records -> aggregate metrics; paired bootstrap comparison of two runs
report.py    results.json, report.md and the PNG plots
run.py       the runner: progress, resume, provenance, quality gates
datasets.py  readers of the evaluation sets (SQuAD and parallel SQuAD pairs, BEIR, ClapNQ, articles, JSONL)
metrics.py   metric arithmetic: pure functions over plain data, fed by the modules above
"""

from .run import EvalRequest, run_eval
from .summary import compare_runs

__all__ = ["EvalRequest", "compare_runs", "run_eval"]
