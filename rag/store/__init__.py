"""The index behind one interface (`Store`, rag/store/base.py); `open_store` opens the configured backend.

Light to import: the embedded backend (FAISS, bm25s) loads in `open_store` or from rag/store/embedded.py.
"""

from ..records import ChunkRecord, DocumentRecord, NewChunk, SearchFilter
from .base import Store, StoreWriter, open_store
from .manifest import FORMAT, new_manifest

__all__ = [
    "FORMAT",
    "ChunkRecord",
    "DocumentRecord",
    "NewChunk",
    "SearchFilter",
    "Store",
    "StoreWriter",
    "new_manifest",
    "open_store",
]
