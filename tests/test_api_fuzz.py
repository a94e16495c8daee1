"""Schemathesis over every operation of the OpenAPI document of a real server: no request gets a 5xx, and every
response has the documented status, content type and schema.

The server is real (uvicorn on 127.0.0.1, the real embedder, FAISS and llama.cpp) with an index of its own, since
the fuzzer uploads and deletes with an admin key; answers are cut to a few tokens so that a generating request costs
about a second. The run is bounded by schemathesis' `--max-time` (fuzzing repeats until the budget is spent) and a
fixed seed, so CI explores the same inputs each time; set RAG_FUZZ_SEED to explore others. Every failure it found
became a regular test in tests/test_server_input.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BUDGET_S = int(os.environ.get("RAG_FUZZ_BUDGET", 120))  # seconds of the whole `st run`, start-up excluded


@pytest.fixture(scope="module")
def fuzz_service(make_settings, embedder, tmp_path_factory):
    """A server like the session's `service`, over an index that only this module writes to; answers of 4 tokens."""
    from .server_kit import serving

    home = tmp_path_factory.mktemp("fuzz-service")
    with serving(make_settings, embedder, home, max_tokens=4, queue_size=1) as running:
        yield running


def test_no_request_the_openapi_document_allows_gets_a_5xx(fuzz_service, tmp_path):
    here = Path(__file__).parent
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(here / "schemathesis.toml"),
        "run", f"{fuzz_service.base_url}/openapi.json", "--phases", "examples,coverage,fuzzing", "--max-time", str(BUDGET_S),
        "--workers", "1", "--seed", os.environ.get("RAG_FUZZ_SEED", "12"), "--generation-database", "none",
        "--request-timeout", "60", "--header", f"Authorization: Bearer {fuzz_service.keys['defence']}",
        "--no-color", "--output-truncate", "false",
    ]
    hooks = {"SCHEMATHESIS_HOOKS": str(here / "fuzz_hooks.py"), "RAG_FUZZ_MODEL": fuzz_service.settings.llm.model_name}
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=BUDGET_S + 300,
                         stdin=subprocess.DEVNULL, env={**os.environ, **hooks})
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]
    print(run.stdout[run.stdout.rfind("Test cases:"):])  # how much was tried (pytest -rP shows it)
