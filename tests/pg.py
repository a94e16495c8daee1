"""A real PostgreSQL 16 with pgvector for the tests, from the PyPI wheel `pgserver` (Debian's postgresql has no
pgvector). One server per test session in a temporary folder, reached over its Unix socket only; each test gets a
database of its own, owned by a service role without SUPERUSER or BYPASSRLS that logs in with a password
(scram-sha-256), as production does (docs/deployment.md)."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_ROLE = "rag_service"


@dataclass
class TestServer:
    """The session's server: `database()` makes an empty database and returns its service DSN (no password)."""

    server: object  # pgserver.PostgresServer
    socket_dir: str
    password: str
    _numbers: itertools.count = field(default_factory=itertools.count)

    def admin(self, dbname: str = "postgres"):
        """A superuser connection (autocommit): what a DBA runs, never the service."""
        import psycopg

        return psycopg.connect(self.server.get_uri(dbname), autocommit=True)

    def database(self) -> str:
        """A new database with the vector extension, owned by the service role; its DSN without password."""
        name = f"rag_test_{next(self._numbers)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {SERVICE_ROLE}")
        with self.admin(name) as conn:
            conn.execute("CREATE EXTENSION vector")
        return self.dsn(name)

    def dsn(self, dbname: str) -> str:
        return f"host={self.socket_dir} dbname={dbname} user={SERVICE_ROLE}"


def start(folder: Path) -> TestServer:
    """Start the server in `folder` (stopped and deleted at exit by pgserver). As root, pgserver runs PostgreSQL as
    its own system user `pgserver`."""
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode="delete")
    password = secrets.token_urlsafe(16)
    with _admin(server) as conn:
        conn.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        # the service role authenticates by password; pgserver trusts the others on its socket (the DBA here)
        hba.write_text(f"local all {SERVICE_ROLE} scram-sha-256\n" + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")
    return TestServer(server, str(server.get_postmaster_info().socket_dir), password)


def _admin(server):
    import psycopg

    return psycopg.connect(server.get_uri(), autocommit=True)


def check_consistent(store) -> dict:
    """Every invariant of a committed state of a PostgresStore, all read in one REPEATABLE READ transaction (so also
    while others commit): chunks = vectors = BM25 and tsvector rows, each document's chunk count, the BM25 totals,
    document frequencies and postings equal to a recount from the chunks, no source twice. Returns `store.stats()`
    (read afterwards)."""
    with store._transaction() as conn:
        counts = conn.execute("SELECT count(*), count(embedding), count(terms), count(tsv) FROM chunks").fetchone()
        assert len(set(counts)) == 1, counts
        assert conn.execute("SELECT count(*) FROM documents d WHERE chunks <> "
                            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id)").fetchone()[0] == 0
        assert conn.execute("SELECT count(*), coalesce(sum(length), 0) FROM chunks").fetchone() == conn.execute(
            "SELECT chunks, total_length FROM rag_state").fetchone()
        recount = dict(conn.execute("SELECT t, count(*) FROM chunks, unnest(terms) t GROUP BY t").fetchall())
        assert dict(conn.execute("SELECT term, df FROM terms").fetchall()) == recount
        assert sorted(conn.execute("SELECT term, chunk_id, tf, length, doc_lang, labels FROM postings")) == sorted(
            conn.execute("SELECT t.term, c.id, t.tf, c.length, c.doc_lang, c.labels FROM chunks c, "
                         "unnest(c.terms, c.tfs) t (term, tf)"))
        assert conn.execute("SELECT count(*) - count(DISTINCT source) FROM documents").fetchone()[0] == 0
    return store.stats()
