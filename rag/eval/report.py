"""What a run leaves in its output folder: results.json, report.md and PNG plots (matplotlib, Agg backend).

The report is rendered from results.json alone, so it can be regenerated or diffed without the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from .calibration import expected_calibration_error, reliability
from .metrics import recall_at_k
from .question import DEPTH, RETRIEVERS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

NOT_AVAILABLE = "\N{EN DASH}"  # a table cell or figure the run did not produce
RANKING_METRICS = ("hit@1", "hit@5", "hit@10", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def write_outputs(results: dict, out: Path) -> list[Path]:
    """Write results.json, report.md and the PNG plots into `out` (created if needed); returns their paths.

    Raises ConfigError when matplotlib (the `eval` extra) is not installed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (out / "report.md").write_text(report_markdown(results))
    return [out / "results.json", out / "report.md", *write_plots(results, out)]


# ---------------------------------------------------------------------------------------------- markdown
def report_markdown(results: dict) -> str:
    """The Markdown report of `results` (results.json's content): header, retrieval, answers, citations, abstention,
    cost and provenance; a section without data is left out."""
    run, agg = results["run"], results["aggregates"]
    records = results["records"]
    sections = [
        _header(run, records),
        _retrieval(agg, run["dataset"]["format"]),
        _answers(agg),
        _citations(agg),
        _abstention(agg, records),
        _cost(agg),
        _provenance(run),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; a None cell shows as an en dash, a float with 3 decimals (none from 100 on)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _header(run: dict, records: list[dict]) -> str:
    """Run time twice: the last invocation's, and the questions' own summed over every resumed invocation."""
    data = run["dataset"]
    return (
        f"# Evaluation: {data['name']} ({data['format']}), {run['mode']} mode\n\n"
        f"{data['evaluated']} of {data['questions']} questions ({_limit(data['limit'])}), "
        f"{data['documents']} documents, on {run['machine']['cpus']} CPUs. Questions took "
        f"{sum(r['seconds'] for r in records):.0f} s in all; the last invocation {run['seconds']:.0f} s "
        f"(finished {run['finished']}).\n\n`{run['command']}`"
    )


def _limit(limit: int | None) -> str:
    return "all" if limit is None else f"--limit {limit}, evenly spaced"


def _retrieval(agg: dict, fmt: str) -> str:
    """The ranking metrics per retriever; an `articles` set is scored per article, every other per document."""
    level = "article" if fmt == "articles" else "document"
    rows = [
        [name, *(agg.get(f"retrieval.{name}.{m}") for m in RANKING_METRICS)]
        for name in RETRIEVERS
        if agg.get(f"retrieval.{name}.hit@1") is not None
    ]
    return (
        f"## Retrieval (questions with a gold document; {level} level)\n\n"
        + table(["retriever", *RANKING_METRICS], rows)
        if rows
        else ""
    )


def _answers(agg: dict) -> str:
    if agg.get("answer.f1") is None:
        return ""
    return "## Answers (answerable questions; an abstention scores 0)\n\n" + table(
        ["exact match", "token F1", "token recall"], [[agg["answer.em"], agg["answer.f1"], agg["answer.token_recall"]]]
    )


def _citations(agg: dict) -> str:
    rows = [
        [judge, agg.get(f"citation.{judge}.recall"), agg.get(f"citation.{judge}.precision")]
        for judge in ("verifier", "strict")
    ]
    if all(r[1] is None for r in rows):
        return ""
    return (
        "## Citations (ALCE; answers that were not abstentions)\n\n"
        + table(["judge", "recall", "precision"], rows)
        + f"\n\nShare of answer sentences the verifier removed: {_cell(agg.get('citation.removed_share'))}"
    )


def _abstention(agg: dict, records: list[dict]) -> str:
    if agg.get("abstention.rate") is None:
        return ""
    unanswerable = sum(1 for r in records if not r["answerable"])
    answerable = [r for r in records if r["answerable"]]
    abstained_answerable = sum(r["abstained"] for r in answerable) / len(answerable) if answerable else None
    text = f"## Abstention ({unanswerable} unanswerable of {len(records)})\n\n" + table(
        ["abstain rate", "precision", "recall", "F1", "answerable abstained on"],
        [
            [
                agg["abstention.rate"],
                *(agg.get(f"abstention.{m}") for m in ("precision", "recall", "f1")),
                abstained_answerable,
            ]
        ],
    )
    bins = _reliability_bins(records)
    if bins:
        text += (
            "\n\nReliability of the answer confidence (predicted probability that the passages answer vs the "
            f"observed share of answerable questions; expected calibration error "
            f"{expected_calibration_error(bins):.3f}):\n\n"
            + table(
                ["confidence", "mean predicted", "observed", "questions"],
                [
                    [f"{b['low']:.1f}{NOT_AVAILABLE}{b['high']:.1f}", b["predicted"], b["observed"], b["n"]]
                    for b in bins
                ],
            )
            + "\n\n![reliability diagram](reliability.png)"
        )
    return text


def _reliability_bins(records: list[dict]) -> list[dict]:
    scored = [r for r in records if "confidence" in r]
    if not scored:
        return []
    return reliability(np.array([r["confidence"] for r in scored]), np.array([r["answerable"] for r in scored], int))


STAGES = ("rank_ms", "retrieval_ms", "ttft_ms", "answer_ms", "verify_ms", "total_ms")
STAGE_NAMES = {
    "rank_ms": "rankings (dense + BM25, for the retrieval table)",
    "retrieval_ms": "retrieval (answer)",
    "ttft_ms": "time to first token",
    "answer_ms": "generation or quoting",
    "verify_ms": "verification",
    "total_ms": "answer total",
}


def _cost(agg: dict) -> str:
    rows = [
        [STAGE_NAMES[stage], *(f"{agg[f'cost.{stage}.{q}']:.1f}" for q in ("p50", "p95"))]
        for stage in STAGES
        if agg.get(f"cost.{stage}.p50") is not None
    ]
    tokens = [
        f"{name}: {agg[f'cost.{key}']:.1f}"
        for name, key in (
            ("prompt tokens (mean)", "prompt_tokens.mean"),
            ("generated tokens (mean)", "generated_tokens.mean"),
            ("tokens/s (median)", "tokens_per_s.p50"),
        )
        if agg.get(f"cost.{key}")
    ]
    return (
        "## Cost (ms per question)\n\n"
        + table(["stage", "p50", "p95"], rows)
        + ("\n\n" + "; ".join(tokens) if tokens else "")
    )


def _embedder_line(embedder: dict) -> str:
    graph = f", graph sha256 `{embedder['backend_sha256']}`" if embedder.get("backend_sha256") else ""
    return (
        f"- embedder {embedder['name']} fingerprint `{embedder['fingerprint']}`, backend "
        f"{embedder.get('backend', 'torch')}{graph}"
    )


def _provenance(run: dict) -> str:
    models, index = run["models"], run["index"]
    llm = models.get("llm") or {}
    lines = [
        f"- project version {run['version']}; {run['machine']['platform']}, Python {run['machine']['python']}",
        f"- dataset {run['dataset']['path']} sha256 `{run['dataset']['sha256']}`",
        _embedder_line(models["embedder"]),
        f"- language model {llm.get('model', NOT_AVAILABLE)} sha256 `{llm.get('sha256')}`"
        if llm
        else "- no language model",
        f"- index {index['directory']} ({'reused' if index['reused'] else 'built'}, {index['chunks']} chunks, "
        f"{index['build_seconds']} s)",
    ]
    return "## Provenance\n\n" + "\n".join(lines) + "\n\nFull configuration: results.json → run.config."


# ---------------------------------------------------------------------------------------------- plots
def write_plots(results: dict, out: Path) -> list[Path]:
    """Draw the plots the run has data for (recall@k, latency per stage, support, reliability) as PNG files in `out`,
    with matplotlib's Agg backend; returns their paths. Raises ConfigError without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the evaluation plots need matplotlib: pip install 'sovereign-rag[eval]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    records, paths = results["records"], []
    for name, draw in (
        ("recall_at_k.png", _recall_curves),
        ("latency.png", _latency),
        ("support.png", lambda ax, r: _support(ax, r, results["run"]["config"])),
        ("reliability.png", _reliability),
    ):
        figure, axes = pyplot.subplots(figsize=(6, 4))
        if draw(axes, records):
            figure.tight_layout()
            figure.savefig(out / name, dpi=100)
            paths.append(out / name)
        pyplot.close(figure)
    return paths


def _recall_curves(axes: Axes, records: list[dict]) -> bool:
    scored = [r for r in records if r["gold_doc_ids"]]
    if not scored:
        return False
    ks = range(1, DEPTH + 1)
    for name in RETRIEVERS:
        curve = [
            sum(recall_at_k(r["retrieved"][name], set(r["gold_doc_ids"]), k) for r in scored) / len(scored) for k in ks
        ]
        axes.plot(list(ks), curve, marker=".", label=name)
    axes.set(xlabel="k (documents)", ylabel="recall@k", ylim=(0, 1.02), title=f"Recall@k, {len(scored)} questions")
    axes.grid(alpha=0.3)
    axes.legend()
    return True


def _latency(axes: Axes, records: list[dict]) -> bool:
    """On a log scale: a search takes tens of milliseconds, a generation seconds."""
    values = {
        stage: [r["timings"][stage] for r in records if r["timings"].get(stage)]
        for stage in STAGES
        if stage != "ttft_ms"
    }
    values = {stage: v for stage, v in values.items() if v}
    if not values:
        return False
    everything = [x for v in values.values() for x in v]
    bins = np.geomspace(min(everything), max(everything) * 1.01, 40)
    for stage, v in values.items():
        axes.hist(v, bins=bins.tolist(), alpha=0.5, label=stage.removesuffix("_ms"))
    axes.set(xscale="log", xlabel="milliseconds (log scale)", ylabel="questions", title="Latency per stage")
    axes.legend()
    return True


def _support(axes: Axes, records: list[dict], config: dict) -> bool:
    sentences = [s for r in records for s in r.get("sentences", [])]
    if not sentences:
        return False
    for kept, label in ((True, "kept"), (False, "removed")):
        axes.hist(
            [s["support"] for s in sentences if s["kept"] is kept],
            bins=20,
            range=(0, 1),
            alpha=0.6,
            label=f"{label} ({sum(1 for s in sentences if s['kept'] is kept)})",
        )
    axes.axvline(config["answer"]["min_support"], color="black", linestyle="--", label="answer.min_support")
    axes.set(xlabel="verifier support", ylabel="sentences", title="Support of answer sentences")
    axes.legend()
    return True


def _reliability(axes: Axes, records: list[dict]) -> bool:
    """Predicted probability that the passages answer against the observed share of answerable questions, per bin;
    the diagonal is perfect calibration, a marker's area the bin's question count."""
    bins = _reliability_bins(records)
    if not bins:
        return False
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    axes.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label="this run")
    axes.scatter([b["predicted"] for b in bins], [b["observed"] for b in bins], s=[8 * b["n"] for b in bins], alpha=0.3)
    axes.set(
        xlabel="predicted probability that the passages answer",
        ylabel="observed share answerable",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"Reliability, {sum(b['n'] for b in bins)} questions",
    )
    axes.legend(loc="upper left")
    return True
