"""The tables of docs/evaluation.md's "Issue 16 through `rag eval`" section, from the outputs of `rag eval run`.

Reads bench/results/eval/<set>-retrieval-<config>/results.json for every set of SETS and both configurations
(`english`: `--config configs/english.yaml`, all-MiniLM-L6-v2, the default until 2026-12-08; `default`: the
multilingual USE v3) and prints four markdown tables:

1. per set and retriever (dense, BM25, hybrid), hit@1 / hit@5 / nDCG@10 of each configuration, with the questions;
2. default minus english (the hybrid's hit@1, hit@5, nDCG@10, in points), with the paired bootstrap 95% interval of
   `rag eval compare` (`rag.eval.compare_runs`: the same 1000 resamples, seed 0, over the questions both runs share);
3. hybrid minus the better single retriever (dense or BM25, by nDCG@10 over the set), nDCG@10 points, with the same
   paired bootstrap over the questions of one run (issue 16, item 2);
4. the index cost beside it: chunks, chunks/s of the build (when the run built its index: a cross-lingual set
   reuses its documents' index) and bytes per chunk of the scratch index on disk (while it is still cached).

A set whose run is missing is left out of the tables. Run the evaluations first (docs/evaluation.md gives the
commands), then:

    python -m bench.eval_tables
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.eval.summary import compare_runs

RESULTS = Path(__file__).with_name("results") / "eval"
SETS = {  # folder prefix -> label
    "xquad-en": "XQuAD-en",
    "xquad-de": "XQuAD-de",
    "piaf-fr": "PIAF-fr",
    "xquad-de-over-en": "XQuAD de>en",
    "xquad-en-over-de": "XQuAD en>de",
    "legal": "legal",
}
CONFIGS = ("english", "default")  # A, B of the comparison
METRICS = ("hit@1", "hit@5", "ndcg@10")
SINGLE = ("dense", "bm25")


def results(folder: str, config: str) -> dict | None:
    """The results.json of one run, or None when it was not run."""
    path = RESULTS / f"{folder}-retrieval-{config}" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def index_cost(index: dict) -> str:
    """`chunks | chunks/s | bytes per chunk` of a run's scratch index (its `run.index`), "-" for what is unknown."""
    rate = f"{index['chunks'] / max(index['build_seconds'], 0.1):.1f}" if not index["reused"] else "- (reused)"
    files = [f for f in Path(index["directory"]).rglob("*") if f.is_file()]
    size = f"{sum(f.stat().st_size for f in files) / max(index['chunks'], 1):.0f}" if files else "-"
    return f"{index['chunks']} | {rate} | {size}"


def mean(rows: list[dict], metric: str) -> float:
    """The mean of `retrieval.<retriever>.<metric>` over the records that have it."""
    values = [r["scores"][metric] for r in rows if metric in r["scores"]]
    return sum(values) / len(values)


def single_metric(rows: list[dict], retriever: str, metric: str) -> list[dict]:
    """Records holding one score under one name, so that two retrievers of one run can be compared by
    `compare_runs` as if they were two runs."""
    return [
        {"id": r["id"], "answerable": True, "timings": {}, "scores": {metric: r["scores"][key]}}
        for r in rows
        if (key := f"retrieval.{retriever}.{metric}") in r["scores"]
    ]


def interval(row: dict) -> str:
    """A `compare_runs` row's B - A and its 95% interval in points (x 100), `*` when the interval excludes 0."""
    star = " *" if row["low"] > 0 or row["high"] < 0 else ""
    return f"{100 * row['delta']:+.1f} [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]{star}"


def main() -> None:
    outputs = {(s, c): out for s in SETS for c in CONFIGS if (out := results(s, c)) is not None}
    runs = {key: out["records"] for key, out in outputs.items()}
    print(f"| set | questions | retriever | {' | '.join(CONFIGS)} |\n|---|---|---|{'---|' * len(CONFIGS)}")
    for folder in SETS:
        for retriever in ("dense", "bm25", "hybrid"):
            cells = [
                " / ".join(f"{mean(runs[folder, c], f'retrieval.{retriever}.{m}'):.3f}" for m in METRICS)
                if (folder, c) in runs
                else "-"
                for c in CONFIGS
            ]
            questions = next((len(runs[folder, c]) for c in CONFIGS if (folder, c) in runs), None)
            if questions is not None:
                print(f"| {SETS[folder]} | {questions} | {retriever} | {' | '.join(cells)} |")

    print(f"\n{CONFIGS[1]} - {CONFIGS[0]}, hybrid, points, paired bootstrap 95% interval (* excludes 0):\n")
    print("| set | questions | hit@1 | hit@5 | nDCG@10 |\n|---|---|---|---|---|")
    for folder in SETS:
        if all((folder, c) in runs for c in CONFIGS):
            comparison = compare_runs(*(runs[folder, c] for c in CONFIGS))
            by_metric = {r["metric"]: r for r in comparison["rows"]}
            cells = " | ".join(interval(by_metric[f"retrieval.hybrid.{m}"]) for m in METRICS)
            print(f"| {SETS[folder]} | {comparison['questions']} | {cells} |")

    print("\nhybrid - the better single retriever, nDCG@10 points, paired bootstrap 95% interval:\n")
    print("| set | configuration | better single | hybrid - it |\n|---|---|---|---|")
    for (folder, config), rows in runs.items():
        best = max(SINGLE, key=lambda retriever: mean(rows, f"retrieval.{retriever}.ndcg@10"))
        comparison = compare_runs(single_metric(rows, best, "ndcg@10"), single_metric(rows, "hybrid", "ndcg@10"))
        print(f"| {SETS[folder]} | {config} | {best} | {interval(comparison['rows'][0])} |")

    print("\nindex cost:\n")
    print("| set | configuration | chunks | chunks/s | bytes per chunk |\n|---|---|---|---|---|")
    for (folder, config), out in outputs.items():
        print(f"| {SETS[folder]} | {config} | {index_cost(out['run']['index'])} |")


if __name__ == "__main__":
    main()
