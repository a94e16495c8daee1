"""The `rag` command: a thin adapter over `Pipeline`. Errors become one line on stderr and a non-zero exit.

Exit codes: 0 success, 1 some inputs failed (ingest), 2 usage or configuration error, 3 index error, 4 not found.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import ConfigError, IndexError_, InputError, NotFoundError, RagError
from .settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sovereign RAG: on-premise document QA.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")
app.add_typer(config_app, name="config")

_EXIT_CODES = ((ConfigError, 2), (InputError, 2), (IndexError_, 3), (NotFoundError, 4), (RagError, 1))

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output (see docs/cli.md)")]


class _State:
    config: Path | None = None


# Commands that load the embedder, and those that also load the language model: their model files are checked
# against the configured sha256 pins before any work starts (rag/provenance.py).
_USES_EMBEDDER = frozenset({"ingest", "search", "ask", "chat", "docs", "delete", "stats", "reindex", "serve"})
_USES_LLM = frozenset({"ask", "chat", "serve"})


@app.callback()
def _main(ctx: typer.Context, config: ConfigOption = None) -> None:
    _State.config = config
    if ctx.invoked_subcommand in _USES_EMBEDDER:
        from .provenance import verify_models

        verify_models(_settings(), llm=ctx.invoked_subcommand in _USES_LLM)


def _settings() -> Settings:
    return load_settings(_State.config)


def _pipeline():
    from .pipeline import Pipeline

    return Pipeline(_settings())


def _print_json(payload) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))


@config_app.command("show")
def config_show(json_out: JsonOption = False) -> None:
    """Print the effective configuration (defaults < YAML < environment)."""
    settings = _settings()
    if json_out:
        _print_json(settings.model_dump(mode="json"))
    else:
        import yaml

        typer.echo(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False, allow_unicode=True).rstrip())


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (recursive)")],
    label: Annotated[Optional[list[str]], typer.Option("--label", "-l", help="access label (repeatable)")] = None,
    json_out: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Add or update documents; unchanged files cost nothing."""
    pipeline = _pipeline()
    report = pipeline.ingest(paths, labels=label, progress=not quiet and not json_out)
    if json_out:
        _print_json(report.to_dict())
    else:
        for source, reason in report.failed:
            typer.echo(f"failed: {reason}", err=True)
        for source, pages in report.pages_ocr:
            typer.echo(f"note: {source}: page(s) {', '.join(map(str, pages))} read by OCR (no text layer)", err=True)
        for source, pages in report.pages_without_text:
            typer.echo(f"warning: {source}: no text on page(s) {', '.join(map(str, pages))} (scanned?), not searchable",
                       err=True)
        for source, original in report.duplicates:
            typer.echo(f"duplicate: {source} has the same bytes as {original}; not indexed again", err=True)
        typer.echo(
            f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
            f"{len(report.duplicates)} duplicates, "
            f"{len(report.failed)} failed; {report.chunks} chunks ({report.chunks_embedded} embedded) "
            f"in {report.seconds:.1f}s"
        )
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="passages to return")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid | dense | bm25")] = "hybrid",
    doc: Annotated[Optional[list[str]], typer.Option("--doc", help="only these document ids")] = None,
    lang: Annotated[Optional[list[str]], typer.Option("--lang", help="only documents in these languages")] = None,
    label: Annotated[Optional[list[str]], typer.Option("--label", help="only documents these labels admit")] = None,
    json_out: JsonOption = False,
) -> None:
    """Find passages without generating an answer."""
    from .store import SearchFilter

    if mode not in ("hybrid", "dense", "bm25"):
        raise InputError(f"--mode must be hybrid, dense or bm25, not {mode!r}")
    if not query.strip():
        raise InputError("the query is empty")
    search_filter = SearchFilter(
        doc_ids=frozenset(doc) if doc else None, langs=frozenset(lang) if lang else None,
        labels=frozenset(label) if label else None,
    )
    hits = _pipeline().search(query, k=k, mode=mode, search_filter=search_filter)
    if json_out:
        _print_json({"query": query, "mode": mode, "k": k, "hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        typer.echo("no passages found")
    for rank, hit in enumerate(hits, 1):
        c = hit.chunk
        where = " > ".join(c.heading_path)
        page = f" p.{c.page}" if c.page else ""
        typer.echo(f"[{rank}] {hit.score:.4f}  {c.title}{page}  {where}  ({c.doc_id})")
        typer.echo("    " + " ".join(c.text.split())[:300])


AnswerMode = Annotated[Optional[str], typer.Option("--mode", help="generate | quote (default: answer.mode)")]
PassagesOption = Annotated[Optional[int], typer.Option("-k", min=1, max=100, help="passages to retrieve")]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    json_out: JsonOption = False, mode: AnswerMode = None, k: PassagesOption = None,
) -> None:
    """Answer from the documents with verified citations, streaming as it is generated."""
    pipeline = _pipeline()
    if json_out:
        _print_json(pipeline.ask(question, k=k, mode=mode).to_dict())
        return
    from .chat import print_stream

    print_stream(pipeline.stream(question, k=k, mode=mode))


@app.command()
def chat(mode: AnswerMode = None, k: PassagesOption = None) -> None:
    """Interactive chat: streaming answers, sources, /help for commands."""
    from .chat import run_chat

    run_chat(_pipeline(), mode=mode, k=k)


@app.command()
def docs(json_out: JsonOption = False) -> None:
    """List indexed documents."""
    records = _pipeline().documents()
    if json_out:
        _print_json([d.to_dict() for d in records])
        return
    for d in records:
        typer.echo(f"{d.doc_id}  {d.lang}  {d.format:11}  {d.chunks:5} chunks  [{','.join(d.labels)}]  {d.title}")
    typer.echo(f"{len(records)} documents")


@app.command()
def delete(doc_ids: Annotated[list[str], typer.Argument(help="document ids (see `rag docs`)")]) -> None:
    """Remove documents from every part of the index."""
    removed = _pipeline().delete(doc_ids)
    typer.echo(f"deleted {len(removed)} document(s)")


@app.command()
def stats(json_out: JsonOption = False) -> None:
    """Index size and consistency figures."""
    figures = _pipeline().stats()
    if json_out:
        _print_json(figures)
        return
    for key in ("directory", "dsn", "generation", "documents", "chunks", "vectors", "bm25_rows", "languages",
                "bytes_on_disk", "bytes_in_database"):  # directory/bytes_on_disk: embedded; dsn/bytes_in_database: postgres
        if key in figures:
            typer.echo(f"{key:14} {figures[key]}")
    embedder = figures["manifest"]["embedder"]
    typer.echo(f"{'embedder':14} {embedder['name']} ({embedder['fingerprint'][:12]}, {embedder['backend']})")
    dense = figures["dense_index"] or {}
    typer.echo(f"{'dense index':14} " + ", ".join(f"{k}={v}" for k, v in dense.items() if k != "vectors"))


@app.command()
def doctor(json_out: JsonOption = False) -> None:
    """Check models, index, egress guard, keys, disk and CPU; one pass/fail line each, exit 1 on any failure."""
    from .doctor import run_checks

    checks = run_checks(_State.config)
    failed = [c for c in checks if not c.ok]
    if json_out:
        _print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            typer.echo(f"{'PASS' if c.ok else 'FAIL'}  {c.name:17} {c.detail}")
        typer.echo(f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed")
    raise typer.Exit(1 if failed else 0)


@app.command()
def reindex(quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False) -> None:
    """Rebuild every chunk and vector with the current embedder and chunker settings."""
    report = _pipeline().reindex(progress=not quiet)
    typer.echo(f"reindexed {len(report.updated)} documents, {report.chunks} chunks in {report.seconds:.1f}s")


from .cli_eval import eval_app  # noqa: E402 - the evaluation commands, registered here
from .cli_service import audit_app, keys_app, serve  # noqa: E402 - the service's commands, registered here

app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(eval_app, name="eval")
from .cli_db import db_app, migrate  # noqa: E402 - the PostgreSQL store's commands, registered here

app.add_typer(db_app, name="db")
app.command()(migrate)


def check_arguments(arguments: list[str]) -> None:
    """Raise InputError naming the first argument that is not UTF-8 text.

    Python hands undecodable bytes of the command line over as lone surrogates (PEP 383); no command can use them:
    a query or label is text, and the index stores file paths and ids as text."""
    for position, argument in enumerate(arguments, 1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"argument {position} ({os.fsencode(argument)!r}) is not valid UTF-8 text: pass it in "
                             "UTF-8 (a file whose name is not UTF-8 must be renamed first)") from None


def main() -> None:
    """Console entry point: one readable line and an exit code for every expected failure."""
    from .sovereign import enforce_offline

    enforce_offline()  # already done by rag/__main__.py; here too for callers of rag.cli:main
    try:
        check_arguments(sys.argv[1:])
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except RagError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(next(code for kind, code in _EXIT_CODES if isinstance(exc, kind)))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
