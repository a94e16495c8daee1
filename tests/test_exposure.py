"""Small exposures, closed: anonymous access by the accepting socket, private file modes, secrets never printed, a
docs page that fetches nothing from outside, model pins checked by the app factory before anything loads, and the
thread budget that keeps generation off the cores an upload's embedding uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rag.errors import ConfigError

from .conftest import ROOT
from .egress import lan_address

SECRET = "sk-PLUM-9931-never-print-me"


# ---------------------------------------------------------------------------------------------- anonymous access
@pytest.mark.parametrize("server, client, allowed", [
    (("127.0.0.1", 8000), ("127.0.0.1", 5000), True),
    (("::1", 8000), ("::1", 5000), True),
    (("::ffff:127.0.0.1", 8000), ("::ffff:127.0.0.1", 5000), True),
    (("192.0.2.2", 8000), ("192.0.2.9", 5000), False),  # a server bound to 0.0.0.0, reached over the network
    (("127.0.0.1", 8000), ("192.0.2.9", 5000), False),  # forwarded to loopback from elsewhere (a NAT rule)
    (("/run/rag.sock", None), None, False),  # a Unix socket may be proxied from anywhere
    (None, None, False),
])
def test_anonymous_access_depends_on_the_connection_not_the_configuration(server, client, allowed):
    from rag.server.deps import on_loopback

    assert on_loopback({"server": server, "client": client}) is allowed


def test_anonymous_access_is_refused_beyond_loopback(make_settings, tmp_path):
    """Refused by the app factory before any model file is read, and by `rag serve` with exit code 2; loopback hosts
    are an explicit local choice."""
    from rag.server.app import check_exposure, create_app
    from rag.settings import ServerSettings

    with pytest.raises(ConfigError, match="loopback"):
        create_app(make_settings(server={"require_keys": False, "host": "0.0.0.0"}))
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(ServerSettings(require_keys=False, host=host))
    with pytest.raises(ConfigError, match="loopback"):
        check_exposure(ServerSettings(require_keys=False, host="192.0.2.2"))
    config = tmp_path / "open.yaml"
    config.write_text("server:\n  host: 0.0.0.0\n  require_keys: false\nsovereignty:\n  require_pins: false\n")
    refused = subprocess.run([sys.executable, "-m", "rag", "--config", str(config), "serve"], capture_output=True,
                             text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "loopback" in refused.stderr


@pytest.mark.integration
def test_a_keyless_server_bound_beyond_loopback_serves_loopback_clients_only(make_settings, answer_pipeline,
                                                                              tmp_path):
    """Configured for 127.0.0.1 (so the factory accepts it) but bound to 0.0.0.0, as `uvicorn --host 0.0.0.0` would."""
    from rag.sovereign import permit_configured

    from .server_kit import start

    address = lan_address()
    settings = make_settings(server={"require_keys": False, "keys_file": tmp_path / "keys.json"},
                             audit={"path": tmp_path / "audit.jsonl"}, sovereignty={"allowed_hosts": [address]})
    permit_configured(settings)  # the tests' egress guard, when installed, may reach this machine's own address
    service, stop = start(settings, answer_pipeline, [], host="0.0.0.0")
    port = service.base_url.rsplit(":", 1)[1]
    try:
        local = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "remote work"}, timeout=60)
        remote = httpx.post(f"http://{address}:{port}/v1/search", json={"query": "remote work"}, timeout=60)
        keyed = httpx.post(f"http://{address}:{port}/v1/search", json={"query": "remote work"}, timeout=60,
                           headers={"Authorization": f"Bearer {service.keys['public']}"})
        remote_health = httpx.get(f"http://{address}:{port}/healthz", timeout=60)
    finally:
        stop()
    assert local.status_code == 200 and local.json()["hits"]
    assert remote.status_code == 401 and "API key" in remote.json()["error"]["message"]
    assert keyed.status_code == 200  # from beyond loopback, a valid key is still the way in
    assert remote_health.status_code == 200  # open endpoints stay open


# ---------------------------------------------------------------------------------------------- file modes
@contextmanager
def _permissive_umask():
    """Files made with the default mode would be world-readable: only an explicit mode keeps them private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


@pytest.mark.integration
def test_index_keys_and_audit_files_are_created_private(make_settings, embedder, tmp_path):
    from rag.auth import KeyStore
    from rag.load import load_bytes
    from rag.pipeline import Pipeline

    settings = make_settings(index_dir=tmp_path / "srv" / "index")
    pipeline = Pipeline(settings, embedder=embedder)
    with _permissive_umask():
        pipeline.ingest_documents([load_bytes(b"# Leave\n\nStaff have 26 days of leave.", "leave.md")])
        wal = [settings.index_dir / f"meta.sqlite{suffix}" for suffix in ("", "-wal", "-shm")]
        modes = {p.name: _mode(p) for p in wal}  # while the connection is open: -wal and -shm exist
        KeyStore(tmp_path / "secrets" / "keys.json").create("alice", ["public"])
    pipeline.close()
    assert modes == {"meta.sqlite": "0o600", "meta.sqlite-wal": "0o600", "meta.sqlite-shm": "0o600"}
    assert _mode(settings.index_dir) == _mode(settings.index_dir.parent) == "0o700"
    assert _mode(tmp_path / "secrets") == "0o700"
    assert {_mode(p) for p in (tmp_path / "secrets").iterdir()} == {"0o600"}  # keys.json and its lock


def test_audit_files_are_created_private_whatever_the_umask(tmp_path):
    from rag.audit import AuditLog

    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    with _permissive_umask():
        log.append({"principal": "alice"})
    assert _mode(log.path.parent) == "0o700"
    assert {p.name: _mode(p) for p in log.path.parent.iterdir()} == {"audit.jsonl": "0o600",
                                                                      "audit.jsonl.head": "0o600"}


# ---------------------------------------------------------------------------------------------- secrets
def test_config_show_never_prints_the_llm_api_key():
    env = {**os.environ, "RAG_LLM__API_KEY": SECRET}
    for extra in ([], ["--json"]):
        shown = subprocess.run([sys.executable, "-m", "rag", "config", "show", *extra], capture_output=True, text=True,
                               cwd=ROOT, env=env, timeout=120)
        assert shown.returncode == 0 and SECRET not in shown.stdout + shown.stderr
        assert "**********" in shown.stdout
    assert json.loads(shown.stdout)["llm"]["api_key"] == "**********"


class _Recorder(ThreadingHTTPServer):
    """Answers every request 500 and keeps the Authorization headers it was sent."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Failing)
        self.authorizations: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Failing(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _fail(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _fail


def test_the_api_key_is_sent_but_never_in_errors_logs_or_reprs(caplog):
    from rag.errors import GenerationError
    from rag.generate import create_llm
    from rag.settings import Settings

    server = _Recorder()
    try:
        settings = Settings(llm={"backend": "openai", "api_key": SECRET,
                                 "endpoints": [f"http://127.0.0.1:{server.server_port}"]})
        with caplog.at_level("DEBUG"), pytest.raises(GenerationError) as failure:
            create_llm(settings).complete("Hello")
    finally:
        server.shutdown()
    assert server.authorizations and set(server.authorizations) == {f"Bearer {SECRET}"}
    assert SECRET not in str(failure.value) and SECRET not in caplog.text
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


# ---------------------------------------------------------------------------------------------- docs page
@pytest.mark.integration
def test_docs_page_loads_swagger_ui_from_the_server_itself(service):
    page = httpx.get(f"{service.base_url}/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert not re.findall(r"(?:https?:)?//[\w.-]+", page.text.replace("//" + service.base_url.split("//")[1], ""))
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "validatorUrl" in page.text  # Swagger UI's badge would post the API description to a public validator
    assets = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", page.text)
    assert {Path(a).name for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
    for asset in assets:
        assert asset.startswith("/docs/assets/")
        assert httpx.get(f"{service.base_url}{asset}").status_code == 200
    assert httpx.get(f"{service.base_url}/redoc").status_code == 404  # would load ReDoc and fonts from CDNs


# ---------------------------------------------------------------------------------------------- model pins
def _fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)  # would make llama.cpp fail to load, were it ever handed the file
    return path


@pytest.mark.parametrize("llm, words", [
    ({"sha256": "0" * 64}, "has sha256"),
    ({"sha256": None}, "is not pinned"),
])
def test_the_app_factory_refuses_a_model_that_does_not_match_its_pin(make_settings, tmp_path, llm, words):
    from rag.server import create_app

    settings = make_settings(llm={"model_path": str(_fake_gguf(tmp_path)), **llm})
    with pytest.raises(ConfigError, match=words):
        create_app(settings)


def test_embedder_files_are_checked_against_their_pins_before_the_model_loads(make_settings, tmp_path):
    """A pinned folder whose weights were swapped for bytes no loader reads: the pin check must speak first."""
    from rag.embed import Embedder, bundled_embedder_path
    from rag.settings import load_settings

    original = bundled_embedder_path()
    copy = tmp_path / "embedder"
    for path in original.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(original)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").write_bytes(b"not safetensors")
    english = load_settings(ROOT / "configs" / "english.yaml").embedder  # all-MiniLM-L6-v2's pins
    settings = make_settings(embedder={**english.model_dump(), "model": str(copy)})
    with pytest.raises(ConfigError, match="model.safetensors has sha256"):
        Embedder(settings.embedder).model  # noqa: B018 - loading is the point


# ---------------------------------------------------------------------------------------------- thread budget
def test_generation_gets_the_cores_the_server_does_not_embed_on():
    from rag.settings import Settings, usable_cores

    settings = Settings(llm={"n_threads": None}, server={"ingest_threads": 1})
    assert settings.llm_threads() == max(1, usable_cores() - 1)
    assert Settings(llm={"n_threads": 3}).llm_threads() == 3
    assert settings.for_serving().embedder.threads == 1 and settings.embedder.threads is None


@pytest.mark.integration
def test_llama_cpp_runs_with_its_budget_for_prompt_and_generation(llm):
    from rag.settings import Settings

    expected = Settings().llm_threads()
    assert llm.llama.context_params.n_threads == llm.llama.context_params.n_threads_batch == expected


def test_the_app_factory_builds_its_pipeline_with_the_server_budget(make_settings):
    from rag.server import create_app

    app = create_app(make_settings(server={"ingest_threads": 1}, embedder={
        **make_settings().embedder.model_dump(), "threads": 2}))
    assert app.state.services.pipeline.settings.embedder.threads == 1


@contextmanager
def _upload_embedding(embedder, batches: int):
    """An upload's embedding (background batches of 16 short passages) running in a thread from its first batch on;
    yields the list that grows by one entry per batch done, and waits for the upload to end."""
    texts = [f"Passage {i} about remote work, leave and travel expenses of the staff." for i in range(batches * 16)]
    done: list[int] = []
    started = threading.Event()

    class Progress:
        def update(self, n: int) -> None:
            done.append(n)
            started.set()

    upload = threading.Thread(target=lambda: embedder.encode(texts, progress=Progress(), background=True))
    upload.start()
    started.wait(60)
    yield done
    upload.join(300)
    assert len(done) == batches


@pytest.mark.integration
def test_a_question_embeds_before_the_next_batch_of_an_upload(embedder):
    """Ingestion takes the model one batch at a time and steps aside; a question waits for one batch at most."""
    with _upload_embedding(embedder, 24) as batches:
        embedder.encode(["How many days of remote work?"])
        question_done_at = len(batches)
    assert question_done_at <= 3, question_done_at


@pytest.mark.integration
def test_ingestion_waits_while_an_answer_is_written(embedder):
    """While an answer is written (`Embedder.priority`), an upload's embedding runs at most the batch it began."""
    import time

    with _upload_embedding(embedder, 40) as batches:
        with embedder.priority():
            at_start = len(batches)
            time.sleep(1.5)  # ungated, the upload would run several batches of these short texts meanwhile
            during = len(batches) - at_start
    assert during <= 1, during
