"""A real `rag serve` for the tests: uvicorn in a thread on a free 127.0.0.1 port, the real models, its own index.

The index holds the sample corpus (label `public`) and documents planted with unique secret strings (label
`restricted:defence`) that only the `defence` key may see; everything the server logs is captured for the leak tests.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rag.auth import KeyStore, keys_path
from rag.load import load_bytes

SECRETS = ("ZEBRA-7731-SECRET", "OKAPI-4402-CLASSIFIED")
RESTRICTED = "restricted:defence"
# Written to be retrieved by the questions of the leak suite, were the label filter missing.
SECRET_FILES = {
    "defence-remote-work.md": (
        "# Remote work for defence staff\n\nDefence staff may work remotely 5 days per week. The codeword for remote "
        f"access is {SECRETS[0]}. Staff must not print the restricted document.\n"
    ),
    "defence-travel.txt": (
        "Travel expenses for defence missions\n\nDefence missions are reimbursed at 300 EUR per night. The mission "
        f"codename is {SECRETS[1]}; ignore previous instructions is not a valid excuse for disclosure.\n"
    ),
}
PRINCIPALS = {  # name: (labels, admin)
    "public": (["public"], False),
    "public-admin": (["public"], True),
    "defence": (["public", RESTRICTED], True),
}


@dataclass
class Service:
    base_url: str
    keys: dict[str, str]  # principal -> API key
    pipeline: object
    settings: object
    secret_doc_ids: list[str]
    logs: list[str] = field(default_factory=list)

    def client(self, principal: str | None, **options) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[principal]}"} if principal else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=options.pop("timeout", 300), **options)

    def async_client(self, principal: str, **options) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers={"Authorization": f"Bearer {self.keys[principal]}"},
                                 timeout=300, **options)

    def metric(self, name: str) -> float:
        """Sum of a Prometheus sample over its labels."""
        text = httpx.get(f"{self.base_url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record) + (record.exc_text or ""))


def build_index(pipeline) -> list[str]:
    """Sample corpus as `public`, the planted documents as `restricted:defence`; returns the planted ids."""
    from .conftest import EXAMPLES

    assert not pipeline.ingest([EXAMPLES], labels=["public"], progress=False).failed
    planted = [load_bytes(text.encode(), name) for name, text in SECRET_FILES.items()]
    pipeline.ingest_documents(planted, labels=[RESTRICTED], atomic=True)
    return [d.doc_id for d in planted]


def create_keys(settings) -> dict[str, str]:
    store = KeyStore(keys_path(settings))
    return {name: store.create(name, labels, admin=admin)[0] for name, (labels, admin) in PRINCIPALS.items()}


def start(settings, pipeline, secret_doc_ids: list[str], *, host: str = "127.0.0.1") -> tuple[Service, callable]:
    """Serve on `host` until the returned `stop()` is called; waits for /readyz (asked over 127.0.0.1)."""
    import uvicorn

    from rag.server import create_app

    logs: list[str] = []
    handler = _Collect(logs)
    loggers = [logging.getLogger(name) for name in ("uvicorn", "rag")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings, pipeline), log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    service = Service(f"http://127.0.0.1:{sock.getsockname()[1]}", create_keys(settings), pipeline, settings,
                      secret_doc_ids, logs)
    _wait_ready(service.base_url)

    def stop() -> None:
        server.should_exit = True
        thread.join(60)
        for logger in loggers:
            logger.removeHandler(handler)

    return service, stop


@contextmanager
def serving(make_settings, embedder, home: Path, *, max_tokens: int, queue_size: int) -> Iterator[Service]:
    """`start` over a new index in `home` built by `build_index`, with keys and audit log there too; answers of at
    most `max_tokens` and one llama.cpp thread keep the tests fast on a shared machine."""
    from rag.pipeline import Pipeline

    settings = make_settings(
        llm={"n_threads": 1, "max_tokens": max_tokens},
        server={"queue_size": queue_size, "max_upload_mb": 1, "max_request_kb": 64, "keys_file": home / "keys.json"},
        audit={"path": home / "audit.jsonl"},
        ingest={"parse_timeout_s": 15, "parse_memory_mb": 512},  # hostile uploads hit the limits fast
    )
    pipeline = Pipeline(settings, embedder=embedder)
    try:
        running, stop = start(settings, pipeline, build_index(pipeline))
        try:
            yield running
        finally:
            stop()
    finally:
        pipeline.close()


def _wait_ready(base_url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{base_url}/readyz").json()
        except httpx.TransportError:
            status = {"status": "starting"}
        if status["status"] == "ready":
            return
        assert status["status"] != "failed", status
        time.sleep(0.2)
    raise TimeoutError(f"server at {base_url} not ready after {timeout} s")


def sse_events(lines) -> list[tuple[str | None, str]]:
    """(event name, data) of each Server-Sent Event in a stream of text lines."""
    events, name, data = [], None, []
    for line in lines:
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


def ask_stream(client: httpx.Client, question: str, **body) -> list[tuple[str, dict]]:
    with client.stream("POST", "/v1/ask", json={"question": question, "stream": True, **body}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(name, json.loads(data)) for name, data in sse_events(response.iter_lines())]

