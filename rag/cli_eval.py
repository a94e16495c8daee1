"""`rag eval run` and `rag eval compare`: the evaluation harness (rag/eval/) behind two commands.

`run` exits 1 with one line per metric when a `--fail-under` gate fails, so CI can gate a change on quality.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_context import invocation
from .errors import InputError

eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval, answer, citation and abstention quality.")


@eval_app.command("run")
def run(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(help="dataset file or folder (docs/evaluation.md)")],
    format: Annotated[
        str | None,
        typer.Option("--format", help="squad | beir | clapnq | articles | jsonl (default: recognised from the path)"),
    ] = None,
    documents: Annotated[Path | None, typer.Option(help="documents folder of a generic JSONL or articles set")] = None,
    documents_of: Annotated[
        Path | None,
        typer.Option(
            "--documents-of",
            help="SQuAD file parallel to DATASET (e.g. another XQuAD language) whose paragraphs are indexed instead "
            "of DATASET's own: its questions over another language's documents",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="N questions evenly spaced through the dataset")] = None,
    mode: Annotated[str | None, typer.Option(help="generate | quote | retrieval (default: answer.mode)")] = None,
    out: Annotated[Path, typer.Option(help="output folder; rerunning into it resumes")] = Path("eval-out"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option("--fail-under", help="METRIC=VALUE: exit 1 when the metric is below VALUE (repeatable)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Evaluate the configuration on a dataset: results.json, report.md and plots in --out."""
    from .eval.run import EvalRequest, gate_failures, parse_gate, run_eval

    gates = [parse_gate(g) for g in fail_under or []]
    command = shlex.join(["rag", *sys.argv[1:]])
    request = EvalRequest(dataset, out, format, documents, limit, mode, command, documents_of=documents_of)
    try:
        results = run_eval(request, invocation(ctx).settings(config), progress=not quiet)
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finished questions are kept in {out}/records.jsonl, rerun to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"wrote {out}/results.json, {out}/report.md and plots ({results['run']['seconds']:.0f} s)")
    failures = gate_failures(results["aggregates"], gates)
    for failure in failures:
        typer.echo(f"fail-under: {failure}", err=True)
    raise typer.Exit(1 if failures else 0)


@eval_app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="baseline run: its --out folder or results.json")],
    b: Annotated[Path, typer.Argument(help="candidate run")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Per-metric B - A with paired bootstrap 95% intervals over the questions both runs share."""
    from .eval.report import table
    from .eval.summary import compare_runs

    comparison = compare_runs(_records(a), _records(b))
    if json_out:
        typer.echo(json.dumps(comparison, indent=2))
        return
    rows = [
        [
            r["metric"],
            r["a"],
            r["b"],
            f"{r['delta']:+.4f}",
            f"[{r['low']:+.4f}, {r['high']:+.4f}]",
            "*" if r["low"] > 0 or r["high"] < 0 else "",
        ]
        for r in comparison["rows"]
    ]
    typer.echo(table(["metric", "A", "B", "B - A", "95% CI", ""], rows))
    typer.echo(
        f"\n{comparison['questions']} paired questions, {comparison['resamples']} bootstrap resamples "
        f"(seed {comparison['seed']}); * the interval excludes 0"
    )


def _records(path: Path) -> list[dict]:
    results = path / "results.json" if path.is_dir() else path
    try:
        return json.loads(results.read_text())["records"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{results} is not the results.json of `rag eval run` ({exc})") from None
