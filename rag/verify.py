"""Before any model is used: find the configured models and check them against their sha256 pins.

`verify_models(settings)` runs before any command that loads a model does its work (rag/cli.py) and in the server's
app factory (rag/server/app.py), so a swapped, truncated or missing file stops start-up with the file's name and what
to do. `Pipeline` checks (and, with `sovereignty.require_pins`, requires) the pins again before it builds a model.
With `sovereignty.require_pins` (the default) an unpinned model is refused too; `rag doctor --json` prints the values
to pin. The returned hashes are what audit records and evaluation reports carry. The hashing itself is
rag/provenance.py, which the loaders (rag/embed.py, rag/generate.py) also use: this module sits above all three.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .embed import resolve_model_dir
from .errors import ConfigError
from .generate import resolve_model
from .provenance import check_embedder, file_sha256
from .settings import BUNDLED, Settings


@dataclass(frozen=True)
class ModelHashes:
    """What `verify_models` checked: the embedder folder with its fingerprint and files, the LLM and its sha256."""

    embedder_path: str
    embedder_fingerprint: str
    embedder_files: dict[str, str]
    llm_backend: str
    llm_model: str
    llm_path: str | None  # None when the weights live behind an HTTP server, or were not checked
    llm_sha256: str | None

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def verify_embedder(settings: Settings) -> tuple[Path, str, dict[str, str]]:
    """The embedder folder, its fingerprint and per-file sha256, checked against the pins; ConfigError otherwise."""
    folder = resolve_model_dir(settings.embedder)
    if settings.sovereignty.require_pins and settings.embedder.file_sha256 is None:
        raise ConfigError(
            f"the embedder files in {folder} are not pinned: set embedder.file_sha256 (`rag doctor --json` prints "
            "the current values) or, to trust whatever is there, sovereignty.require_pins: false"
        )
    return (folder, *check_embedder(settings.embedder, folder))


def verify_llm(settings: Settings) -> tuple[Path | None, str | None]:
    """The GGUF and its checked sha256; (None, None) for an HTTP backend."""
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
    return ModelHashes(
        str(folder),
        fingerprint,
        files,
        settings.llm.backend,
        settings.llm.model_name,
        str(path) if path else None,
        sha256,
    )
