"""The index's identity: format version, embedder and chunker, kept in SQLite and mirrored in manifest.json.

An index is refused when its manifest does not match the configuration (another embedder or chunker would make its
vectors or passages meaningless), with the fix: `rag reindex`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from .. import __version__
from ..errors import IndexMismatchError
from .database import read_state, write_state

FORMAT = "sovereign-rag-index/2"  # 2: document ids carry 128 bits of sha256 (rag/load/); 1: 32 bits of sha1


def new_manifest(embedder: dict, chunking: dict) -> dict:
    """The manifest of an index built with `embedder` (its identity, rag/embed.py) and `chunking` settings."""
    return {"format": FORMAT, "project_version": __version__, "embedder": embedder, "chunking": chunking}


def stored_manifest(db: sqlite3.Connection, directory: Path, wanted: dict, *, check: bool) -> dict:
    """The manifest of the index in `db`, written from `wanted` when it has none yet.

    Raises IndexMismatchError when `check` and the stored one differs in format, embedder or chunking."""
    stored = read_state(db, "manifest")
    if stored is None:
        db.execute("BEGIN IMMEDIATE")
        if read_state(db, "manifest") is None:
            write_state(db, "manifest", json.dumps(wanted))
        db.execute("COMMIT")
        write_manifest_file(directory, wanted)
        return wanted
    manifest = json.loads(stored)
    if check:
        _check_manifest(directory, manifest, wanted)
    return manifest


def write_manifest_file(directory: Path, manifest: dict) -> None:
    """Mirror `manifest` in `directory`/manifest.json, replaced atomically."""
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / "manifest.json")


def _check_manifest(directory: Path | str, stored: dict, wanted: dict) -> None:
    if stored.get("format") != FORMAT:
        raise IndexMismatchError(
            f"index {directory} has format {stored.get('format')!r}, this version reads {FORMAT!r}; run `rag reindex`"
        )
    for part in ("embedder", "chunking"):
        if stored.get(part) != wanted.get(part):
            raise IndexMismatchError(
                f"index {directory} was built with {part} {_describe(stored.get(part))}, the configuration asks for "
                f"{_describe(wanted.get(part))}; run `rag reindex` to rebuild it with the current settings"
            )


def _describe(part: dict | None) -> str:
    if not part:
        return "(none)"
    return ", ".join(f"{k}={str(v)[:16]}" for k, v in sorted(part.items()))
