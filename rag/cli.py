"""The `rag` command: a thin adapter over `Pipeline`. Errors become one line on stderr and a non-zero exit.

Exit codes: 0 success, 1 some inputs failed (ingest), 2 usage or configuration error, 3 index error, 4 not found.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from .cli_config import config_app
from .cli_context import invocation
from .cli_db import db_app, migrate
from .cli_eval import eval_app
from .cli_service import audit_app, keys_app, serve
from .errors import ConfigError, IndexError_, InputError, NotFoundError, RagError

if TYPE_CHECKING:
    import click

    from .pipeline import Pipeline
    from .records import DocumentRecord
    from .retrieve import Mode
    from .settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sovereign RAG: on-premise document QA.")
app.add_typer(config_app, name="config")
app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(eval_app, name="eval")
app.add_typer(db_app, name="db")
app.command()(migrate)

_EXIT_CODES = ((ConfigError, 2), (InputError, 2), (IndexError_, 3), (NotFoundError, 4), (RagError, 1))
# Set before any model library is imported: their own progress bars and notices stay off the console (ours remain).
_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output (see docs/cli.md)")]

# Commands that load the embedder, and those that also load the language model: their model files are checked
# against the configured sha256 pins before any work starts (rag/verify.py). `docs`, `stats` and `delete` read
# the index without any model.
_USES_EMBEDDER = frozenset({"ingest", "search", "ask", "chat", "reindex", "serve"})
_USES_LLM = frozenset({"ask", "chat", "serve"})


@app.callback()
def _main(ctx: typer.Context, config: ConfigOption = None) -> None:
    invocation(ctx).config = config
    if ctx.invoked_subcommand in _USES_EMBEDDER:
        from .verify import verify_models

        verify_models(invocation(ctx).settings(), llm=ctx.invoked_subcommand in _USES_LLM)


def _pipeline(ctx: typer.Context) -> Pipeline:
    from .pipeline import Pipeline

    return Pipeline(invocation(ctx).settings())


def _catalog(settings: Settings) -> Pipeline | None:
    """A pipeline over the index as it is on disk, for the commands that only read or delete its rows (`docs`,
    `stats`, `delete`): no model is loaded, and the index is not compared with the configured embedder, as no vector
    is computed. None when there is no index yet."""
    from .pipeline import Pipeline
    from .store import open_store

    if settings.store.backend == "embedded" and not (settings.index_dir / "manifest.json").is_file():
        return None
    store = open_store(settings, {}, check=False)
    return Pipeline(settings, store=store)


def _no_index(settings: Settings) -> IndexError_:
    return IndexError_(
        f"no index in {settings.index_dir} yet: `rag ingest FILES` creates it (index_dir, `rag config show`)"
    )


def _print_json(payload: object) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="files or folders (recursive)")],
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="access label (repeatable)")] = None,
    json_out: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Add or update documents; unchanged files cost nothing."""
    pipeline = _pipeline(ctx)
    report = pipeline.ingest(paths, labels=label, progress=not quiet and not json_out)
    if json_out:
        _print_json(report.to_dict())
    else:
        for _, reason in report.failed:
            typer.echo(f"failed: {reason}", err=True)
        for _, reason in report.skipped:
            typer.echo(f"skipped: {reason}", err=True)
        for source, pages in report.pages_ocr:
            typer.echo(f"note: {source}: page(s) {', '.join(map(str, pages))} read by OCR (no text layer)", err=True)
        for source, pages in report.pages_without_text:
            typer.echo(
                f"warning: {source}: no text on page(s) {', '.join(map(str, pages))} (scanned?), not searchable",
                err=True,
            )
        for source, original in report.duplicates:
            typer.echo(f"duplicate: {source} has the same bytes as {original}; not indexed again", err=True)
        typer.echo(
            f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
            f"{len(report.duplicates)} duplicates, {len(report.skipped)} skipped, "
            f"{len(report.failed)} failed; {report.chunks} chunks ({report.chunks_embedded} embedded) "
            f"in {report.seconds:.1f}s"
        )
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[
        int | None, typer.Option("-k", min=1, max=100, help="passages to return (default: retrieval.k)")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="hybrid | dense | bm25 (default: retrieval.mode)")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="only these document ids")] = None,
    lang: Annotated[list[str] | None, typer.Option("--lang", help="only documents in these languages")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="only documents these labels admit")] = None,
    json_out: JsonOption = False,
) -> None:
    """Find passages without generating an answer."""
    from .store import SearchFilter

    if mode is not None and mode not in ("hybrid", "dense", "bm25"):
        raise InputError(f"--mode must be hybrid, dense or bm25, not {mode!r}")
    if not query.strip():
        raise InputError("the query is empty")
    retrieval = invocation(ctx).settings().retrieval
    k, search_mode = k or retrieval.k, cast("Mode", mode) if mode else retrieval.mode  # checked above
    search_filter = SearchFilter(
        doc_ids=frozenset(doc) if doc else None,
        langs=frozenset(lang) if lang else None,
        labels=frozenset(label) if label else None,
    )
    hits = _pipeline(ctx).search(query, k=k, mode=search_mode, search_filter=search_filter)
    if json_out:
        _print_json({"query": query, "mode": search_mode, "k": k, "hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        typer.echo("no passages found")
    for rank, hit in enumerate(hits, 1):
        c = hit.chunk
        where = " > ".join(c.heading_path)
        page = f" p.{c.page}" if c.page else ""
        typer.echo(f"[{rank}] {hit.score:.4f}  {c.title}{page}  {where}  ({c.doc_id})")
        typer.echo("    " + " ".join(c.text.split())[:300])


AnswerMode = Annotated[str | None, typer.Option("--mode", help="generate | quote (default: answer.mode)")]
PassagesOption = Annotated[int | None, typer.Option("-k", min=1, max=100, help="passages to retrieve")]


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="the question")],
    json_out: JsonOption = False,
    mode: AnswerMode = None,
    k: PassagesOption = None,
) -> None:
    """Answer from the documents with verified citations, streaming as it is generated."""
    pipeline = _pipeline(ctx)
    if json_out:
        _print_json(pipeline.ask(question, k=k, mode=mode).to_dict())
        return
    from .chat import print_stream

    print_stream(pipeline.stream(question, k=k, mode=mode))


@app.command()
def chat(ctx: typer.Context, mode: AnswerMode = None, k: PassagesOption = None) -> None:
    """Interactive chat: streaming answers, sources, /help for commands."""
    from .chat import run_chat

    run_chat(_pipeline(ctx), mode=mode, k=k)


@app.command()
def docs(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List indexed documents, with the pages read by OCR and the pages still without text (no model is loaded)."""
    settings = invocation(ctx).settings()
    pipeline = _catalog(settings)
    records = pipeline.documents() if pipeline is not None else []
    if json_out:
        _print_json([d.to_dict() for d in records])
        return
    for d in records:
        typer.echo(f"{d.doc_id}  {d.lang}  {d.format:11}  {d.chunks:5} chunks  [{','.join(d.labels)}]  {d.title}")
        pages = page_notes(d)
        if pages:
            typer.echo(f"    {pages}")
    if settings.store.backend == "postgres":  # the DSN as `rag stats` shows it, without any password
        from .store.postgres import redact

        place = f"the PostgreSQL store {redact(settings.store.dsn or '')}"
    else:
        place = str(settings.index_dir) + (
            "" if pipeline is not None else " (no index yet: `rag ingest FILES` creates it)"
        )
    typer.echo(f"{len(records)} documents in {place}")


def page_notes(record: DocumentRecord) -> str:
    """`OCR: page(s) 2, 3; no text: page(s) 7 (not searchable)` for a scanned document, '' for any other."""
    ocr = record.pages_ocr
    empty = record.pages_without_text
    notes = [f"OCR: page(s) {', '.join(map(str, ocr))}"] if ocr else []
    notes += [f"no text: page(s) {', '.join(map(str, empty))} (not searchable)"] if empty else []
    return "; ".join(notes)


@app.command()
def delete(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(help="document ids (see `rag docs`) or the paths that were ingested")],
) -> None:
    """Remove documents from every part of the index (no model is loaded)."""
    settings = invocation(ctx).settings()
    pipeline = _catalog(settings)
    if pipeline is None:
        raise _no_index(settings)
    records = pipeline.documents()
    removed = pipeline.delete(resolve_targets(targets, records))
    sources = {r.doc_id: r.source for r in records}
    for doc_id in removed:
        typer.echo(f"deleted {doc_id}  {sources[doc_id]}")
    typer.echo(f"deleted {len(removed)} document(s)")


def resolve_targets(targets: list[str], records: list[DocumentRecord]) -> list[str]:
    """The ids of the documents `targets` name, in order, each once: a document id, or the path of an ingested file
    resolved as `rag ingest` resolves it (absolute, symlinks followed; the file need not exist any more).

    Raises NotFoundError for a target naming no document, InputError for one naming several (a folder of ingested
    files, or the id of one document and the path of another): nothing is deleted then."""
    by_id = {r.doc_id: r for r in records}
    by_source = {r.source: r for r in records}
    ids: dict[str, None] = {}
    for target in targets:
        path = str(Path(target).resolve())
        named = {r.doc_id for r in (by_id.get(target), by_source.get(path)) if r is not None}
        if len(named) > 1:
            raise InputError(
                f"{target!r} is the id of one document and the path of another ({path}); pass the "
                "other's id, from `rag docs`"
            )
        if not named:
            inside = [r for r in records if r.source.startswith(path.rstrip("/") + "/")]
            if inside:
                raise InputError(
                    f"{target} is a folder holding {len(inside)} indexed document(s); name the files or "
                    "ids one by one (`rag docs` lists them)"
                )
            raise NotFoundError(f"no indexed document has the id or path {target!r} ({path}); `rag docs` lists them")
        ids.update(dict.fromkeys(named))
    return list(ids)


@app.command()
def stats(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Index size and consistency figures (no model is loaded)."""
    settings = invocation(ctx).settings()
    pipeline = _catalog(settings)
    if pipeline is None:
        raise _no_index(settings)
    figures = pipeline.stats()
    if json_out:
        _print_json(figures)
        return
    for key in (
        "directory",
        "dsn",
        "generation",
        "documents",
        "chunks",
        "vectors",
        "bm25_rows",
        "languages",
        "bytes_on_disk",
        "bytes_in_database",
    ):  # directory/bytes_on_disk: embedded; dsn/bytes_in_database: postgres
        if key in figures:
            typer.echo(f"{key:14} {figures[key]}")
    embedder = figures["manifest"]["embedder"]
    typer.echo(f"{'embedder':14} {embedder['name']} ({embedder['fingerprint'][:12]}, {embedder['backend']})")
    dense = figures["dense_index"] or {}
    typer.echo(f"{'dense index':14} " + ", ".join(f"{k}={v}" for k, v in dense.items() if k != "vectors"))


@app.command()
def doctor(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Check models, index, egress guard, keys, disk and CPU; one pass/fail line each, exit 1 on any failure."""
    from .doctor import checks

    done = []
    for check in checks(invocation(ctx).config):  # each line as soon as its check completes
        done.append(check)
        if not json_out:
            typer.echo(f"{'PASS' if check.ok else 'FAIL'}  {check.name:17} {check.detail}")
    failed = [c for c in done if not c.ok]
    if json_out:
        _print_json({"ok": not failed, "checks": [c.to_dict() for c in done]})
    else:
        typer.echo(f"{len(failed)} of {len(done)} checks failed" if failed else f"all {len(done)} checks passed")
    raise typer.Exit(1 if failed else 0)


@app.command()
def reindex(ctx: typer.Context, quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False) -> None:
    """Rebuild every chunk and vector with the current embedder and chunker settings."""
    report = _pipeline(ctx).reindex(progress=not quiet)
    typer.echo(f"reindexed {len(report.updated)} documents, {report.chunks} chunks in {report.seconds:.1f}s")


def check_arguments(arguments: list[str]) -> None:
    """Raise InputError naming the first argument that is not UTF-8 text.

    Python hands undecodable bytes of the command line over as lone surrogates (PEP 383); no command can use them:
    a query or label is text, and the index stores file paths and ids as text."""
    for position, argument in enumerate(arguments, 1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"argument {position} ({os.fsencode(argument)!r}) is not valid UTF-8 text: pass it in "
                "UTF-8 (a file whose name is not UTF-8 must be renamed first)"
            ) from None


def main() -> None:
    """Console entry point: one readable line and an exit code for every expected failure."""
    from .sovereign import enforce_offline

    enforce_offline()  # already done by rag/__main__.py; here too for callers of rag.cli:main
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
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
        if isinstance(exc, _usage_errors()):
            usage = cast("click.ClickException", exc)  # typer's copy has the same interface
            usage.show()
            sys.exit(usage.exit_code)
        raise


def _usage_errors() -> tuple[type[Exception], ...]:
    """The classes of click's usage errors: click's own, and typer's copy of them (typer 0.2x vendors click as
    `typer._click`, whose exceptions are not click's), found through `typer.BadParameter`."""
    import click

    vendored = [kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "ClickException"]
    return (click.ClickException, *vendored)
