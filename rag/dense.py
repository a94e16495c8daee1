"""The dense search structure: exact flat inner product for small indexes, an approximate one (IVF or HNSW) above.

SQLite holds the vectors (rag/store/); this structure is derived from them for one generation and never edited in
place. `retrieval.dense_index.type` chooses it: `auto` keeps exact search up to `auto_threshold` vectors and switches
to `auto_type` above. The figures behind both defaults (docs/benchmarks.md, "Scale"; 2 cores at load 3-8): a flat
scan grows linearly, 17-28 ms per question at 100k vectors, 36-69 ms at 200k, 111-230 ms at 1M, so exact search stops
at 100k.
IVF rather than HNSW above: on the million-vector benchmark (real Legilux vectors copied with noise, so that every
passage has dozens of near-equidistant neighbours, as repeated boilerplate articles do in real collections) HNSW
found 36% of the exact top 10 at efSearch 128 and 60% at 512, while IVF's exhaustive scan of each probed list found
97% at nprobe 64 in a few milliseconds. IVF also keeps its recall under a filter (a probed list is scanned whole).

A filter stays inside the search, so top-k means k permitted passages, not k passages filtered afterwards:

* flat: exact, skipping rows outside a bitmap of permitted row positions;
* approximate, filter admitting at most `exact_filter_rows` rows: brute force over just those rows, read back from
  the structure. A graph walk or a few probed lists meet too few of them to fill k, and so few rows are cheap;
* approximate, broader filter: the approximate search with the bitmap; HNSW widens its candidate list by the inverse
  share of permitted rows (capped), so about as many permitted candidates are compared as without a filter.

FAISS ids are chunk ids (IndexIDMap2 around the structure, saved with it); inside, row i of the structure is row i of
the generation's chunks in id order, which is what the bitmaps and the exact fallback address.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .files import fsync
from .settings import DenseIndexSettings

_MAX_EF_SEARCH = 4096  # widening for a filter stops here (efSearch 4096 took ~55 ms at a million vectors)


def choose_type(settings: DenseIndexSettings, count: int) -> str:
    """ "flat", "hnsw" or "ivf" for `count` vectors: the configured type, or under `auto` flat up to
    `auto_threshold` vectors and `auto_type` above (an empty index is always flat)."""
    if count == 0:
        return "flat"
    if settings.type != "auto":
        return settings.type
    return "flat" if count <= settings.auto_threshold else settings.auto_type


def ivf_lists(settings: DenseIndexSettings, count: int) -> int:
    """`ivf_lists`, or 2·√n, never more than one list per 39 training vectors. FAISS suggests 4·√n to 16·√n; k-means
    training grows with the square of the list count, and at a million vectors 4,000 lists took 14 minutes to build
    for the same recall as 2,000 lists in 3 (nprobe 64: 0.97)."""
    wanted = settings.ivf_lists or int(2 * math.sqrt(max(count, 1)))
    return max(1, min(wanted, count // 39))


def describe(settings: DenseIndexSettings, count: int) -> str:
    """The build-time parameters, which name the structure's file: changing one rebuilds it; search-time ones
    (efSearch, nprobe) apply to an existing file."""
    kind = choose_type(settings, count)
    if kind == "hnsw":
        return f"hnsw-m{settings.hnsw_m}-efc{settings.hnsw_ef_construction}"
    if kind == "ivf":
        return f"ivf-{ivf_lists(settings, count)}"
    return "flat"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """FAISS parallelises a single query over OpenMP threads whose barriers stall whenever another process holds a
    core: on the shared 2-core machine a 20k-vector flat search took 64 ms with two threads and 2-18 ms with one
    (docs/benchmarks.md). OpenMP's thread count is per calling thread, so builds elsewhere keep every core."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class DenseIndex:
    """A FAISS structure over unit vectors whose labels are chunk ids.

    Parameters
    ----------
    index : faiss.IndexIDMap2
        The structure (`IndexFlatIP`, `IndexHNSWFlat` or `IndexIVFFlat`, inner product) wrapped with its id map.
    settings : DenseIndexSettings
        The search-time parameters (efSearch, nprobe, `exact_filter_rows`).
    name : str
        What `describe(settings, count)` called it when it was built, e.g. "ivf-632"; its prefix is the type.
    """

    def __init__(self, index: faiss.IndexIDMap2, settings: DenseIndexSettings, name: str):
        self.index = index
        self.settings = settings
        self.name = name
        self.inner: Any = faiss.downcast_index(index.index)  # the concrete class: HNSW's, IVF's or the flat one
        self.type = name.split("-")[0]
        self.ids = faiss.vector_to_array(index.id_map)  # chunk id of each row, in row order
        self._rows_readable = self.type != "ivf"  # IVF reads rows back once it has made its direct map

    @classmethod
    def create(cls, dim: int, count: int, settings: DenseIndexSettings) -> DenseIndex:
        """An empty structure for `count` vectors; an IVF one must be `train`ed before vectors are added."""
        name = describe(settings, count)
        kind = choose_type(settings, count)
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = settings.hnsw_ef_construction
        elif kind == "ivf":
            lists = ivf_lists(settings, count)
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexFlatIP(dim)
        return cls(faiss.IndexIDMap2(inner), settings, name)

    @classmethod
    def load(cls, path: Path, settings: DenseIndexSettings, name: str) -> DenseIndex:
        """The structure `save` wrote to `path`; FAISS raises RuntimeError for a missing or damaged file."""
        return cls(faiss.read_index(str(path)), settings, name)

    @property
    def training_rows(self) -> int:
        """How many vectors `train` wants (0: none needed)."""
        return 0 if self.inner.is_trained else min(64 * self.inner.nlist, 1 << 18)

    def train(self, sample: np.ndarray) -> None:
        """Train IVF's coarse quantiser (k-means, 10 iterations) on `sample`, `(m, dim) float32`, m <= training_rows."""
        self.inner.cp.niter = 10  # k-means iterations, FAISS's default is 25: training dominates the build
        self.inner.train(sample)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append `vectors`, `(n, dim) float32` unit rows, labelled with the chunk `ids`, `(n,) int64` ascending."""
        self.index.add_with_ids(vectors, ids)
        self.ids = np.concatenate([self.ids, ids])

    @property
    def size(self) -> int:
        """Number of vectors in the structure."""
        return int(self.index.ntotal)

    def save(self, path: Path) -> None:
        """Write to `path` and fsync it; the caller names it and publishes it (rag/store/: a temporary name of its
        own, then a rename under the structures lock). Raises OSError (FAISS's RuntimeError is turned into one)."""
        try:
            faiss.write_index(self.index, str(path))
        except RuntimeError as exc:  # FAISS reports a failed write (disk full, read-only) as a RuntimeError
            raise OSError(f"cannot write {path}: {exc}") from exc
        fsync(path)

    def describe(self) -> dict:
        """Its type, file name, vector count and search-time parameters, for `rag stats` and `rag doctor`."""
        figures = {"type": self.type, "structure": self.name, "vectors": self.size}
        if self.type == "hnsw":
            figures["ef_search"] = self.settings.hnsw_ef_search
        elif self.type == "ivf":
            figures["lists"] = int(self.inner.nlist)
            figures["nprobe"] = min(self.settings.ivf_nprobe, int(self.inner.nlist))
        return figures

    # ---------------------------------------------------------------- searching
    def search(self, vector: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """The `k` best admitted rows as (chunk id, cosine similarity in [-1, 1]) pairs, best first.

        `vector` is the query, `(dim,)` float32 and unit length; `mask`, `(size,)` bool, admits rows by position (row
        i is the i-th chunk of the generation in id order), None admits all. Fewer than `k` pairs when fewer rows are
        admitted; approximate structures may also miss some of the true top k (see the module docstring).
        """
        allowed = self.size if mask is None else int(np.count_nonzero(mask))
        if allowed == 0:
            return []
        k = min(k, allowed)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if mask is not None and self.type != "flat" and allowed <= self.settings.exact_filter_rows:
            return self._exact(query[0], k, np.flatnonzero(mask))
        bitmap = selector = None
        if mask is not None:
            bitmap = np.packbits(mask, bitorder="little")  # kept alive during the search: FAISS holds a raw pointer
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        with one_thread():
            scores, rows = self.inner.search(query, k, params=self._parameters(allowed, selector))
        return [(int(self.ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]

    def _exact(self, query: np.ndarray, k: int, rows: np.ndarray) -> list[tuple[int, float]]:
        """Brute force over a few admitted rows, read back from the structure (HNSW's flat storage, IVF's lists)."""
        if not self._rows_readable:
            self.inner.make_direct_map()  # row -> (list, offset); 8 bytes a row
            self._rows_readable = True
        with one_thread():
            vectors = self.inner.reconstruct_batch(rows)
        scores = np.einsum("ij,j->i", vectors, query)  # not `@`: BLAS threads stall like OpenMP's (8 ms vs 0.9 ms)
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(self.ids[rows[i]]), float(scores[i])) for i in best]

    def _parameters(self, allowed: int, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        """The search-time parameters of this type, with `selector` restricting the search to admitted rows."""
        if self.type == "hnsw":
            widen = self.size / allowed  # about as many admitted candidates as an unfiltered search compares
            ef = min(_MAX_EF_SEARCH, max(self.settings.hnsw_ef_search, int(self.settings.hnsw_ef_search * widen)))
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        if self.type == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.settings.ivf_nprobe, self.inner.nlist))
        return None if selector is None else faiss.SearchParameters(sel=selector)
