"""`rag serve`, `rag keys create|list|revoke` and `rag audit verify|repair`: the commands around the HTTP service."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .cli_context import invocation

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP service (only their hashes are stored).")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail of the HTTP service.")


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="bind address (default server.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default server.port)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes, each with its own models")] = None,
) -> None:
    """Run the HTTP API; reference documentation at http://HOST:PORT/docs.

    With several workers, uvicorn starts each as a fresh interpreter that builds its own app, settings and egress guard
    (`rag.server:create_app_from_environment`): this process hands them the same configuration through its
    environment (`RAG_CONFIG` for `--config`, `RAG_SERVER__*` for the flags), which they inherit."""
    import uvicorn

    from .server import create_app
    from .server.app import check_exposure

    settings = invocation(ctx).settings()
    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    server = settings.server.model_copy(update=overrides)
    settings = settings.model_copy(update={"server": server})
    check_exposure(server)
    if server.workers == 1:
        # proxy_headers off: the client address must be the TCP peer, which proxy sign-in trusts (rag/proxy_auth.py)
        uvicorn.run(create_app(settings), host=server.host, port=server.port, log_level="info", proxy_headers=False)
        return
    worker_env = {f"RAG_SERVER__{name.upper()}": str(value) for name, value in overrides.items()}
    if settings.config_file is not None:
        worker_env["RAG_CONFIG"] = str(settings.config_file)
    os.environ.update(worker_env)  # the entry point's own environment, inherited by the workers it spawns
    uvicorn.run(
        "rag.server:create_app_from_environment",
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        log_level="info",
        proxy_headers=False,
        loop="asyncio",
    )  # uvloop sockets escape the egress guard


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    principal: Annotated[str, typer.Option("--principal", "-p", help="who the key is for, e.g. finance-team")],
    label: Annotated[list[str], typer.Option("--label", "-l", help="access label it holds (repeatable)")],
    admin: Annotated[bool, typer.Option("--admin", help="may upload and delete documents")] = False,
) -> None:
    """Create a key and print it once: it is stored hashed and cannot be shown again."""
    from .auth import KeyStore, keys_path

    key, record = KeyStore(keys_path(invocation(ctx).settings())).create(principal, label, admin=admin)
    typer.echo(key)
    typer.echo(
        f"key {record.key_id} for {record.principal} [{','.join(record.labels)}]"
        f"{' admin' if record.admin else ''}: store it now, it is not kept",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every key's id, principal, labels and state (never the key)."""
    from .auth import KeyStore, keys_path

    records = KeyStore(keys_path(invocation(ctx).settings())).records()
    if json_out:
        typer.echo(json.dumps([r.public() for r in records], indent=2))
        return
    for r in records:
        state = f"revoked {_date(r.revoked)}" if r.revoked else "active"
        typer.echo(
            f"{r.key_id}  {r.principal:20} [{','.join(r.labels)}]{' admin' if r.admin else ''}  "
            f"created {_date(r.created)}  {state}"
        )
    typer.echo(f"{len(records)} keys")


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="the id shown by `rag keys list`")],
) -> None:
    """Revoke a key; a running server refuses it from its next request on."""
    from .auth import KeyStore, keys_path

    record = KeyStore(keys_path(invocation(ctx).settings())).revoke(key_id)
    typer.echo(f"revoked key {record.key_id} of {record.principal}")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="the log (default audit.path)")] = None,
) -> None:
    """Check the hash chain; names the first edited, removed or reordered record, or a torn last record (line and
    byte offset), and exits 1."""
    from .audit import audit_path, verify

    path = file or audit_path(invocation(ctx).settings())
    result = verify(path)
    if not result.ok:
        where = f"line {result.bad_line}" if result.bad_line else "head"
        typer.echo(f"error: audit log {path}: {where}: {result.reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {result.records} records, chain intact; head {result.head or '(empty log)'}")


@audit_app.command("repair")
def audit_repair(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="the log (default audit.path)")] = None,
) -> None:
    """Seal a torn last record (an interrupted append): its bytes move to <log>.torn-<time> and a `repair` record
    continues the chain. Safe while the server runs. Any other damage is refused (exit 1): it is evidence."""
    from .audit import AuditLog, audit_path

    path = file or audit_path(invocation(ctx).settings())
    record = AuditLog(path).repair()
    if record is None:
        typer.echo(f"ok: audit log {path} is intact, nothing to repair")
        return
    typer.echo(
        f"sealed: {record['torn_bytes']} torn bytes at line {record['torn_line']} (byte "
        f"{record['torn_offset']}) moved to {path.with_name(record['side_file'])}; record {record['seq']} "
        f"(type repair) continues the chain; head {record['hash']}"
    )


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")
