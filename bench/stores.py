"""The two store backends side by side, for bench/postgres.py, bench/scale.py, bench/ingest.py and
bench/postgres_parity.py: the bundled PostgreSQL server of the tests (tests/pg.py: PostgreSQL 16 + pgvector 0.6 from
the `pgserver` wheel) in a scratch folder, stores opened by backend name through the product's `open_store`, bulk
loading with the secondary indexes built afterwards, and search latencies from several replica processes querying at
once."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from rag.settings import Settings, StoreSettings
from rag.store import Store, open_store

STORES = ("embedded", "postgres")
# The benchmark server's settings (ALTER SYSTEM, then a restart), recorded with every result. pgserver's defaults
# (128 MB shared buffers, 64 MB maintenance memory) are a laptop's; these are what a DBA would give a 24 GB machine
# holding the index: the HNSW graph in shared memory, its build in one pass (pgvector 0.6 builds in parallel when
# the graph fits in maintenance_work_mem), no checkpoint every few seconds during a load.
SERVER_SETTINGS = {
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "1",
    "max_wal_size": "16GB",
}
# The indexes a bulk load drops and rebuilds (rag/store/postgres.py's schema; their definitions are read from the
# database): HNSW over the vectors, GIN over the tsvectors, the posting B-tree. The primary keys and chunks_by_doc
# stay, because the writer's own statements look rows up by them.
BULK_INDEXES = ("chunks_by_vector", "chunks_by_tsv", "postings_by_term")


def postgres_server(folder: Path | None = None, *, settings: dict[str, str] | None = None):
    """tests/pg.py's server in `folder` (a new scratch folder by default; stopped and deleted at exit), its service
    role's password in RAG_STORE_PASSWORD for the stores and `rag` subprocesses of this process; `settings`
    (postgresql.conf names to values) are written with ALTER SYSTEM and the server is restarted to apply them.
    Returns the tests' `TestServer` (`database()` makes an empty database and returns its DSN)."""
    from pgserver._commands import pg_ctl

    from tests.pg import start

    server = start(folder or Path(tempfile.mkdtemp(prefix="bench-postgres-")))
    os.environ["RAG_STORE_PASSWORD"] = server.password
    if settings:
        with server.admin() as conn:
            for name, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        inner = server.server
        pg_ctl(["-w", "stop"], pgdata=inner.pgdata, user=inner.system_user)
        inner.ensure_postgres_running()  # pgserver's own start, same socket folder; at exit it stops this one
    return server


def server_facts(server) -> dict:
    """Versions and the settings that shape the figures, as the server reports them."""
    names = ("server_version", "shared_buffers", "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers",
             "effective_cache_size", "max_wal_size", "jit", "synchronous_commit")
    with server.admin() as conn:
        facts = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}
        facts["pgvector"] = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
                                         ).fetchone()[0]
    return facts


def bench_settings(store: str, target: str | Path, **dense) -> Settings:
    """Settings whose store is `store` at `target` (an index folder, or a DSN without password); `dense` overrides
    retrieval.dense_index of the embedded backend (e.g. type="flat")."""
    settings = Settings()
    if store == "postgres":
        return settings.model_copy(update={"store": StoreSettings(backend="postgres", dsn=str(target))})
    retrieval = settings.retrieval.model_copy(
        update={"dense_index": settings.retrieval.dense_index.model_copy(update=dense)})
    return settings.model_copy(update={"index_dir": Path(target), "retrieval": retrieval})


def open_bench_store(store: str, target: str | Path, manifest: dict, **dense) -> Store:
    """The product's store of backend `store` at `target` for `manifest` (see bench_settings)."""
    return open_store(bench_settings(store, target, **dense), manifest)


@contextlib.contextmanager
def bulk_indexes(server, dbname: str) -> Iterator[dict]:
    """Drop BULK_INDEXES of database `dbname`, let the caller write rows, then create them again from their own
    definitions (parallel maintenance as the server's settings allow) and ANALYZE. Yields a dict that receives the
    seconds of each index build and of ANALYZE."""
    seconds: dict[str, float] = {}
    with server.admin(dbname) as conn:
        definitions = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
                                        (list(BULK_INDEXES),)).fetchall())
        for name in definitions:
            conn.execute(f"DROP INDEX {name}")
    yield seconds
    with server.admin(dbname) as conn:
        for name, definition in definitions.items():
            started = time.perf_counter()
            conn.execute(definition)
            seconds[name] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        conn.execute("ANALYZE")
        seconds["analyze"] = round(time.perf_counter() - started, 1)


def relation_sizes(server, dbname: str) -> dict[str, float]:
    """MB per table (with TOAST, without indexes) and per index of the store, and the whole database."""
    with server.admin(dbname) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_table_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY 2 DESC").fetchall()
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {name: round(size / 2**20, 1) for name, size in rows} | {"database": round(total / 2**20, 1)}


def percentiles(millis: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(millis, 50)), 2), "p95_ms": round(float(np.percentile(millis, 95)), 2),
            "mean_ms": round(float(np.mean(millis)), 2), "searches": len(millis)}


def replicas(worker: Callable[..., list[float]], jobs: Sequence[tuple]) -> dict[str, float]:
    """`worker(*job, barrier)` in one spawned process per job, all at once: each opens its own store, waits at the
    barrier, then times its searches (ms). Returns the percentiles over every replica's searches."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(len(jobs)) as pool:
        barrier = manager.Barrier(len(jobs))
        parts = pool.starmap(worker, [(*job, barrier) for job in jobs])
    return percentiles([t for part in parts for t in part]) | {"replicas": len(jobs)}
