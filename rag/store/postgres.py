"""The shared index: one PostgreSQL database with pgvector, for several API replicas and ingestion workers.

Every row lives in the database and every search runs there, so a commit is searchable from every replica at once
(no structures to rebuild) and several writers can commit side by side:

    documents   one row per document: metadata, labels, extracted text and blocks
    chunks      one row per passage: text, position, its document's labels and language (for the filters), the unit
                vector (pgvector, HNSW index, inner product), a tsvector in the chunk's language (Snowball
                configuration, `simple` for languages PostgreSQL has no stemmer for) and our own lexical tokens as
                (terms, tfs, length), from which `postings` and `terms` are kept
    postings    one row per (term, chunk): the term's count in the chunk, the chunk's length, language and labels,
                with a B-tree on (term, chunk): BM25 reads the query's terms' postings only (an index range
                scan each), scores them and sums per chunk, exactly as rag/lexical.py, so that fusion ranks alike on
                both backends (PostgreSQL's ts_rank is not BM25; docs/benchmarks.md measures the gap). Language and
                labels are copies of the chunk's, so that filters and row-level security apply inside that scan
    terms       document frequency per term, kept in the transaction that adds or removes its chunks
    rag_state   the one row holding the generation, chunk count and token total (BM25's N and average length) and the
                manifest; every commit updates it first, which orders concurrent commits (their row lock)
    rag_schema  the schema version; `rag db upgrade` (or opening the store) applies newer migrations, an unknown
                newer version is refused

Access labels are enforced by the database too: row-level security on documents, chunks and postings admits rows
whose labels are within the transaction-local setting `rag.labels` ('*' = everything, set by writers and unfiltered
reads; unset = only unlabelled rows). The service must connect as a role without SUPERUSER or BYPASSRLS
(docs/deployment.md).

Connections: `store.dsn` (libpq conninfo or URI, no password in it); the password comes from `RAG_STORE_PASSWORD` or
`store.password_file`, is passed to libpq apart from the DSN and is never printed (`redact`). libpq opens its sockets
in C, out of the egress guard's sight, so every host of the DSN is checked against it first (rag/sovereign.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DocumentConflictError, IndexMismatchError, NotFoundError
from ..lexical import SNOWBALL
from ..records import ChunkRecord, DocumentRecord, NewChunk, SearchFilter
from .manifest import _check_manifest

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from ..settings import Settings

log = logging.getLogger("rag.store.postgres")

PASSWORD_ENV = "RAG_STORE_PASSWORD"
K1, B = 1.5, 0.75  # bm25s's defaults, which rag/lexical.py uses
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
# PostgreSQL's Snowball text-search configurations carry the stemmers' names; Luxembourgish (stemmed as German by
# rag/lexical.py) and any language without one get 'simple'.
_TS_CONFIG = {lang: name for lang, name in SNOWBALL.items() if lang != "lb"}

# Migration i (1-based) brings the schema from version i-1 to i. `{dim}` is the embedder's dimension.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE rag_state (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), generation bigint NOT NULL DEFAULT 0,
        chunks bigint NOT NULL DEFAULT 0, total_length bigint NOT NULL DEFAULT 0, manifest jsonb NOT NULL
    );
    CREATE TABLE documents (
        doc_id text PRIMARY KEY, source text NOT NULL, title text NOT NULL, format text NOT NULL, lang text NOT NULL,
        sha256 text NOT NULL, labels text[] NOT NULL, pages integer, chars integer NOT NULL,
        ingested_at double precision NOT NULL, chunks integer NOT NULL, text text NOT NULL, blocks jsonb NOT NULL,
        pages_ocr integer[] NOT NULL DEFAULT '{}', pages_without_text integer[] NOT NULL DEFAULT '{}'
    );
    CREATE INDEX documents_by_sha ON documents (sha256);
    CREATE TABLE chunks (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        doc_id text NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
        ordinal integer NOT NULL, start integer NOT NULL, "end" integer NOT NULL, page integer,
        heading jsonb NOT NULL, lang text NOT NULL, content_hash text NOT NULL, text text NOT NULL,
        doc_lang text NOT NULL, labels text[] NOT NULL,
        embedding vector({dim}) NOT NULL, tsv tsvector NOT NULL,
        terms text[] NOT NULL, tfs integer[] NOT NULL, length integer NOT NULL
    );
    CREATE INDEX chunks_by_doc ON chunks (doc_id);
    CREATE INDEX chunks_by_terms ON chunks USING gin (terms);
    CREATE INDEX chunks_by_tsv ON chunks USING gin (tsv);
    CREATE INDEX chunks_by_vector ON chunks USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64);
    CREATE TABLE terms (term text PRIMARY KEY, df bigint NOT NULL);
    CREATE FUNCTION rag_visible(row_labels text[]) RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT CASE coalesce(current_setting('rag.labels', true), '')
            WHEN '*' THEN true
            WHEN '' THEN row_labels = '{}'
            ELSE row_labels <@ current_setting('rag.labels', true)::text[] END
    $$;
    ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
    ALTER TABLE documents FORCE ROW LEVEL SECURITY;
    CREATE POLICY by_labels ON documents USING (rag_visible(labels));
    ALTER TABLE chunks ENABLE ROW LEVEL SECURITY;
    ALTER TABLE chunks FORCE ROW LEVEL SECURITY;
    CREATE POLICY by_labels ON chunks USING (rag_visible(labels));
    """,
    # 2: BM25 from a posting table instead of a GIN index over chunks.terms (which read every chunk row holding a
    # frequent term, ~240 ms per query at 10,000 chunks); filled from the stored chunks
    """
    SELECT set_config('rag.labels', '*', true);
    CREATE TABLE postings (
        term text NOT NULL, chunk_id bigint NOT NULL, tf integer NOT NULL, length integer NOT NULL,
        doc_lang text NOT NULL, labels text[] NOT NULL
    );
    INSERT INTO postings SELECT t.term, c.id, t.tf, c.length, c.doc_lang, c.labels
        FROM chunks c, unnest(c.terms, c.tfs) t (term, tf) ORDER BY 1, 2;
    CREATE INDEX postings_by_term ON postings (term, chunk_id);
    DROP INDEX chunks_by_terms;
    ALTER TABLE postings ENABLE ROW LEVEL SECURITY;
    ALTER TABLE postings FORCE ROW LEVEL SECURITY;
    CREATE POLICY by_labels ON postings USING (rag_visible(labels));
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_UPGRADE_LOCK = 0x72616701  # pg_advisory_xact_lock key: one process migrates at a time

_CHUNK_COLUMNS = (
    'c.id, c.doc_id, c.ordinal, c.start, c."end", c.page, c.heading, c.lang, c.content_hash, c.text, d.title, d.source'
)
_DOC_COLUMNS = "doc_id, source, title, format, lang, sha256, labels, pages, chars, ingested_at, chunks"


def redact(dsn: str) -> str:
    """The DSN without any password (a `password=` key or the password of a URI), for stats, logs and errors."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except (psycopg.ProgrammingError, ValueError):  # unparsable (ValueError: unencodable text): show nothing of it
        return "(unparsable DSN)"
    parts.pop("password", None)
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


def read_password(password_file: Path | None) -> str | None:
    """The database password: `RAG_STORE_PASSWORD`, else the first line of `password_file`, else None (peer, trust
    or certificate authentication). Raises ConfigError when the file cannot be read."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if password_file is None:
        return None
    try:
        return (
            Path(password_file).read_text(encoding="utf-8").splitlines()[0].strip()
            if Path(password_file).stat().st_size
            else ""
        )
    except OSError as exc:
        raise ConfigError(f"store.password_file {password_file} cannot be read: {exc.strerror}") from None


def check_hosts(dsn: str) -> None:
    """Refuse (EgressBlockedError) a DSN naming a host the egress guard does not admit; Unix sockets are local."""
    from psycopg.conninfo import conninfo_to_dict

    from .. import sovereign

    parts = conninfo_to_dict(dsn)
    for key in ("host", "hostaddr"):
        for host in filter(None, str(parts.get(key) or "").split(",")):
            if not host.startswith("/") and not host.startswith("@"):
                sovereign.check_destination(host, parts.get("port"))


def _labels_setting(labels: frozenset[str] | None) -> str:
    """The value of `rag.labels` for a caller holding `labels` (None: no restriction)."""
    if labels is None:
        return "*"
    quoted = ('"' + label.replace("\\", "\\\\").replace('"', '\\"') + '"' for label in sorted(labels))
    return "{" + ",".join(quoted) + "}"


def _where(search_filter: SearchFilter | None, alias: str, params: dict, doc_lang: str) -> str:
    """SQL conditions (joined by AND, starting with AND) applying `search_filter` to the rows of `alias` (a
    document, a chunk, or a posting: its documents are those of its chunk)."""
    clauses = []
    if search_filter is not None:
        if search_filter.doc_ids is not None:
            params["f_docs"] = sorted(search_filter.doc_ids)
            clauses.append(
                f"{alias}.chunk_id IN (SELECT id FROM chunks WHERE doc_id = ANY(%(f_docs)s))"
                if alias == "p"
                else f"{alias}.doc_id = ANY(%(f_docs)s)"
            )
        if search_filter.langs is not None:
            params["f_langs"] = sorted(search_filter.langs)
            clauses.append(f"{alias}.{doc_lang} = ANY(%(f_langs)s)")
        if search_filter.labels is not None:
            params["f_labels"] = sorted(search_filter.labels)
            clauses.append(f"{alias}.labels <@ %(f_labels)s::text[]")
    return "".join(f" AND {c}" for c in clauses)


class PostgresStore:
    """Open with `PostgresStore.open(dsn=..., manifest=...)`; implements the store Protocol (rag/store/base.py).

    Thread-safe: a small connection pool serves the threads of one process; processes share nothing but the
    database."""

    def __init__(self, pool: ConnectionPool, dsn: str, manifest: dict):
        self._pool = pool
        self.dsn = dsn
        self.manifest = manifest

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        *,
        dsn: str,
        manifest: dict,
        password_file: Path | None = None,
        check: bool = True,
        upgrade: bool = True,
        pool_size: int = 4,
    ) -> PostgresStore:
        """Connect, bring the schema up to date (unless `upgrade` is false: then an older schema is refused), and
        refuse an index built with another embedder or chunker (`check`).

        Raises ConfigError (a password in the DSN, the database unreachable), EgressBlockedError (a host the guard
        does not admit), IndexMismatchError (a newer or older schema, another embedder)."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool

        try:
            has_password = "password" in conninfo_to_dict(dsn)
        except (psycopg.ProgrammingError, ValueError):  # ValueError: text that does not encode
            raise ConfigError("store.dsn is not a valid PostgreSQL connection string") from None
        if has_password:
            raise ConfigError(f"store.dsn must not carry the password; put it in {PASSWORD_ENV} or store.password_file")
        check_hosts(dsn)
        kwargs: dict[str, Any] = {"autocommit": False}
        password = read_password(password_file)
        if password is not None:
            kwargs["password"] = password
        pool = ConnectionPool(
            dsn, min_size=1, max_size=pool_size, kwargs=kwargs, configure=_configure, open=False, name="rag-store"
        )
        try:
            pool.open(wait=True, timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is one ConfigError naming only its class
            pool.close()
            raise ConfigError(f"cannot connect to the PostgreSQL store {redact(dsn)}: {type(exc).__name__}") from None
        try:
            with pool.connection() as conn:
                stored = _prepare(conn, manifest, upgrade=upgrade)
                _warn_if_rls_bypassed(conn)
            if check:
                _check_manifest(redact(dsn), stored, manifest)
        except BaseException:
            pool.close()
            raise
        return cls(pool, dsn, stored)

    @contextlib.contextmanager
    def _transaction(
        self, labels: frozenset[str] | None = None, *, read_only: bool = True
    ) -> Iterator[psycopg.Connection]:
        """A connection in a transaction seeing the rows `labels` admit (row-level security); read-only ones run at
        REPEATABLE READ, so that all their statements see one committed generation."""
        with self._pool.connection() as conn:
            level = "REPEATABLE READ READ ONLY" if read_only else "READ COMMITTED"
            conn.execute(f"BEGIN ISOLATION LEVEL {level}")
            conn.execute("SELECT set_config('rag.labels', %s, true)", (_labels_setting(labels),))
            yield conn
            conn.commit()

    @property
    def generation(self) -> int:
        """The store's generation: one more with every committed write, so a cache keyed by it sees every change."""
        with self._transaction() as conn:
            return int(_one(conn, "SELECT generation FROM rag_state")[0])

    # ---------------------------------------------------------------- reading metadata
    def documents(self, search_filter: SearchFilter | None = None) -> list[DocumentRecord]:
        """The stored documents `search_filter` admits (languages, document ids, labels), ordered by doc_id."""
        params: dict = {}
        where = _where(search_filter, "d", params, "lang")
        with self._transaction(search_filter.labels if search_filter else None) as conn:
            rows = conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents d WHERE true{where} ORDER BY doc_id", params
            ).fetchall()
        return [_document(row) for row in rows]

    def document(self, doc_id: str, search_filter: SearchFilter | None = None) -> DocumentRecord:
        """One document; one the filter hides is reported exactly like one that does not exist."""
        params: dict = {"doc_id": doc_id}
        where = _where(search_filter, "d", params, "lang")
        with self._transaction(search_filter.labels if search_filter else None) as conn:
            row = conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents d WHERE doc_id = %(doc_id)s{where}", params
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {doc_id!r}; `rag docs` lists the ids")
        return _document(row)

    def document_sha(self, doc_id: str, source: str) -> tuple[str, tuple[str, ...]] | None:
        """(sha256, labels) of the stored document `doc_id` from `source`, None when there is none.

        Raises DocumentConflictError when the id belongs to a document from another source."""
        with self._transaction() as conn:
            row = conn.execute("SELECT sha256, labels, source FROM documents WHERE doc_id = %s", (doc_id,)).fetchone()
        if row is None:
            return None
        _check_source(doc_id, source, row[2])
        return row[0], tuple(row[1])

    def same_bytes(self, sha256: str, labels: tuple[str, ...]) -> str | None:
        """The id of the first-ingested stored document with these file bytes (sha256) and labels, or None."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT doc_id FROM documents WHERE sha256 = %s AND labels = %s::text[] "
                "ORDER BY ingested_at, doc_id LIMIT 1",
                (sha256, list(labels)),
            ).fetchone()
        return row[0] if row else None

    def document_text(self, doc_id: str) -> tuple[str, list[dict]]:
        """The document's extracted text and its blocks; NotFoundError for an unknown id."""
        with self._transaction() as conn:
            row = conn.execute("SELECT text, blocks FROM documents WHERE doc_id = %s", (doc_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {doc_id!r}")
        return row[0], row[1]

    def cached_vectors(self, doc_id: str) -> dict[str, np.ndarray]:
        """Vectors of a document's current chunks by content hash: unchanged passages are not embedded again."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT content_hash, embedding FROM chunks WHERE doc_id = %s", (doc_id,)).fetchall()
        return {h: v.to_numpy().astype(np.float32, copy=False) for h, v in rows}

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        """The chunk records of `ids` by id; ids not stored are left out."""
        if not len(ids):
            return {}
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) WHERE c.id = ANY(%s)",
                ([int(i) for i in ids],),
            ).fetchall()
        return {row[0]: _chunk(row) for row in rows}

    # ---------------------------------------------------------------- searching
    def search(
        self,
        *,
        vector: np.ndarray | None,
        tokens: Sequence[str],
        depth: int,
        search_filter: SearchFilter | None = None,
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(dense, lexical): (chunk id, score) best first, each at most `depth` admitted rows, from one committed
        generation (one REPEATABLE READ transaction). Dense: cosine of unit vectors through the HNSW index, exact
        over the admitted rows when a selective filter leaves the index short of `depth`. Lexical: BM25 (k1 1.5,
        b 0.75, idf log(1 + (N - df + 0.5) / (df + 0.5)) over the whole index) of the query's distinct `tokens`."""
        labels = search_filter.labels if search_filter else None
        with self._transaction(labels) as conn:
            dense = [] if vector is None else _dense(conn, vector, depth, search_filter)
            lexical = _lexical(conn, list(dict.fromkeys(t for t in tokens if t)), depth, search_filter)
        return dense, lexical

    def export(self) -> Iterator[tuple[dict, list[NewChunk]]]:
        """Every document as the (document row, chunks) a writer commits, with the stored vectors and tokens (in
        term order: BM25 counts them, it does not read their order), for `rag migrate`."""
        with self._transaction() as conn:
            doc_ids = [d for (d,) in conn.execute("SELECT doc_id FROM documents ORDER BY doc_id")]
        for doc_id in doc_ids:
            with self._transaction() as conn:
                doc = conn.execute(
                    f"SELECT {_DOC_COLUMNS}, text, blocks, pages_ocr, pages_without_text "
                    "FROM documents WHERE doc_id = %s",
                    (doc_id,),
                ).fetchone()
                rows = conn.execute(
                    'SELECT ordinal, start, "end", page, heading, lang, content_hash, text, terms, '
                    "tfs, embedding FROM chunks WHERE doc_id = %s ORDER BY id",
                    (doc_id,),
                ).fetchall()
            if doc is None:  # deleted meanwhile
                continue
            record = {
                **_document(doc).to_dict(),
                "text": doc[11],
                "blocks": json.dumps(doc[12]),
                "pages_ocr": doc[13],
                "pages_without_text": doc[14],
            }
            yield (
                record,
                [
                    NewChunk(
                        ordinal=r[0],
                        start=r[1],
                        end=r[2],
                        page=r[3],
                        heading_path=tuple(r[4]),
                        lang=r[5],
                        content_hash=r[6],
                        text=r[7],
                        tokens=[t for t, n in zip(r[8], r[9], strict=True) for _ in range(n)],
                        vector=r[10].to_numpy().astype(np.float32, copy=False),
                    )
                    for r in rows
                ],
            )

    def stats(self) -> dict:
        """Counts and sizes for `rag stats`: documents, chunks, vectors, BM25 and tsvector rows, languages, the HNSW
        index's parameters, bytes in the database, schema version, the manifest, and the DSN without its password."""
        with self._transaction() as conn:
            generation, chunks, total = _one(conn, "SELECT generation, chunks, total_length FROM rag_state")
            counted, vectors, lexical, tsv = _one(
                conn, "SELECT count(*), count(embedding), count(terms), count(tsv) FROM chunks"
            )
            languages = dict(conn.execute("SELECT lang, count(*) FROM documents GROUP BY lang ORDER BY lang"))
            documents = sum(languages.values())
            size = _one(conn, "SELECT pg_database_size(current_database())")[0]
            version = _one(conn, "SELECT version FROM rag_schema")[0]
        return {
            "backend": "postgres",
            "dsn": redact(self.dsn),
            "generation": generation,
            "documents": documents,
            "chunks": counted,
            "vectors": vectors,
            "bm25_rows": lexical,
            "tsvector_rows": tsv,
            "bm25_statistics": {"chunks": chunks, "tokens": total},
            "languages": languages,
            "dense_index": {"structure": "pgvector hnsw", "m": 16, "ef_construction": 64, "vectors": vectors},
            "bytes_in_database": size,
            "schema_version": version,
            "manifest": self.manifest,
        }

    def refresh(self) -> None:
        """Nothing to load: every committed row is searchable at once."""

    def writer(self) -> contextlib.AbstractContextManager[_Writer]:
        """Several writers (processes, threads) may commit side by side: their commits are ordered by the state
        row's lock, never refused."""
        return contextlib.nullcontext(_Writer(self))

    def close(self) -> None:
        """Close the connection pool; the store is unusable afterwards."""
        self._pool.close()


class _Writer:
    def __init__(self, store: PostgresStore):
        self.store = store

    def commit(
        self,
        puts: Iterable[tuple[dict, list[NewChunk]]] = (),
        deletes: Iterable[str] = (),
        manifest: dict | None = None,
    ) -> int:
        """Replace/add documents (`puts`: document row as dict, its chunks), delete others and optionally swap the
        manifest, in one transaction; returns the new generation.

        Raises DocumentConflictError, storing nothing, when a put's id belongs to a stored document from another
        source; IndexMismatchError when a new manifest changes the vector dimension (a new database is needed)."""
        puts = list(puts)
        deletes = list(deletes)
        with self.store._transaction(read_only=False) as conn:
            generation = _one(conn, "UPDATE rag_state SET generation = generation + 1 RETURNING generation")[0]
            put_ids = [doc["doc_id"] for doc, _ in puts]
            for doc_id, source in conn.execute(
                "SELECT doc_id, source FROM documents WHERE doc_id = ANY(%s)", (put_ids,)
            ).fetchall():
                _check_source(doc_id, next(d["source"] for d, _ in puts if d["doc_id"] == doc_id), source)
            _remove(conn, sorted(set(deletes) | set(put_ids)))
            for doc, chunks in puts:
                _insert(conn, doc, chunks)
            _post(conn, put_ids)
            _count_terms(conn, put_ids, +1)
            if manifest is not None:
                dim = int(self.store.manifest["embedder"]["dim"])
                if int(manifest["embedder"]["dim"]) != dim:
                    raise IndexMismatchError(
                        f"the PostgreSQL store holds {dim}-dimensional vectors and the new embedder makes "
                        f"{manifest['embedder']['dim']}; use a new database (rag migrate can copy the documents)"
                    )
                conn.execute("UPDATE rag_state SET manifest = %s", (_json(manifest),))
        if manifest is not None:
            self.store.manifest = manifest
        return int(generation)


# -------------------------------------------------------------------- SQL


def _one(conn: psycopg.Connection, query: str, params: dict | None = None) -> tuple[Any, ...]:
    """The row of a query that returns exactly one (an aggregate, the one-row state and schema tables).

    Raises IndexMismatchError when it returns none: the store's schema is damaged (its state row deleted)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise IndexMismatchError(f"the PostgreSQL store returned no row for {query!r}; its schema is damaged")
    return row


def _configure(conn: psycopg.Connection) -> None:
    """Every pooled connection: pgvector's binary types, and no statement left open."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.commit()


def _prepare(conn: psycopg.Connection, manifest: dict, *, upgrade: bool) -> dict:
    """Migrate the schema (or check it is current) and return the stored manifest, writing `manifest` into an
    empty database."""
    version = schema_version(conn)
    if version < SCHEMA_VERSION:
        if not upgrade:
            raise IndexMismatchError(
                f"the database schema is version {version}, this release needs {SCHEMA_VERSION}; run `rag db upgrade`"
            )
        upgrade_schema(conn, manifest)
    with conn.transaction():
        conn.execute("SELECT set_config('rag.labels', '*', true)")
        row = _one(conn, "SELECT manifest FROM rag_state")
    return row[0]


def schema_version(conn: psycopg.Connection) -> int:
    """The schema version of the database (0: empty). Raises IndexMismatchError for a version newer than this
    release knows."""
    with conn.transaction():
        exists = _one(conn, "SELECT to_regclass('rag_schema') IS NOT NULL")[0]
        version = _one(conn, "SELECT version FROM rag_schema")[0] if exists else 0
    if version > SCHEMA_VERSION:
        raise IndexMismatchError(
            f"the database schema is version {version}, newer than this release knows "
            f"({SCHEMA_VERSION}); upgrade the software rather than the database"
        )
    return version


def upgrade_schema(conn: psycopg.Connection, manifest: dict) -> tuple[int, int]:
    """Apply the missing migrations, each in its own transaction, one process at a time; returns (from, to)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS rag_schema (version integer NOT NULL)")
        if _one(conn, "SELECT count(*) FROM rag_schema")[0] == 0:
            conn.execute("INSERT INTO rag_schema VALUES (0)")
        start = version = _one(conn, "SELECT version FROM rag_schema FOR UPDATE")[0]
        if version > SCHEMA_VERSION:
            raise IndexMismatchError(
                f"the database schema is version {version}, newer than this release knows "
                f"({SCHEMA_VERSION}); upgrade the software rather than the database"
            )
        for script in MIGRATIONS[version:]:
            conn.execute(script.replace("{dim}", str(int(manifest["embedder"]["dim"]))))
            version += 1
            if version == 1:
                conn.execute("INSERT INTO rag_state (manifest) VALUES (%s)", (_json(manifest),))
        conn.execute("UPDATE rag_schema SET version = %s", (version,))
    return start, version


def _warn_if_rls_bypassed(conn: psycopg.Connection) -> None:
    with conn.transaction():
        bypass = conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
    if bypass and bypass[0]:
        log.warning(
            "the PostgreSQL role %s bypasses row-level security (SUPERUSER or BYPASSRLS): access labels are "
            "enforced by the service's filters only; connect as a role without them (docs/deployment.md)",
            "in use",
        )


def _remove(conn: psycopg.Connection, doc_ids: list[str]) -> None:
    """Delete documents (their chunks cascade), their chunks' postings, and take their chunks out of the BM25
    statistics."""
    if not doc_ids:
        return
    _count_terms(conn, doc_ids, -1)
    conn.execute(
        "DELETE FROM postings p USING chunks c, unnest(c.terms) t (term) "
        "WHERE c.doc_id = ANY(%s) AND p.term = t.term AND p.chunk_id = c.id",
        (doc_ids,),
    )
    conn.execute("DELETE FROM documents WHERE doc_id = ANY(%s)", (doc_ids,))


def _post(conn: psycopg.Connection, doc_ids: list[str]) -> None:
    """The postings of the chunks of `doc_ids`, from their stored terms, in key order."""
    if doc_ids:
        conn.execute(
            "INSERT INTO postings SELECT t.term, c.id, t.tf, c.length, c.doc_lang, c.labels "
            "FROM chunks c, unnest(c.terms, c.tfs) t (term, tf) WHERE c.doc_id = ANY(%s) ORDER BY 1, 2",
            (doc_ids,),
        )


def _count_terms(conn: psycopg.Connection, doc_ids: list[str], sign: int) -> None:
    """Add (+1) or subtract (-1) the chunks of `doc_ids` to/from the document frequencies and the state's totals."""
    if not doc_ids:
        return
    conn.execute(
        "INSERT INTO terms (term, df) SELECT t, %(sign)s * count(*) FROM chunks c, unnest(c.terms) t "
        "WHERE c.doc_id = ANY(%(ids)s) GROUP BY t ORDER BY t "
        "ON CONFLICT (term) DO UPDATE SET df = terms.df + excluded.df",
        {"sign": sign, "ids": doc_ids},
    )
    conn.execute("DELETE FROM terms WHERE df <= 0")
    conn.execute(
        "UPDATE rag_state SET chunks = chunks + %(sign)s * s.n, total_length = total_length + %(sign)s * s.total "
        "FROM (SELECT count(*) n, coalesce(sum(length), 0) total FROM chunks WHERE doc_id = ANY(%(ids)s)) s",
        {"sign": sign, "ids": doc_ids},
    )


def _insert(conn: psycopg.Connection, doc: dict, chunks: list[NewChunk]) -> None:
    conn.execute(
        "INSERT INTO documents (doc_id, source, title, format, lang, sha256, labels, pages, chars, ingested_at, "
        "chunks, text, blocks, pages_ocr, pages_without_text) VALUES (%(doc_id)s, %(source)s, %(title)s, "
        "%(format)s, %(lang)s, %(sha256)s, %(labels)s, %(pages)s, %(chars)s, %(ingested_at)s, %(chunks)s, "
        "%(text)s, %(blocks)s, %(pages_ocr)s, %(pages_without_text)s)",
        {
            **doc,
            "labels": list(doc["labels"]),
            "ingested_at": doc.get("ingested_at") or time.time(),
            "chunks": len(chunks),
            "blocks": _json(json.loads(doc["blocks"]) if isinstance(doc["blocks"], str) else doc["blocks"]),
            "pages_ocr": list(doc.get("pages_ocr", ())),
            "pages_without_text": list(doc.get("pages_without_text", ())),
        },
    )
    labels = list(doc["labels"])
    rows = []
    for c in chunks:
        counts = Counter(c.tokens)
        rows.append(
            (
                doc["doc_id"],
                c.ordinal,
                c.start,
                c.end,
                c.page,
                _json(list(c.heading_path)),
                c.lang,
                c.content_hash,
                c.text,
                doc["lang"],
                labels,
                np.asarray(c.vector, dtype=np.float32),
                _TS_CONFIG.get(c.lang, "simple"),
                c.text,
                list(counts),
                list(counts.values()),
                len(c.tokens),
            )
        )
    with conn.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO chunks (doc_id, ordinal, start, "end", page, heading, lang, content_hash, text, doc_lang, '
            "labels, embedding, tsv, terms, tfs, length) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "to_tsvector(%s::regconfig, %s), %s, %s, %s)",
            rows,
        )


def _dense(
    conn: psycopg.Connection, vector: np.ndarray, depth: int, search_filter: SearchFilter | None
) -> list[tuple[int, float]]:
    """The `depth` admitted rows nearest `vector` by inner product: through HNSW (ef_search raised to `depth`),
    then exactly over the admitted rows when the index returned fewer than `depth` and more rows are admitted (HNSW
    filters after its graph search, so a selective filter can leave it short)."""
    params: dict = {"v": np.asarray(vector, dtype=np.float32), "depth": depth}
    where = _where(search_filter, "c", params, "doc_lang")
    query = (
        f"SELECT c.id, -(c.embedding <#> %(v)s) FROM chunks c WHERE true{where} "
        "ORDER BY c.embedding <#> %(v)s LIMIT %(depth)s"
    )  # the distance alone: HNSW can order by it
    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(max(depth, 40), EF_SEARCH_MAX)),))
    rows = conn.execute(query, params).fetchall()
    if len(rows) < depth:
        admitted = _one(
            conn, f"SELECT count(*) FROM (SELECT 1 FROM chunks c WHERE true{where} LIMIT %(depth)s) s", params
        )[0]
        if admitted > len(rows):
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            rows = conn.execute(query, params).fetchall()
            conn.execute("SELECT set_config('enable_indexscan', 'on', true)")
    return [(int(i), float(s)) for i, s in rows]


def _lexical(
    conn: psycopg.Connection, terms: list[str], depth: int, search_filter: SearchFilter | None
) -> list[tuple[int, float]]:
    """BM25 as rag/lexical.py (Lucene idf, no (k1 + 1) factor), ties by chunk id: the postings of the query's terms
    (one index range scan each, the filter and row-level security applied to them), scored in double precision and
    summed per chunk."""
    if not terms:
        return []
    n, total = _one(conn, "SELECT chunks, total_length FROM rag_state")
    params: dict = {
        "terms": terms,
        "depth": depth,
        "n": float(n),
        "k": K1 * (1 - B),  # the length norm k1 (1 - b + b length / avg) as k + l length
        "l": K1 * B / max(total / n if n else 0.0, 1e-9),
    }
    where = _where(search_filter, "p", params, "doc_lang")
    rows = conn.execute(
        # q: the query's terms and their idf, computed once (MATERIALIZED): a posting costs a multiply-add and a
        # division; the planner sees a few rows there and reads each term's postings by an index range scan
        "WITH q AS MATERIALIZED (SELECT term, ln(1 + (%(n)s - df::float8 + 0.5) / (df::float8 + 0.5)) idf "
        "     FROM terms WHERE term = ANY(%(terms)s)) "
        "SELECT p.chunk_id, sum(q.idf * p.tf / (p.tf + %(k)s + %(l)s * p.length)) score "
        "FROM q JOIN postings p ON p.term = q.term "
        f"WHERE true{where} GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT %(depth)s",
        params,
    ).fetchall()
    return [(int(i), float(s)) for i, s in rows if s > 0]


def _check_source(doc_id: str, source: str, stored_source: str) -> None:
    if stored_source != source:
        raise DocumentConflictError(
            f"{source}: its document id {doc_id} belongs to a document from another source, which is left as it "
            "is; rename the file"
        )


def _json(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _document(row: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        doc_id=row[0],
        source=row[1],
        title=row[2],
        format=row[3],
        lang=row[4],
        sha256=row[5],
        labels=tuple(row[6]),
        pages=row[7],
        chars=row[8],
        ingested_at=row[9],
        chunks=row[10],
    )


def _chunk(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        id=row[0],
        doc_id=row[1],
        ordinal=row[2],
        start=row[3],
        end=row[4],
        page=row[5],
        heading_path=tuple(row[6]),
        lang=row[7],
        content_hash=row[8],
        text=row[9],
        title=row[10],
        source=row[11],
    )


@contextlib.contextmanager
def connect(dsn: str, *, password_file: Path | None = None) -> Iterator[psycopg.Connection]:
    """One plain connection (for `rag db upgrade`), checked against the egress guard like the store's."""
    import psycopg

    check_hosts(dsn)
    password = read_password(password_file)
    try:
        extra: dict[str, Any] = {"password": password} if password is not None else {}
        conn = psycopg.connect(dsn, **extra)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to the PostgreSQL store {redact(dsn)}: {type(exc).__name__}") from None
    with conn:
        yield conn


def open_postgres(settings: Settings, manifest: dict, *, check: bool = True) -> PostgresStore:
    """The store of `settings.store` (backend postgres). Raises ConfigError when store.dsn is missing."""
    if not settings.store.dsn:
        raise ConfigError("store.backend is postgres but store.dsn is not set")
    # check=False (a catalog without the embedder, reindex) must not create the schema: it would store `manifest`
    return PostgresStore.open(
        dsn=settings.store.dsn,
        manifest=manifest,
        password_file=settings.store.password_file,
        check=check,
        upgrade=check,
    )
