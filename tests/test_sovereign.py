"""The egress guard (rag/sovereign.py): what it refuses, what it lets through, and what strace sees from outside.

The guard is permanent once installed, so every test that installs it runs a child Python; the pure allow-list
logic is tested in process. The end-to-end test runs the real `rag` commands (ingest, ask, serve, eval) under
strace and requires zero refusals and zero socket addresses beyond loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from rag.settings import Settings
from rag.sovereign import _Destinations, configured_hosts

from .conftest import EXAMPLES, ROOT
from .egress import destinations, lan_address, run, traced

QUESTION = "How many days per week may staff work remotely?"


def python(tmp_path, code: str, *args: str, env: dict | None = None):
    """Run `code` as a script file in a child Python under strace; returns (result, strace log)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    log = tmp_path / "strace.log"
    result = run([sys.executable, str(script), *args], log, cwd=ROOT, timeout=120, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result, log


# ---------------------------------------------------------------------------------------------- allow-list logic
def test_loopback_is_always_admitted_and_nothing_else_by_default():
    nothing = _Destinations.parse([])
    for host in ("127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST.", b"localhost", None):
        assert nothing.admits(host), host
    for host in ("10.0.0.5", "192.0.2.1", "2001:db8::1", "0.0.0.0", "example.com", "fe80::1%eth0", ""):
        assert not nothing.admits(host), host


def test_listed_networks_and_names_are_admitted():
    listed = _Destinations.parse(["10.0.0.0/24", "2001:db8::5", "LLM-1.internal.", "[fd00::9]"])
    assert listed.admits("10.0.0.7") and not listed.admits("10.0.1.7")
    assert listed.admits("2001:db8::5") and not listed.admits("2001:db8::6")
    assert listed.admits("llm-1.internal") and listed.admits("fd00::9")
    assert not listed.admits("llm-2.internal")


def test_configured_hosts_come_from_endpoints_and_allowed_hosts():
    settings = Settings(llm={"endpoints": ["http://llm-1:8080/v1", "10.0.0.2:8080"]},
                        sovereignty={"allowed_hosts": ["10.1.0.0/16"]})
    assert configured_hosts(settings) == ["llm-1", "10.0.0.2", "10.1.0.0/16"]


# ---------------------------------------------------------------------------------------------- refusals
BLOCKED = """
import json, socket, sys
import httpx
from rag.errors import EgressBlockedError
from rag.sovereign import enforce_offline, status

enforce_offline()
attempts = {
    "tcp4": lambda: socket.socket().connect(("192.0.2.1", 80)),
    "tcp6": lambda: socket.socket(socket.AF_INET6).connect(("2001:db8::1", 80)),
    "tcp4_connect_ex": lambda: socket.socket().connect_ex(("192.0.2.1", 443)),
    "create_connection6": lambda: socket.create_connection(("2001:db8::1", 443), timeout=2),
    "udp4": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.0.2.1", 53)),
    "udp6": lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"x", ("2001:db8::1", 53)),
    "dns": lambda: socket.getaddrinfo("example.com", 443),
    "dns_gethostbyname": lambda: socket.gethostbyname("example.com"),
    "name_inside_connect": lambda: socket.socket().connect(("example.com", 80)),
    "https_client": lambda: httpx.get("https://example.com/", timeout=2),
}
outcome = {}
for name, attempt in attempts.items():
    try:
        attempt()
        outcome[name] = ["not blocked", ""]
    except EgressBlockedError as exc:
        outcome[name] = ["EgressBlockedError", str(exc)]
    except Exception as exc:
        outcome[name] = [type(exc).__name__, str(exc)]
print(json.dumps({"outcome": outcome, "refused": status().refused}))
"""


def test_public_addresses_and_lookups_are_refused_before_any_packet(tmp_path):
    result, log = python(tmp_path, BLOCKED)
    report = json.loads(result.stdout)
    outcome = report["outcome"]
    script = str(tmp_path / "script.py")
    for name, (kind, message) in outcome.items():
        expected = "ConnectError" if name == "https_client" else "EgressBlockedError"  # httpx wraps OSErrors
        assert kind == expected and message.startswith("egress blocked:"), (name, kind, message)
        if name != "https_client":
            assert f"(caller {script}:" in message, message  # the caller is the script's line, not the guard
    assert "192.0.2.1:80" in outcome["tcp4"][1] and "[2001:db8::1]:80" in outcome["tcp6"][1]
    assert "example.com" in outcome["dns"][1] and "example.com:80" in outcome["name_inside_connect"][1]
    assert "httpcore" in outcome["https_client"][1], "the caller of a library's lookup is the library's frame"
    assert report["refused"] == len(outcome)
    assert result.stderr.count("egress blocked:") == len(outcome), "every refusal is logged"
    assert destinations(log) == [], "a refused attempt must not reach the kernel"


def test_strace_check_sees_an_unguarded_attempt(tmp_path):
    """Control for the test above: without the guard the same kind of call shows up (a UDP connect sends nothing)."""
    code = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('192.0.2.1', 9))"
    _, log = python(tmp_path, code)
    assert destinations(log) == ["AF_INET 192.0.2.1:9"]


def test_uvloop_is_refused_and_uvicorn_falls_back_to_asyncio(tmp_path):
    code = """
    import asyncio
    from rag.sovereign import enforce_offline
    enforce_offline()
    try:
        import uvloop
    except ImportError as exc:
        print("refused:", exc)
    from uvicorn.loops.auto import auto_loop_factory
    loop = auto_loop_factory()()
    print(type(loop).__module__)
    """
    result, _ = python(tmp_path, code)
    assert "refused: uvloop is disabled by the sovereignty guard" in result.stdout
    assert result.stdout.strip().endswith("asyncio.unix_events")


def test_offline_switches_are_forced_before_hugging_face_loads(tmp_path):
    code = """
    from rag.sovereign import enforce_offline, status
    enforce_offline()
    from huggingface_hub import constants
    print(constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY, status().switches_set, status().early_imports)
    """
    result, _ = python(tmp_path, code, env={"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "0"})
    assert result.stdout.split() == ["True", "True", "True", "()"]


def test_a_library_imported_too_early_is_reported(tmp_path):
    code = """
    import huggingface_hub
    from rag.sovereign import enforce_offline
    print(enforce_offline().early_imports)
    """
    result, _ = python(tmp_path, code)
    assert "huggingface_hub" in result.stdout


def test_loading_settings_changes_neither_the_environment_nor_the_guard(tmp_path):
    """`load_settings` is pure; the entry point hands the guard the hosts it read, explicitly."""
    config = tmp_path / "rag.yaml"
    config.write_text("llm:\n  endpoints: [http://10.9.9.9:8080]\nsovereignty:\n  allowed_hosts: [10.1.0.0/16]\n")
    code = f"""
    import json, os
    from rag.sovereign import enforce_offline, status
    enforce_offline()
    before = dict(os.environ)
    from rag.settings import load_settings
    settings = load_settings({str(config)!r})
    loaded = [dict(os.environ) == before, list(status().allowed)]
    enforce_offline(settings)
    print(json.dumps(loaded + [list(status().allowed)]))
    """
    result, log = python(tmp_path, code)
    assert json.loads(result.stdout) == [True, [], ["10.1.0.0/16", "10.9.9.9"]]
    assert destinations(log) == []


def test_a_serve_worker_installs_its_own_guard_from_its_settings(tmp_path):
    """What each process of `rag serve --workers N` (or `uvicorn --factory`) runs: a fresh interpreter that inherits
    no guard, only the environment, and builds its app from it."""
    config = tmp_path / "rag.yaml"
    config.write_text(f"sovereignty:\n  allowed_hosts: [10.1.0.0/16]\nserver:\n  keys_file: {tmp_path}/keys.json\n"
                      f"audit:\n  path: {tmp_path}/audit.jsonl\n")
    code = """
    from rag.sovereign import status
    inherited = status().installed
    from rag.server import create_app_from_environment
    app = create_app_from_environment()
    app.state.services.close()
    print(inherited, status().installed, status().switches_set, ",".join(status().allowed))
    """
    result, log = python(tmp_path, code, env={"RAG_CONFIG": str(config), "RAG_INDEX_DIR": str(tmp_path / "index"),
                                              "RAG_DATA_DIR": str(tmp_path / "data")})
    assert result.stdout.split() == ["False", "True", "True", "10.1.0.0/16"]
    assert destinations(log) == []


# ---------------------------------------------------------------------------------------------- allowed endpoints
ALLOWED = """
import http.server, json, socketserver, sys, threading
import httpx
from rag.generate import OpenAICompatibleLLM
from rag.errors import GenerationError
from rag.settings import Settings
from rag.sovereign import enforce_offline, status


class Completions(http.server.BaseHTTPRequestHandler):
    '''Just enough of an OpenAI-compatible server: a streamed completion of two pieces.'''

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("Three", " days."):
            self.wfile.write(f"data: {json.dumps({'choices': [{'text': piece}]})}\\n\\n".encode())
        self.wfile.write(b"data: [DONE]\\n\\n")

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):  # without HTTPServer's reverse lookup of this machine's name, which the guard refuses
        socketserver.TCPServer.server_bind(self)


enforce_offline()
server = Server(("0.0.0.0", 0), Completions)
threading.Thread(target=server.serve_forever, daemon=True).start()
port, lan_ip = server.server_address[1], sys.argv[1]


def complete(endpoint, **sovereignty):
    settings = Settings(llm={"backend": "openai", "endpoints": [endpoint]}, sovereignty=sovereignty)
    enforce_offline(settings)
    try:
        return OpenAICompatibleLLM(settings.llm).complete("How many days?")
    except GenerationError as exc:
        return str(exc)


outcome = {
    "loopback_endpoint": complete(f"http://127.0.0.1:{port}"),
    "localhost_endpoint": complete(f"http://localhost:{port}/v1"),
    "listed_lan_endpoint": complete(f"http://{lan_ip}:{port}"),
}
enforce_offline(Settings())
try:
    httpx.post(f"http://{lan_ip}:{port}/v1/completions", json={})
    outcome["unlisted_lan_host"] = "connected"
except httpx.ConnectError as exc:
    outcome["unlisted_lan_host"] = str(exc)
enforce_offline(Settings(sovereignty={"allowed_hosts": [f"{lan_ip}/32"]}))
outcome["allowed_network"] = httpx.post(f"http://{lan_ip}:{port}/v1/completions", json={}).status_code
print(json.dumps({"outcome": outcome, "refused": status().refused}))
"""


def test_configured_endpoints_and_allowed_hosts_are_reachable(tmp_path):
    lan_ip = lan_address()
    result, log = python(tmp_path, ALLOWED, lan_ip)
    outcome = json.loads(result.stdout)["outcome"]
    for name in ("loopback_endpoint", "localhost_endpoint", "listed_lan_endpoint"):
        assert outcome[name] == "Three days.", (name, outcome[name])
    assert outcome["unlisted_lan_host"].startswith(f"egress blocked: name lookup (getaddrinfo) of {lan_ip}:")
    assert outcome["allowed_network"] == 200
    assert {d.split()[1].rsplit(":", 1)[0] for d in destinations(log)} == {lan_ip}, "nothing but the listed host"
    assert json.loads(result.stdout)["refused"] == 1, "only the unlisted attempt was refused"


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def rag_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("guarded")
    return home, {**os.environ, "RAG_INDEX_DIR": str(home / "index"), "RAG_DATA_DIR": str(home / "data"),
                  "RAG_EMBEDDER__THREADS": "1", "RAG_LLM__N_THREADS": "1", "RAG_LLM__MAX_TOKENS": "12"}


def rag(env: dict, log, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = run([sys.executable, "-m", "rag", *args], log, cwd=ROOT, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_sovereign(result: subprocess.CompletedProcess, log) -> None:
    assert "egress blocked" not in result.stderr, "the guard refused something on the normal path"
    assert destinations(log) == [], "a connection beyond loopback was attempted"


@pytest.mark.integration
def test_ingest_ask_and_eval_run_under_the_guard_without_leaving_loopback(rag_env, tmp_path):
    home, env = rag_env
    log = tmp_path / "ingest.log"
    assert_sovereign(rag(env, log, "ingest", str(EXAMPLES), "--quiet"), log)

    log = tmp_path / "ask.log"
    answer = rag(env, log, "ask", QUESTION, "--json")
    assert_sovereign(answer, log)
    assert json.loads(answer.stdout)["model"], "the language model generated the answer"

    dataset = home / "eval" / "questions.jsonl"
    dataset.parent.mkdir()
    (dataset.parent / "documents").symlink_to(EXAMPLES)
    gold = {"question": QUESTION, "answers": ["three"], "gold_doc_ids": ["teletravail-directive.md"]}
    dataset.write_text(json.dumps(gold))
    log = tmp_path / "eval.log"
    assert_sovereign(rag(env, log, "eval", "run", str(dataset), "--mode", "quote", "--out", str(home / "eval-out"),
                         "--quiet"), log)
    assert (home / "eval-out" / "results.json").is_file()


@pytest.mark.integration
def test_serve_answers_under_the_guard_without_leaving_loopback(rag_env, tmp_path):
    home, env = rag_env
    if not (home / "index").is_dir():
        rag(env, tmp_path / "ingest.log", "ingest", str(EXAMPLES), "--quiet")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    log = tmp_path / "serve.log"
    server = subprocess.Popen(traced([sys.executable, "-m", "rag", "serve", "--port", str(port)], log), cwd=ROOT,
                              env={**env, "RAG_SERVER__REQUIRE_KEYS": "false"}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server)
        response = httpx.post(f"{base}/v1/ask", json={"question": QUESTION}, timeout=600)
        assert response.status_code == 200, response.text
        assert response.json()["model"]
    finally:
        _stop(server)
    stderr = server.stderr.read()
    assert "egress blocked" not in stderr and "Application startup complete" in stderr
    assert destinations(log) == [], "a connection beyond loopback was attempted"


@pytest.mark.integration
def test_serve_workers_get_the_configuration_and_stay_on_loopback(rag_env, tmp_path):
    """`rag --config FILE serve --workers 2`: each worker loads FILE (anonymous access here, so no 401) and guards
    itself; strace sees no connection beyond loopback from any process of the tree."""
    home, env = rag_env
    if not (home / "index").is_dir():
        rag(env, tmp_path / "ingest.log", "ingest", str(EXAMPLES), "--quiet")
    config = tmp_path / "serve.yaml"
    config.write_text("server:\n  require_keys: false\n")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "rag", "--config", str(config), "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(traced(command, log), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server)
        statuses = {httpx.get(f"{base}/v1/documents", timeout=600).status_code for _ in range(6)}
        assert 200 in statuses and statuses <= {200, 503}, statuses  # 503: a worker still loading its models
    finally:
        _stop(server)
    stderr = server.stderr.read()
    assert "egress blocked" not in stderr and stderr.count("Application startup complete") == 2, stderr[-3000:]
    assert destinations(log) == [], "a connection beyond loopback was attempted"


def _wait_ready(base: str, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read()[-3000:]
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} not ready after {timeout} s")


def _stop(server: subprocess.Popen) -> None:
    """Interrupt the traced `rag serve` (strace's child), then wait for strace to finish writing its log."""
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as listing:
        children = listing.read().split()
    for child in children:
        os.kill(int(child), signal.SIGINT)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
