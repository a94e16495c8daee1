"""`rag db upgrade` and `rag migrate --to postgres|embedded`: the PostgreSQL store's schema, and copying an index
between the two backends without embedding anything again (docs/deployment.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from .cli_context import invocation
from .errors import ConfigError, IndexError_, InputError

db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL store's schema (store.backend: postgres).")
if TYPE_CHECKING:
    from .settings import Settings
    from .store.embedded import IndexStore

_BATCH = 200  # documents per commit while migrating


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create or migrate the database schema to this release's version; refuses a newer, unknown one."""
    from .pipeline import Pipeline
    from .store.postgres import connect, schema_version, upgrade_schema

    pipeline = Pipeline(invocation(ctx).settings())
    store = pipeline.settings.store
    if not store.dsn:
        raise ConfigError("store.dsn is not set: nothing to upgrade")
    with connect(store.dsn, password_file=store.password_file) as conn:
        before = schema_version(conn)
        _, end = upgrade_schema(conn, pipeline.manifest())
    typer.echo(f"schema version {before} -> {end}" if end != before else f"schema version {end} is current")


def migrate(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="postgres | embedded: the backend to copy the index into")],
    index_dir: Annotated[Path | None, typer.Option(help="the embedded index (default: index_dir)")] = None,
) -> None:
    """Copy every document, chunk, vector, label and the manifest from one backend to the other (an empty target),
    without embedding again; the counts of both are compared at the end."""
    if to not in ("postgres", "embedded"):
        raise InputError(f"--to must be postgres or embedded, not {to!r}")
    settings = invocation(ctx).settings()
    report = copy_index(settings, to=to, index_dir=index_dir or settings.index_dir)
    typer.echo(f"copied {report['documents']} documents, {report['chunks']} chunks to {to}; counts agree")


def copy_index(settings: Settings, *, to: str, index_dir: Path) -> dict:
    """Copy the index from the other backend into `to` (empty); returns the target's stats. Raises ConfigError
    (no store.dsn), InputError (the target is not empty), IndexError_ (the counts differ after the copy)."""
    from .store.embedded import IndexStore
    from .store.postgres import PostgresStore

    if not settings.store.dsn:
        raise ConfigError("store.dsn is not set: say which PostgreSQL database to use")
    embedded_manifest = _embedded_manifest(index_dir) if to == "postgres" else None
    postgres = PostgresStore.open(
        dsn=settings.store.dsn,
        manifest=embedded_manifest or {},
        check=False,
        upgrade=to == "postgres",
        password_file=settings.store.password_file,
    )
    try:
        manifest = embedded_manifest or postgres.manifest
        embedded = IndexStore.open(index_dir, manifest, check=True, dense=settings.retrieval.dense_index)
        try:
            source, target = (embedded, postgres) if to == "postgres" else (postgres, embedded)
            if target.documents():
                raise InputError(f"the {to} index already holds documents; migrate into an empty one")
            exported = _export_embedded(embedded) if to == "postgres" else postgres.export()
            with target.writer() as writer:
                writer.commit(manifest=manifest)
                batch: list = []
                for item in exported:
                    batch.append(item)
                    if len(batch) == _BATCH:
                        writer.commit(batch)
                        batch = []
                writer.commit(batch)
            target.refresh()
            before, after = source.stats(), target.stats()
            counts = ("documents", "chunks", "vectors", "bm25_rows")
            if any(before[key] != after[key] for key in counts) or len({after[k] for k in counts[1:]}) != 1:
                raise IndexError_(
                    "the copy's counts differ from the source's: "
                    + ", ".join(f"{k} {before[k]} -> {after[k]}" for k in counts)
                )
            return after
        finally:
            embedded.close()
    finally:
        postgres.close()


def _embedded_manifest(index_dir: Path) -> dict:
    path = Path(index_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(f"no embedded index in {index_dir} (no manifest.json)")
    return json.loads(path.read_text())


def _export_embedded(store: IndexStore) -> Iterator[tuple[dict, list]]:
    """Every document of an embedded index as the (document row, chunks) a writer commits: stored tokens and
    vectors, nothing recomputed."""
    from .store import NewChunk

    for doc in store.documents():
        text, blocks = store.document_text(doc.doc_id)
        rows = store.db.execute(
            'SELECT ordinal, start, "end", page, heading, lang, content_hash, text, tokens, vector FROM chunks '
            "WHERE doc_id = ? ORDER BY id",
            (doc.doc_id,),
        ).fetchall()
        chunks = [
            NewChunk(
                ordinal=r[0],
                start=r[1],
                end=r[2],
                page=r[3],
                heading_path=tuple(json.loads(r[4])),
                lang=r[5],
                content_hash=r[6],
                text=r[7],
                tokens=r[8].split(),
                vector=np.frombuffer(r[9], dtype=np.float32),
            )
            for r in rows
        ]
        yield {**doc.to_dict(), "text": text, "blocks": json.dumps(blocks)}, chunks
