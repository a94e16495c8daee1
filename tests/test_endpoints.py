"""Several LLM servers: least outstanding requests, cool-down and probes, fail-over only before the first event.

The unit tests talk to tiny stdlib HTTP servers on 127.0.0.1 that answer like an OpenAI completion server (or fail
in a chosen way); the integration test kills one of two real `llama_cpp.server` processes under concurrent load.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.endpoints import EndpointPool
from rag.errors import GenerationError
from rag.generate import OpenAICompatibleLLM, resolve_model
from rag.prompt import build_prompt
from rag.settings import LLMSettings

from .llama_server import LlamaServer, free_port, one_request

PIECES = ["Hel", "lo"]
STREAMS = {"ok": PIECES, "break": PIECES[:1], "break_before_text": [""]}  # texts of the events sent


class CannedServer(ThreadingHTTPServer):
    """`ok` streams PIECES; `503` and `400` answer that status; the `break` modes drop the connection mid-stream."""

    daemon_threads = True

    def __init__(self, mode: str):
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.mode, self.healthy, self.posts, self.probes = mode, True, 0, 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked streams, as uvicorn sends them: a dropped connection is then an error

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.probes += 1
        self._reply(200 if self.server.healthy else 503)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        if self.server.mode in ("503", "400"):
            return self._reply(int(self.server.mode))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in STREAMS[self.server.mode]:
            self._chunk(f"data: {json.dumps({'choices': [{'text': piece}]})}\n\n")
        if self.server.mode != "ok":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _reply(self, status: int) -> None:
        body = b'{"data": []}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


@pytest.fixture
def servers():
    started: list[CannedServer] = []

    def start(mode: str) -> CannedServer:
        started.append(CannedServer(mode))
        return started[-1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def remote(*urls: str, cooldown_s: float = 60) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(LLMSettings(backend="openai", endpoints=list(urls), health_interval_s=cooldown_s))


def test_least_outstanding_endpoint_is_chosen_and_ties_take_turns():
    pool = EndpointPool(["http://a/v1", "http://b", "http://c/"], cooldown_s=60, probe_timeout_s=1, headers={})
    assert [e.url for e in pool.endpoints] == ["http://a", "http://b", "http://c"]
    with pool.acquire() as first, pool.acquire() as second, pool.acquire() as third:
        assert len({first.url, second.url, third.url}) == 3
        with pool.acquire() as busy:
            with pool.acquire() as other:
                assert other.url != busy.url and busy.outstanding == 2 == other.outstanding
    assert all(e.outstanding == 0 for e in pool.endpoints)
    turns = []
    for _ in range(6):
        with pool.acquire() as endpoint:
            turns.append(endpoint.url)
    assert turns[:3] == turns[3:] and len(set(turns)) == 3


def test_concurrent_callers_are_spread_evenly():
    """Choice and count happen under one lock: 30 requests held at once land 10 on each endpoint."""
    pool = EndpointPool(["http://a", "http://b", "http://c"], cooldown_s=60, probe_timeout_s=1, headers={})
    barrier, held = threading.Barrier(30), []

    def hold() -> None:
        with pool.acquire() as endpoint:
            held.append(endpoint.url)
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=hold) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(held.count(url) for url in {"http://a", "http://b", "http://c"}) == [10, 10, 10]


def test_failed_endpoint_rests_then_must_pass_a_probe(servers):
    a, b = servers("ok"), servers("ok")
    pool = EndpointPool([a.url, b.url], cooldown_s=0.3, probe_timeout_s=1, headers={})
    pool.mark_down(pool.endpoints[0], "test")
    assert {_take(pool) for _ in range(4)} == {pool.endpoints[1].url}
    a.healthy = False
    time.sleep(0.35)
    assert {_take(pool) for _ in range(4)} == {pool.endpoints[1].url}, "a failed probe starts another cool-down"
    assert a.probes == 1 and pool.endpoints[0].suspect
    a.healthy = True
    time.sleep(0.35)
    assert {_take(pool) for _ in range(4)} == {e.url for e in pool.endpoints}
    assert a.probes == 2 and not pool.endpoints[0].suspect and b.probes == 0


def test_request_fails_over_before_streaming_and_failed_endpoints_rest(servers):
    refused, failing, ok = f"http://127.0.0.1:{free_port()}/v1", servers("503"), servers("ok")
    llm = remote(refused, failing.url, ok.url)
    assert [llm.complete("Hi") for _ in range(4)] == ["Hello"] * 4
    assert (failing.posts, ok.posts) == (1, 4)
    assert [e.suspect for e in llm.pool.endpoints] == [True, True, False]


def test_stream_broken_after_its_first_event_is_an_error_not_a_retry(servers):
    broken, ok = servers("break"), servers("ok")
    llm = remote(broken.url, ok.url)
    received = []
    with pytest.raises(GenerationError, match="after the answer began; not retried"):
        for piece in llm.stream_tokens("Hi"):
            received.append(piece)
    assert received == PIECES[:1] and ok.posts == 0


def test_stream_broken_before_any_text_is_retried(servers):
    broken, ok = servers("break_before_text"), servers("ok")
    assert remote(broken.url, ok.url).complete("Hi") == "Hello"
    assert (broken.posts, ok.posts) == (1, 1)


def test_client_error_is_not_retried_elsewhere(servers):
    rejecting, ok = servers("400"), servers("ok")
    with pytest.raises(GenerationError, match="answered HTTP 400"):
        remote(rejecting.url, ok.url).complete("Hi")
    assert ok.posts == 0


def test_no_endpoint_left_names_each_and_its_next_probe():
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    llm = remote(*urls)
    with pytest.raises(GenerationError, match=f"{urls[0]}/completions.*; cannot reach .*{urls[1]}/completions"):
        llm.complete("Hi")
    with pytest.raises(GenerationError, match=r"failed earlier, next probe in \d"):
        llm.complete("Hi")


def _take(pool: EndpointPool) -> str:
    with pool.acquire() as endpoint:
        return endpoint.url


# ---------------------------------------------------------------------------------------------- real llama.cpp
@pytest.fixture(scope="module")
def two_llama_servers(tmp_path_factory):
    model, _ = resolve_model(LLMSettings(), tmp_path_factory.getbasetemp() / "data")
    logs = tmp_path_factory.mktemp("llama-servers")
    started = [LlamaServer.start(model, logs / f"server-{i}.log", n_ctx=1024) for i in range(2)]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.mark.integration
def test_killing_a_server_fails_no_request_that_had_not_started(two_llama_servers, caplog):
    """6 clients x 2 requests over two servers; one is SIGKILLed once two requests finished."""
    victim, survivor = two_llama_servers
    llm = remote(victim.url, survivor.url)
    prompt = build_prompt("Who must approve a security exception?", [])
    outcomes, kill_once = [], threading.Lock()

    def client() -> None:
        for _ in range(2):
            outcomes.append(one_request(llm, prompt, max_tokens=8))
            if len(outcomes) >= 2 and kill_once.acquire(blocking=False):
                victim.kill()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert kill_once.locked() and len(outcomes) == 12
    assert [o.error for o in outcomes if o.error and o.pieces == 0] == [], "a request that had not started failed"
    assert all("after the answer began" in o.error for o in outcomes if o.error)
    assert sum(o.error is None for o in outcomes) >= 8
    failed_over = [r for r in caplog.records if r.name == "rag.endpoints" and "cannot reach" in r.getMessage()]
    assert failed_over, "the kill met no request in flight: the test proved nothing"
