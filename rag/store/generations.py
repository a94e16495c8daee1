"""The embedded store's search structures and their generations: FAISS and BM25, derived from SQLite.

    dense-<gen>-<structure>.faiss   FAISS structure over generation <gen>'s vectors, ids = chunk ids; <structure>
                         names its type and build parameters (flat, ivf-2000, hnsw-m32-efc64: rag/dense.py)
    lexical-<gen>/       BM25 matrix of generation <gen>
    structures.lock      flock: shared while a process loads search structures, exclusive while one publishes or
                         removes them; distinct from the writer lock, so a writer never waits for either
    build.lock           flock held while a process builds and publishes a generation's structures, so that the
                         others load them rather than build them again

The files carry the generation they were built from in their names and are written under a temporary name of the
writing process (pid and a random suffix), fsynced, then renamed. A reader that finds no usable files for the
committed generation (missing, truncated, or not matching its rows) rebuilds them from SQLite (`load_snapshot`).
Each process builds the structures of a generation from its own read transaction (one process at a time, under
`build.lock`; the others then load its files), publishes them under `structures.lock` unless a newer generation is
already there, and removes only structures of older generations and temporary files of processes that have ended.
A generation's rows and structures form one immutable `Snapshot`.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..dense import DenseIndex, describe
from ..files import fsync
from ..lexical import LexicalIndex, top_k
from ..records import DocumentRecord, SearchFilter
from ..settings import DenseIndexSettings
from . import database

_MASKS_KEPT = 32  # filters whose row masks are kept (1 MB each at a million chunks)
_DENSE_FILE = re.compile(r"dense-(\d+)-(.+)\.faiss")
_LEXICAL_DIR = re.compile(r"lexical-(\d+)")
_TEMPORARY = re.compile(r".+\.tmp-(\d+)-[0-9a-f]+")  # see _temporary

log = logging.getLogger("rag.store")
_Structure = TypeVar("_Structure", DenseIndex, LexicalIndex)


class Snapshot:
    """One generation's rows and search structures, never changed once built: whoever holds it searches one
    generation's rows, masks and structures, whatever other threads or processes commit or load meanwhile.

    Row i is the i-th chunk in id order: `row_ids[i]` its chunk id, `row_doc[i]` its document's index in `docs`."""

    def __init__(
        self,
        *,
        generation: int,
        docs: list[DocumentRecord],
        row_ids: np.ndarray,
        row_doc: np.ndarray,
        dense: DenseIndex,
        lexical: LexicalIndex,
        seconds: dict[str, float],
    ):
        self.generation = generation
        self.docs = docs
        self.row_ids = row_ids
        self.row_doc = row_doc
        self.dense = dense
        self.lexical = lexical
        self.seconds = seconds  # what loading or building it took, by step
        self._lock = threading.Lock()  # the structures and the mask cache serve one thread at a time
        self._masks: dict[SearchFilter, np.ndarray] = {}

    def search(
        self, vector: np.ndarray | None, tokens: Sequence[str], depth: int, search_filter: SearchFilter | None
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(dense, lexical) of this generation, as `Store.search` (rag/store/base.py) describes them."""
        mask = self.allowed_rows(search_filter)
        dense = self.dense_search(vector, depth, mask) if vector is not None else []
        lexical = self.lexical_search(list(tokens), depth, mask) if tokens else []
        return dense, lexical

    def allowed_rows(self, search_filter: SearchFilter | None) -> np.ndarray | None:
        """Boolean mask over the rows (read-only), or None when nothing is filtered.

        Kept per filter: callers hold few distinct filters (one per API key's labels), and judging every document
        in Python took 11 ms per search at 31k documents (docs/benchmarks.md)."""
        if search_filter is None or search_filter == SearchFilter():
            return None
        with self._lock:
            mask = self._masks.get(search_filter)
            if mask is None:
                admitted = np.fromiter((search_filter.admits(d) for d in self.docs), dtype=bool, count=len(self.docs))
                mask = admitted[self.row_doc] if len(self.row_doc) else np.zeros(0, dtype=bool)
                mask.flags.writeable = False
                if len(self._masks) >= _MASKS_KEPT:
                    self._masks.pop(next(iter(self._masks)))
                self._masks[search_filter] = mask
        return mask

    def dense_search(self, vector: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the k nearest admitted rows, best first."""
        with self._lock:
            return self.dense.search(vector, k, mask)

    def lexical_search(self, tokens: list[str], k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the k best admitted rows sharing a term with `tokens`, best first."""
        with self._lock:
            scores = self.lexical.scores(tokens, mask)
        if not len(scores):
            return []
        return [(int(self.row_ids[i]), float(scores[i])) for i in top_k(scores, k) if scores[i] > 0]


def load_snapshot(directory: Path, dim: int, dense_settings: DenseIndexSettings) -> Snapshot:
    """The committed generation, read in one transaction of a private connection (the shared one stays free for
    the other threads), so its rows, vectors and tokens are one generation's whatever others commit.

    Its structures come from the published files when they load and fit the rows. Otherwise they are built under
    `build.lock`, so that one process builds a generation while the others wait for it and then load what it
    published (looking again once they hold the lock)."""
    timer = _Timer()
    db = sqlite3.connect(directory / "meta.sqlite", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN")
        generation = database.generation(db)
        with timer("rows"):
            docs, row_ids, row_doc = _rows(db)
        name = describe(dense_settings, len(row_ids))
        dense_path = directory / f"dense-{generation}-{name}.faiss"
        lexical_path = directory / f"lexical-{generation}"

        def published(
            dense: DenseIndex | None, lexical: LexicalIndex | None
        ) -> tuple[DenseIndex | None, LexicalIndex | None]:
            """Whichever of the two is still None, from its file; no file disappears while it is read."""
            with _flock(directory / "structures.lock", fcntl.LOCK_SH):
                if dense is None:
                    dense = _published(
                        timer,
                        "dense_load",
                        dense_path,
                        lambda: DenseIndex.load(dense_path, dense_settings, name),
                        lambda d: np.array_equal(d.ids, row_ids),
                    )
                if lexical is None:
                    lexical = _published(
                        timer,
                        "lexical_load",
                        lexical_path,
                        lambda: LexicalIndex.load(lexical_path),
                        lambda b: b.size == len(row_ids),
                    )
            return dense, lexical

        dense, lexical = published(None, None)
        missing = dense is None or lexical is None
        with _flock(directory / "build.lock", fcntl.LOCK_EX) if missing else contextlib.nullcontext():
            dense, lexical = published(dense, lexical)
            built: dict[Path, DenseIndex | LexicalIndex] = {}
            if dense is None:
                with timer("dense_build"):
                    dense = built[dense_path] = _build_dense(db, dim, len(row_ids), dense_settings)
            if lexical is None:
                with timer("lexical_build"):
                    lexical = built[lexical_path] = LexicalIndex.build(t for (t,) in _stored(db, "tokens"))
            with timer("persist"):
                _publish(directory, generation, dense_path, built)
    finally:
        db.close()  # ends the read transaction
    return Snapshot(
        generation=generation,
        docs=docs,
        row_ids=row_ids,
        row_doc=row_doc,
        dense=dense,
        lexical=lexical,
        seconds=timer.seconds,
    )


def _build_dense(db: sqlite3.Connection, dim: int, count: int, settings: DenseIndexSettings) -> DenseIndex:
    dense = DenseIndex.create(dim, count, settings)
    if dense.training_rows:  # IVF: cluster an evenly spread sample first
        every = max(1, count // dense.training_rows)
        sample = itertools.islice(_stored(db, "vector"), 0, None, every)
        dense.train(np.vstack([database.vector(v) for (v,) in sample][: dense.training_rows]))
    rows = _stored(db, "id, vector")
    while batch := rows.fetchmany(65536):
        dense.add(
            np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch)),
            np.vstack([database.vector(r[1]) for r in batch]),
        )
    return dense


def _rows(db: sqlite3.Connection) -> tuple[list[DocumentRecord], np.ndarray, np.ndarray]:
    """Documents, and each row's chunk id and document index, in chunk id order. Ids come from the covering index
    by document (a million rows: 1-2 s, against 5-6 s for a scan of the table, whose rows carry text and vectors),
    in the documents' order."""
    docs = database.documents(db)
    ids = np.fromiter(
        (i for (i,) in db.execute("SELECT id FROM chunks INDEXED BY chunks_by_doc ORDER BY doc_id")), np.int64
    )
    doc = np.repeat(np.arange(len(docs), dtype=np.int32), [d.chunks for d in docs])
    order = np.argsort(ids)
    return docs, ids[order], doc[order]


def _stored(db: sqlite3.Connection, columns: str) -> sqlite3.Cursor:
    """Every chunk's `columns`, in row (id) order."""
    return db.execute(f"SELECT {columns} FROM chunks ORDER BY id")


def _published(
    timer: _Timer, step: str, path: Path, load: Callable[[], _Structure], fits: Callable[[_Structure], bool]
) -> _Structure | None:
    """The structure at `path` if it exists, loads and `fits` the rows; None (rebuild it) otherwise."""
    if not path.exists():
        return None
    with timer(step):
        try:
            structure = load()
        except Exception as exc:  # noqa: BLE001 - any failure of FAISS/bm25s/json on a damaged file: SQLite rebuilds it
            log.warning("%s cannot be loaded (%s: %s); rebuilding it from SQLite", path, type(exc).__name__, exc)
            return None
    if not fits(structure):
        log.warning("%s does not match its generation's rows; rebuilding it from SQLite", path)
        return None
    return structure


def _publish(directory: Path, generation: int, dense_path: Path, built: dict[Path, DenseIndex | LexicalIndex]) -> None:
    """Make freshly built structures visible to other processes, and remove what no process needs any more.

    Each is saved under a temporary name of this process and fsynced before the structures lock is taken; under
    it, each is renamed into place unless that name exists or a newer generation is published already (stale on
    arrival: dropped). Then structures of older generations go (and another dense structure of this one), never a
    newer one, and temporary files of processes that no longer run. Best effort: a process that cannot write
    (read-only volume, disk full) keeps the structures in memory only."""
    staged: dict[Path, Path] = {}
    try:
        for path, structure in built.items():
            staged[path] = _temporary(path)
            structure.save(staged[path])
        if not staged and not _stale(directory, generation, dense_path):
            return
        with _flock(directory / "structures.lock", fcntl.LOCK_EX):
            if max(_generations(directory), default=-1) <= generation:
                for path, temporary in staged.items():
                    if not path.exists():
                        os.rename(temporary, path)
                fsync(directory)
            for path in _stale(directory, generation, dense_path):
                _remove(path)
    except OSError as exc:
        log.warning("cannot publish the search structures of generation %d in %s: %s", generation, directory, exc)
    finally:
        for temporary in staged.values():
            _remove(temporary)  # those not renamed


def _temporary(path: Path) -> Path:
    """A name no other process or thread writes: `<name>.tmp-<pid>-<random>`."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _generations(directory: Path) -> list[int]:
    """The generations whose structures are published."""
    found = (_DENSE_FILE.fullmatch(p.name) or _LEXICAL_DIR.fullmatch(p.name) for p in directory.iterdir())
    return [int(match.group(1)) for match in found if match]


def _stale(directory: Path, generation: int, dense_path: Path) -> list[Path]:
    """Structures of generations before `generation`, dense structures of `generation` other than `dense_path`
    (built with other parameters), and temporary files of processes that have ended."""
    stale = []
    for path in directory.iterdir():
        if match := _DENSE_FILE.fullmatch(path.name):
            old = int(match.group(1)) < generation or (int(match.group(1)) == generation and path != dense_path)
        elif match := _LEXICAL_DIR.fullmatch(path.name):
            old = int(match.group(1)) < generation
        else:
            match = _TEMPORARY.fullmatch(path.name)
            old = match is not None and not _running(int(match.group(1)))
        if old:
            stale.append(path)
    return stale


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file, or a folder by first renaming it to a temporary name (a crash midway leaves a name that the
    next `_publish` removes, never a half-deleted structure under a published name)."""
    if path.is_dir():
        doomed = path if _TEMPORARY.fullmatch(path.name) else _temporary(path)
        if doomed != path:
            os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    """flock of the file `path` (`fcntl.LOCK_SH` or `LOCK_EX`, waiting for it). Without a writable folder there is
    nobody to exclude: nothing can be published or removed there either."""
    try:
        handle = open(path, "a+")  # noqa: SIM115 - closed by the `with` below
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, mode)
        yield


class _Timer:
    """Seconds per named step: `with timer("step"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - started, 3)
