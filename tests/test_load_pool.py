"""The parser pool forwards every failure of a worker as that file's LoadError: none leaves the caller waiting.

The parsers are passed in as module-level functions of this file (picklable, so the spawned workers import them);
the product's own parser is not touched.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from rag.errors import LoadError
from rag.load import Document, OcrOptions, load_document
from rag.parse_pool import ParsePool
from rag.settings import IngestSettings

SETTINGS = IngestSettings(parse_workers=1, parse_timeout_s=60, parse_memory_mb=512)


def explode_on_b(path: Path, *, ocr: OcrOptions) -> Document:
    """A parser failing with an exception that is not a LoadError, on files whose name starts with "b"."""
    if path.name.startswith("b"):
        raise RuntimeError(f"parser bug on {path.name}")
    return load_document(path, ocr=ocr)


def exit_the_worker(path: Path, *, ocr: OcrOptions) -> Document:
    """A parser whose process dies without raising anything."""
    raise SystemExit(3)


def _new_processes(before: set) -> set:
    """Child processes started since `before` that still run (other fixtures' pools may run in this session)."""
    return set(multiprocessing.active_children()) - before


def _files(tmp_path: Path) -> list[Path]:
    names = ["a.txt", "b.txt", "c.txt"]
    for name in names:
        (tmp_path / name).write_text(f"The note {name} says that staff may work remotely on Fridays.\n")
    return [tmp_path / name for name in names]


def test_a_non_load_exception_in_a_parser_is_that_files_error_and_the_others_parse(tmp_path):
    files = _files(tmp_path)
    before = set(multiprocessing.active_children())
    with ParsePool(SETTINGS, parse_file=explode_on_b) as pool:
        outcomes = list(pool.parse_files(files, ahead=2))
    assert [name for name, _ in outcomes] == [str(f) for f in files]
    first, failed, last = (outcome for _, outcome in outcomes)
    assert isinstance(first, Document) and isinstance(last, Document)
    assert isinstance(failed, LoadError)
    assert str(failed) == f"{files[1]}: the parser failed (RuntimeError: parser bug on b.txt)"
    assert not _new_processes(before), "the pool left a worker running"


def test_a_worker_that_exits_is_that_files_error(tmp_path):
    files = _files(tmp_path)
    with ParsePool(SETTINGS, parse_file=exit_the_worker) as pool:
        outcomes = [outcome for _, outcome in pool.parse_files(files, ahead=1)]
    assert all(isinstance(o, LoadError) and "the parser" in str(o) for o in outcomes), outcomes


def test_a_caller_that_stops_early_leaves_no_worker(tmp_path):
    files = _files(tmp_path)
    before = set(multiprocessing.active_children())
    with ParsePool(SETTINGS) as pool:
        parsed = pool.parse_files(files, ahead=2)
        next(parsed)
        parsed.close()
    assert not _new_processes(before)
