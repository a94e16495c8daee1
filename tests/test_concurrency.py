"""Several processes on one index: `rag serve --workers 2` takes uploads through both workers while `rag ingest`
writes beside it, and each is SIGKILLed at random points. Afterwards the index holds exactly the committed documents,
chunks = vectors = BM25 rows, and no request got a status outside 2xx/4xx but the documented 503 (a worker still
loading after its restart); 409 is the documented answer to a second writer. `RAG_TEST_SEED` replays a run."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from rag.load import document_id

from .conftest import ROOT
from .llama_server import free_port

pytestmark = pytest.mark.integration

ROUNDS = 3
FILES_PER_ROUND = 10
TOPICS = ("parking", "telework", "archives", "holidays", "security", "canteen", "training", "travel")


def _text(kind: str, n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return (f"# {kind} note {n} on {topic}\n\nThis {kind} note number {n} explains the {topic} rules of the office. "
            f"Staff read note {n} before asking about {topic}.\n")


class _Rag:
    """`python -m rag` subprocesses over one index, from the repository root (its configs/default.yaml pins)."""

    def __init__(self, home: Path, data_dir: Path):
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAG_INDEX_DIR": str(home / "index"),
                    "RAG_DATA_DIR": str(data_dir), "RAG_SERVER__KEYS_FILE": str(home / "keys.json"),
                    "RAG_AUDIT__PATH": str(home / "audit.jsonl"), "RAG_LLM__N_THREADS": "1",
                    "RAG_EMBEDDER__THREADS": "1", "RAG_INGEST__COMMIT_EVERY_CHUNKS": "2"}
        self.log = open(home / "processes.log", "a")

    def run(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "rag", *args], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "rag", *args], env=self.env, cwd=ROOT, stdout=self.log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _workers(server: subprocess.Popen) -> list[int]:
    """The uvicorn worker processes (multiprocessing children running the app), not its resource tracker."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    workers = []
    for pid in map(int, children):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            workers.append(pid)
    return workers


def _wait_ready(base_url: str, server: subprocess.Popen, workers: int = 2, timeout: float = 300) -> None:
    """Until `workers` worker processes run and /readyz says ready several times in a row (both workers)."""
    deadline, ready_in_a_row = time.monotonic() + timeout, 0
    while ready_in_a_row < 6:
        assert time.monotonic() < deadline, f"server not ready after {timeout} s"
        assert server.poll() is None, "the server's main process died"
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200
        except httpx.TransportError:
            ready = False
        ready_in_a_row = ready_in_a_row + 1 if ready and len(_workers(server)) == workers else 0
        time.sleep(0.3)


class _Uploader(threading.Thread):
    """Posts one small document after another through the server's port (so through both workers)."""

    def __init__(self, base_url: str, key: str):
        super().__init__(name="uploader", daemon=True)
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        self.n = 0
        self.stop = threading.Event()
        self.outcomes: list[tuple[str, int | str]] = []  # (file name, status or transport error)

    def run(self) -> None:
        while not self.stop.is_set():
            name = f"upload-{self.n}.md"
            try:
                response = self.client.post("/v1/documents", files={"files": (name, _text("upload", self.n).encode())},
                                            data={"labels": "public"})
                outcome: int | str = response.status_code
            except httpx.TransportError as exc:  # a worker killed mid-request: in flight, maybe committed
                outcome = type(exc).__name__
            self.outcomes.append((name, outcome))
            self.n += 1
            time.sleep(0.1)
        self.client.close()


def test_two_workers_and_an_ingest_share_one_index_through_sigkills(tmp_path, make_settings):
    seed = int(os.environ.get("RAG_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    rag = _Rag(tmp_path, make_settings().data_dir)
    key = rag.run("keys", "create", "--principal", "loader", "--label", "public", "--admin").strip()
    folder = tmp_path / "incoming"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = rag.start("serve", "--workers", "2", "--port", str(port))
    uploader = _Uploader(base_url, key)
    kills: Counter = Counter()
    ingests: list[int | None] = []  # exit status of each round's ingest, None when killed
    try:
        _wait_ready(base_url, server)
        uploader.start()
        for round_ in range(ROUNDS):
            part = folder / f"round-{round_}"
            part.mkdir(parents=True)
            for n in range(FILES_PER_ROUND):
                (part / f"ingested-{round_}-{n}.md").write_text(_text("ingested", 100 * round_ + n))
            ingest = rag.start("ingest", str(part), "--label", "public", "--quiet")
            started = time.monotonic()
            # a worker at a random point (mid-upload, mid-commit, mid-rebuild); the ingest too, loading, parsing,
            # embedding or committing, except in the last round, which it completes
            plan = [(rng.uniform(0.5, 4), "worker")] + ([(rng.uniform(1, 15), "ingest")] if round_ < ROUNDS - 1
                                                        else [])
            for at, victim in sorted(plan):
                time.sleep(max(0.0, started + at - time.monotonic()))
                if victim == "worker":
                    os.kill(rng.choice(_workers(server)), signal.SIGKILL)
                    kills["worker"] += 1
                elif ingest.poll() is None:
                    ingest.kill()
                    kills["ingest"] += 1
            ingest.wait(300)
            ingests.append(None if ingest.returncode == -signal.SIGKILL else ingest.returncode)
            _wait_ready(base_url, server)  # uvicorn has restarted the killed worker
        uploader.stop.set()
        uploader.join(180)
        final = rag.start("ingest", str(folder), "--label", "public", "--quiet")  # acknowledges every file
        assert final.wait(300) == 0
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
            searched = client.post("/v1/search", json={"query": "which parking rules does note 7 explain", "k": 3})
        assert searched.status_code == 200 and searched.json()["hits"], searched.text
    finally:
        uploader.stop.set()
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    outcomes = uploader.outcomes
    statuses = Counter(outcome for _, outcome in outcomes)
    stats = json.loads(rag.run("stats", "--json"))
    with contextlib.closing(sqlite3.connect(tmp_path / "index" / "meta.sqlite")) as db:  # the truth, read directly
        stored = dict(db.execute("SELECT doc_id, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id) "
                                 "FROM documents d").fetchall())
    print(f"seed {seed}: {len(outcomes)} uploads {dict(statuses)}, kills {dict(kills)}, ingests "
          f"{ingests}, final {stats['documents']} documents, {stats['chunks']} chunks, "
          f"{stats['vectors']} vectors, {stats['bm25_rows']} BM25 rows")

    assert kills["worker"] == ROUNDS and statuses[201] > 0, "the run did not do what it claims"
    assert set(ingests) <= {None, 0, 3}, ingests  # 3: refused at once, an upload held the writer lock
    assert set(s for s in statuses if isinstance(s, int)) <= {201, 409, 503}, statuses
    assert stats["chunks"] == stats["vectors"] == stats["bm25_rows"] == sum(stored.values())
    upload_id = {name: document_id(f"upload://loader/public/{name}") for name, _ in outcomes}
    acknowledged = {upload_id[name] for name, outcome in outcomes if outcome == 201}
    in_flight = {upload_id[name] for name, outcome in outcomes if isinstance(outcome, str)}
    ingested = {document_id(str(path.resolve())) for path in folder.rglob("*.md")}
    assert acknowledged | ingested <= set(stored), "a committed document is missing"
    assert set(stored) <= acknowledged | ingested | in_flight, "a refused or never-sent document is stored"
    assert set(stored.values()) == {1}, "a document without its chunk, or with a chunk twice"
