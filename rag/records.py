"""What the index stores and returns, as plain typed records shared by every store backend and every front door.

Light on purpose (the standard library and numpy only, no FAISS, no SQLite): `rag keys`, the server's schemas and
the answer stage import these types without loading a search structure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

Decode = Callable[[Any], Iterable[Any]]  # a stored list column (JSON text, an array) -> its items
_Record = TypeVar("_Record")


def _from_row(
    cls: type[_Record], names: tuple[str, ...], row: Sequence[Any], decode: Decode, *, lists: tuple[str, ...]
) -> _Record:
    """`cls` from `row` holding the fields `names` in order, the fields in `lists` decoded into tuples."""
    values = dict(zip(names, row, strict=True))
    return cls(**{name: tuple(decode(value)) if name in lists else value for name, value in values.items()})


@dataclass(frozen=True)
class DocumentRecord:
    """One stored document as listed by `rag docs` and `GET /documents`.

    `pages` counts PDF/slide pages (None for formats without pages); `chars` counts characters of the extracted
    text; `ingested_at` is Unix time in seconds; `chunks` counts its stored passages. `pages_ocr` and
    `pages_without_text` hold the 1-based pages read by OCR and those still without text (scanned pages OCR could
    not read or was not allowed to)."""

    doc_id: str
    source: str
    title: str
    format: str
    lang: str
    sha256: str
    labels: tuple[str, ...]
    pages: int | None
    chars: int
    ingested_at: float
    chunks: int = 0
    pages_ocr: tuple[int, ...] = ()
    pages_without_text: tuple[int, ...] = ()

    @classmethod
    def from_row(cls, row: Sequence[Any], *, decode: Decode) -> DocumentRecord:
        """The record of a store's row holding `DOCUMENT_ROW`; `decode` reads its list columns (labels, the two
        page lists): `json.loads` for SQLite's JSON text, `tuple` for PostgreSQL's arrays. Raises ValueError for a
        row of another length."""
        return _from_row(cls, DOCUMENT_ROW, row, decode, lists=("labels", "pages_ocr", "pages_without_text"))

    def to_dict(self) -> dict:
        """JSON-ready fields; tuples become lists."""
        return {
            **asdict(self),
            "labels": list(self.labels),
            "pages_ocr": list(self.pages_ocr),
            "pages_without_text": list(self.pages_without_text),
        }


# The columns of a store's rows, in order, that `from_row` reads (every field of the record, named alike)
DOCUMENT_ROW = tuple(f.name for f in fields(DocumentRecord))


@dataclass(frozen=True)
class _Passage:
    """Where a chunk sits in its document and what it says; shared by stored and to-be-stored chunks.

    `start`/`end` are character offsets into the document's text, `page` is 1-based or None."""

    ordinal: int
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...]
    lang: str
    content_hash: str
    text: str


@dataclass(frozen=True)
class ChunkRecord(_Passage):
    """A stored passage with its id (a store's chunk id) and its document's id, title and source."""

    id: int
    doc_id: str
    title: str
    source: str

    @classmethod
    def from_row(cls, row: Sequence[Any], *, decode: Decode) -> ChunkRecord:
        """The record of a store's row holding `CHUNK_ROW` (the chunk's columns, then its document's title and
        source); `decode` reads the heading path as `DocumentRecord.from_row` reads lists. Raises ValueError for a
        row of another length."""
        return _from_row(cls, CHUNK_ROW, row, decode, lists=("heading_path",))


CHUNK_ROW = ("id", "doc_id", *(f.name for f in fields(_Passage)), "title", "source")


@dataclass(frozen=True)
class NewChunk(_Passage):
    """What a writer stores per chunk: the passage, its lexical tokens and its unit vector, shape (dim,) float32."""

    tokens: list[str]
    vector: np.ndarray


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions applied inside both searches; `labels` is what the caller holds (None: no restriction)."""

    doc_ids: frozenset[str] | None = None
    langs: frozenset[str] | None = None
    labels: frozenset[str] | None = None

    def admits(self, doc: DocumentRecord) -> bool:
        """Whether `doc` passes every restriction: listed id, listed language, labels all held by the caller."""
        return (
            (self.doc_ids is None or doc.doc_id in self.doc_ids)
            and (self.langs is None or doc.lang in self.langs)
            and (self.labels is None or set(doc.labels) <= self.labels)
        )
