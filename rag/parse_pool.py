"""Parse input files in worker processes, each file under a wall-clock limit and a memory limit.

Parsers are C libraries (libxml2, PDFium) and regular expressions fed whatever a user hands us: a hostile file can
loop, allocate without end or crash the interpreter, and in the caller's process it would also hold the GIL and
freeze everything else (the HTTP server's event loop, health checks included). Here each file is parsed by one of
`ingest.parse_workers` processes, so several files are parsed on several cores at once and one file's trouble stays
in its worker:

- over `ingest.parse_timeout_s` of wall-clock time (counted from when a worker starts the file), the worker is
  killed and replaced; OCR, the slowest part (seconds per scanned page, many more under load), stops starting pages
  once `ingest.ocr_time_share` of that time is spent (rag/load/ocr.py), so a scanned PDF keeps what was read;
- over `ingest.parse_memory_mb` of address space beyond what the worker maps at start (`RLIMIT_AS`, set in each
  worker), allocations fail: the file ends with MemoryError, or the worker dies and is replaced;
- a worker that dies for any other reason (a segfault in a parser) is replaced too.

Each of these is one `LoadError` naming the file and the reason; the other files of the batch are not affected.
The pool is pebble's `ProcessPool` (per-task timeouts that kill and replace just the worker concerned, which the
standard library's ProcessPoolExecutor cannot do) over `spawn`ed processes: a worker starts from a fresh interpreter
that imports only `rag.load` and its parsers (no torch, no FAISS, no copy of the caller's memory or threads), plus,
as `spawn` always does, the caller's main script: `rag`, `python -m rag`, uvicorn and pytest are light; a script of
one's own must start its work under `if __name__ == "__main__":` and should import heavy modules inside functions.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import CancelledError, TimeoutError
from pathlib import Path
from typing import Protocol, Self

import pebble

from . import load
from .errors import LoadError, RagError
from .load import Document
from .load.ocr import THREAD_LIMIT
from .settings import IngestSettings

Outcome = Document | LoadError


class FileParser(Protocol):
    """Reads one file into a Document (`rag.load.load_document`); picklable, i.e. a module-level function."""

    def __call__(self, path: Path, *, ocr: load.OcrOptions) -> Document:
        """Read the file at `path`; raises `LoadError` for a file it cannot read."""
        ...


class ParsePool:
    """Worker processes that turn files into `Document`s; use as a context manager or call `close()`.

    Workers start on the first file and live until `close()`; a killed or crashed worker is replaced on demand.
    `parse_file(path, ocr)` reads one file in a worker (default `rag.load.load_document`); whatever it raises
    reaches the caller as that file's `LoadError`, so no failure in a worker can leave the caller waiting.
    """

    def __init__(self, settings: IngestSettings, *, parse_file: FileParser = load.load_document) -> None:
        self.settings = settings
        self.parse_file = parse_file
        self.ocr = load.OcrOptions(
            enabled=settings.ocr,
            max_pages=settings.ocr_max_pages,
            dpi=settings.ocr_dpi,
            languages=tuple(settings.ocr_languages),
            budget_s=settings.ocr_time_share * settings.parse_timeout_s,
        )
        self.workers = settings.parse_workers or min(2, os.cpu_count() or 1)
        self._pool = pebble.ProcessPool(
            max_workers=self.workers,
            initializer=_start_worker,
            initargs=(settings.parse_memory_mb, os.getpid()),
            context=multiprocessing.get_context("spawn"),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker at once (pending files are dropped) and wait for them to exit."""
        self._pool.stop()
        self._pool.join()

    def parse_files(self, paths: Iterable[Path], *, ahead: int) -> Generator[tuple[str, Outcome], None, None]:
        """(path as str, Document or LoadError) per file, in the order given.

        At most `ahead` files (and at least one per worker) are queued or being parsed beyond the one the caller is
        waiting for, so memory stays bounded while the caller embeds the previous files."""
        window: deque[tuple[str, pebble.ProcessFuture | LoadError]] = deque()
        depth = max(ahead, self.workers)
        try:
            for path in paths:
                name, refused = _source_name(path)
                window.append((name, refused or self._schedule(_load_file, self.parse_file, str(path), self.ocr)))
                if len(window) > depth:
                    yield self._outcome(*window.popleft())
            while window:
                yield self._outcome(*window.popleft())
        finally:  # the caller stopped early or failed: nothing it queued keeps a worker busy
            for _, future in window:
                if not isinstance(future, LoadError):
                    future.cancel()

    def parse_uploads(self, named: Sequence[tuple[str, bytes]]) -> list[Outcome]:
        """Document or LoadError per (name, bytes), in order, the files parsed side by side."""
        futures = [(name, self._schedule(_load_upload, data, name, self.ocr)) for name, data in named]
        return [self._outcome(name, future)[1] for name, future in futures]

    def _schedule(self, function: Callable[..., Document], *args: object) -> pebble.ProcessFuture:
        try:
            return self._pool.schedule(function, args=args, timeout=self.settings.parse_timeout_s)
        except RuntimeError as exc:  # pebble's pool is broken (its workers cannot start) or closed
            raise RagError(
                f"the parser processes cannot run ({exc}); a script that ingests must start its work "
                'under `if __name__ == "__main__":` (multiprocessing\'s spawn)'
            ) from exc

    def _outcome(self, name: str, future: pebble.ProcessFuture | LoadError) -> tuple[str, Outcome]:
        """The worker's Document, or every way it can fail as one LoadError line.

        The worker's exception is read with `future.exception()`, never re-raised here: a parser's SystemExit or
        KeyboardInterrupt is that file's failure, not the caller's; the caller's own Ctrl-C while it waits still
        propagates."""
        if isinstance(future, LoadError):  # refused before parsing
            return name, future
        try:
            failure = future.exception()
        except CancelledError:
            return name, LoadError(f"{name}: parsing was cancelled (the parser pool is shutting down)")
        if failure is None:
            return name, future.result()
        if isinstance(failure, LoadError):
            return name, failure
        return name, LoadError(f"{name}: {self._reason(failure)}")

    def _reason(self, failure: BaseException) -> str:
        settings = self.settings
        if isinstance(failure, TimeoutError):
            return f"parsing took longer than {settings.parse_timeout_s:g} s (ingest.parse_timeout_s) and was stopped"
        if isinstance(failure, MemoryError):
            return f"parsing needs more than {settings.parse_memory_mb} MB (ingest.parse_memory_mb) and was stopped"
        if isinstance(failure, pebble.ProcessExpired):
            return (
                f"the parser crashed (worker exit code {failure.exitcode}), possibly over the "
                f"{settings.parse_memory_mb} MB memory limit (ingest.parse_memory_mb)"
            )
        # anything else (a parser bug, a result too large to send back, a SystemExit): still one file's failure
        return "the parser failed (" + " ".join(f"{type(failure).__name__}: {failure}".split())[:200] + ")"


def _source_name(path: Path) -> tuple[str, LoadError | None]:
    """The path as the index stores it, and the refusal of a name that is not valid UTF-8 (undecodable bytes reach
    Python as lone surrogates, PEP 383; the index stores names as text), shown with the bad bytes escaped."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(path).decode("utf-8", "backslashreplace")
        return name, LoadError(f"{name}: the file name is not valid UTF-8; rename the file")
    return name, None


def _start_worker(megabytes: int, parent: int) -> None:
    """Worker initializer: exit with the parent (a SIGKILLed `rag ingest` must not leave a parser running on a
    hostile file for minutes), then cap the memory and Tesseract's threads (rag/load/ocr.py `THREAD_LIMIT`; the
    operator's OMP_THREAD_LIMIT wins)."""
    threading.Thread(target=_exit_without_parent, args=(parent,), name="rag-parent-watch", daemon=True).start()
    _limit_memory(megabytes)
    os.environ.setdefault("OMP_THREAD_LIMIT", THREAD_LIMIT)


def _exit_without_parent(parent: int, interval_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)


def _limit_memory(megabytes: int) -> None:
    """Cap the address space at what the worker holds now plus `megabytes`, so a runaway
    allocation fails in this process only. Relative, because a worker also imports the caller's main script
    (multiprocessing's spawn does) and a script that imports torch at the top already maps gigabytes."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def _address_space() -> int:
    """Bytes of virtual memory this process maps (Linux: VmSize); 0 where /proc is not available."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    kilobytes = next((line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")), "0")
    return int(kilobytes) * 1024


def _load_file(parse_file: FileParser, path: str, ocr: load.OcrOptions) -> Document:
    """Worker task: one file from disk (read in the worker, so large files never travel through a pipe)."""
    return parse_file(Path(path), ocr=ocr)


def _load_upload(data: bytes, name: str, ocr: load.OcrOptions) -> Document:
    """Worker task: one uploaded file."""
    return load.load_bytes(data, name, ocr=ocr)
