"""Two `rag serve` replicas (separate processes, ports and models) on one PostgreSQL database, as behind a load
balancer: uploads through both at once, each replica SIGKILLed at random points (mid-parse, mid-embedding,
mid-commit), restarted, the uploads finished. Afterwards every document is whole or absent and none twice, chunks =
vectors = text rows and the BM25 statistics agree with the chunks (tests/pg.py `check_consistent`), every upload's
original file is kept, and a document committed through one replica is found by the other at once.
`RAG_TEST_SEED` replays a run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from rag.load import document_id, load_bytes

from .conftest import ROOT
from .llama_server import free_port
from .pg import check_consistent

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# who is killed in each round, at random moments: each alone while the other keeps committing, then both
ROUNDS = (("a",), ("b",), ("a", "b"))
TOPICS = ("parking", "telework", "archives", "holidays", "security", "canteen", "training", "travel")


def _text(replica: str, n: int) -> str:
    """A small document of a few chunks, its words unique to (replica, n)."""
    topic = TOPICS[n % len(TOPICS)]
    clauses = " ".join(f"Clause {j} of note {replica}{n} sets the {topic} rule number {j * n}." for j in range(60))
    return f"# Note {replica}{n} on {topic}\n\nThis note explains the {topic} rules of the office. {clauses}\n"


class _Replica:
    """One `python -m rag serve` process on its own port; killed and started again by the test."""

    def __init__(self, name: str, env: dict[str, str], log: Path):
        self.name = name
        self.env = {**env, "RAG_AUDIT__PATH": str(log.parent / f"audit-{name}.jsonl")}  # each replica its own trail
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "a")  # noqa: SIM115 - closed by stop()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "rag", "serve", "--port", str(self.port)],
                                        env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/readyz", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.process is not None and self.process.poll() is None, f"replica {self.name} died"
            assert time.monotonic() < deadline, f"replica {self.name} not ready after {timeout} s"
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class _Uploader(threading.Thread):
    """Uploads its replica's files one after another (each a real file, posted as its bytes); after a failed
    request (the replica killed, or still loading) it waits until the replica is ready again."""

    def __init__(self, replica: _Replica, key: str, folder: Path):
        super().__init__(name=f"uploader-{replica.name}", daemon=True)
        self.replica, self.key, self.folder = replica, key, folder
        self.stop = threading.Event()
        self.outcomes: list[tuple[str, int | str]] = []  # (file name, status or transport error)

    def run(self) -> None:
        with httpx.Client(base_url=self.replica.base_url, headers={"Authorization": f"Bearer {self.key}"},
                          timeout=120) as client:
            n = 0
            while not self.stop.is_set():
                path = self.folder / f"{self.replica.name}-{n}.md"
                path.write_text(_text(self.replica.name, n))
                try:
                    with path.open("rb") as handle:
                        response = client.post("/v1/documents", files={"files": (path.name, handle)},
                                               data={"labels": "public"})
                    outcome: int | str = response.status_code
                except httpx.TransportError as exc:  # killed mid-request: in flight, maybe committed
                    outcome = type(exc).__name__
                self.outcomes.append((path.name, outcome))
                n += 1
                while outcome != 201 and not self.stop.is_set() and not self.replica.ready():
                    time.sleep(0.2)


def _upload(replica: _Replica, key: str, paths: list[Path]) -> httpx.Response:
    with httpx.Client(base_url=replica.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
        return client.post("/v1/documents", files=[("files", (p.name, p.read_bytes())) for p in paths],
                           data={"labels": "public"})


def test_two_replicas_take_uploads_through_sigkills(postgres, pg_settings, pg_pipeline, embedder, tmp_path):
    seed = int(os.environ.get("RAG_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAG_STORE__BACKEND": "postgres",
           "RAG_STORE__DSN": pg_settings.store.dsn, "RAG_INDEX_DIR": str(tmp_path / "index"),  # one host: shared
           "RAG_DATA_DIR": str(pg_settings.data_dir), "RAG_SERVER__KEYS_FILE": str(tmp_path / "keys.json"),
           "RAG_LLM__N_THREADS": "1", "RAG_EMBEDDER__THREADS": "1"}
    key = subprocess.run([sys.executable, "-m", "rag", "keys", "create", "--principal", "loader", "--label", "public",
                          "--admin"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True).stdout.strip()
    folder = tmp_path / "files"
    folder.mkdir()
    replicas = {name: _Replica(name, env, tmp_path / f"replica-{name}.log") for name in ("a", "b")}
    uploaders = {name: _Uploader(replica, key, folder) for name, replica in replicas.items()}
    kills: Counter = Counter()
    started, restarts = time.monotonic(), []  # seconds: the run, each round until both are ready again
    try:
        for replica in replicas.values():  # both create the schema at once: one migrates, the other waits for it
            replica.start()
        for replica in replicas.values():
            replica.wait_ready()
        first_ready = time.monotonic() - started
        store = pg_pipeline.store  # the test's own connection to the database: the truth, read directly
        for uploader in uploaders.values():
            uploader.start()
        for victims in ROUNDS:
            round_start = time.monotonic()
            plan = sorted((rng.uniform(1, 5), name) for name in victims)  # the second may die while the first loads
            for n, (at, name) in enumerate(plan):
                time.sleep(max(0.0, round_start + at - time.monotonic()))
                replicas[name].kill()
                kills[name] += 1
                if n == 0:  # one REPEATABLE READ view, while the other replica may be committing
                    check_consistent(store)
                replicas[name].start()
            for replica in replicas.values():
                replica.wait_ready()
            restarts.append(round(time.monotonic() - round_start, 1))
        for uploader in uploaders.values():
            uploader.stop.set()
            uploader.join(180)
        outcomes = {name: outcome for u in uploaders.values() for name, outcome in u.outcomes}
        upload_id = {name: document_id(f"upload://loader/public/{name}") for name in outcomes}
        stored = {d.doc_id for d in store.documents()}
        acknowledged = {upload_id[n] for n, outcome in outcomes.items() if outcome == 201}
        in_flight = {upload_id[n] for n, outcome in outcomes.items() if isinstance(outcome, str)}
        print(f"seed {seed}: {len(outcomes)} uploads {dict(Counter(outcomes.values()))}, kills {dict(kills)}, "
              f"{len(stored)} documents stored; first start {first_ready:.0f} s, rounds {restarts} s")
        assert kills == {"a": 2, "b": 2} and all(sum(1 for _, o in u.outcomes if o == 201) >= 3 for u in
                                                   uploaders.values()), "the run did not do what it claims"
        assert set(o for o in outcomes.values() if isinstance(o, int)) <= {201, 503}, outcomes
        assert acknowledged <= stored, "an acknowledged upload is missing"
        assert stored <= acknowledged | in_flight, "a refused or never-sent upload is stored"
        check_consistent(store)

        # finish the uploads: every file not acknowledged again through its replica (those that did commit while
        # their answer was lost come back unchanged)
        for name, replica in replicas.items():
            pending = [folder / n for n, outcome in outcomes.items() if n.startswith(f"{name}-") and outcome != 201]
            if pending:
                finished = _upload(replica, key, pending)
                assert finished.status_code == 201, finished.text
        stats = check_consistent(store)
        documents = {d.doc_id: d for d in store.documents()}
        assert set(documents) == set(upload_id.values()) and stats["documents"] == len(outcomes)
        for name, doc_id in upload_id.items():  # whole: the file's text and every one of its chunks
            extracted = load_bytes((folder / name).read_bytes(), name)
            assert store.document_text(doc_id)[0] == extracted.text
            assert documents[doc_id].chunks == len(pg_pipeline.chunker.split(extracted)) > 0
        for replica in replicas.values():
            with httpx.Client(base_url=replica.base_url, headers={"Authorization": f"Bearer {key}"},
                              timeout=120) as client:
                listed = client.get("/v1/documents").json()["documents"]
                assert {d["doc_id"] for d in listed} == set(documents)
                for name, doc_id in upload_id.items():
                    original = client.get(f"/v1/documents/{doc_id}/original")
                    assert original.status_code == 200, f"{name}: {original.text}"
                    assert original.content == (folder / name).read_bytes()

        # a commit through one replica is searchable from the other at once: no restart, no rebuild
        for writer, reader in (("a", "b"), ("b", "a")):
            path = folder / f"visible-{writer}.md"
            path.write_text(f"# Notice {writer}\n\nThe quokka{writer} protocol governs the zanzibar{writer} archive.\n")
            assert _upload(replicas[writer], key, [path]).status_code == 201
            doc_id = document_id(f"upload://loader/public/{path.name}")
            with httpx.Client(base_url=replicas[reader].base_url, headers={"Authorization": f"Bearer {key}"},
                              timeout=120) as client:
                hits = client.post("/v1/search", json={"query": f"quokka{writer} zanzibar{writer}", "k": 3})
                assert hits.status_code == 200 and hits.json()["hits"][0]["doc_id"] == doc_id, hits.text
                assert client.get(f"/v1/documents/{doc_id}").status_code == 200
        check_consistent(store)
        print(f"seed {seed}: {time.monotonic() - started:.0f} s in all")
    finally:
        for uploader in uploaders.values():
            uploader.stop.set()
        for replica in replicas.values():
            replica.stop()
