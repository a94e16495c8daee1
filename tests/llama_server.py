"""Real `llama_cpp.server` processes for the tests (and bench/llm_servers.py), and a free loopback port.

A helper of the test suite, not of the package: the tests import nothing from bench/, which imports from here.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from rag.errors import GenerationError
from rag.generate import OpenAICompatibleLLM

# llama_cpp.server with the product's model settings (extra buffer types off, see rag.generate.extra_buffers)
SERVER = """
import runpy, sys
from rag.generate import extra_buffers
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
with extra_buffers(False):
    runpy.run_module("llama_cpp.server", run_name="__main__")
"""


@dataclass
class LlamaServer:
    """One `python -m llama_cpp.server` subprocess on a free loopback port, serving `model` as `gemma`."""

    process: subprocess.Popen
    url: str  # base URL with /v1
    log: Path

    @classmethod
    def start(cls, model: Path, log: Path, *, n_threads: int = 1, n_ctx: int = 1024) -> LlamaServer:
        port = free_port()
        with log.open("w") as sink:
            process = subprocess.Popen(
                [sys.executable, "-c", SERVER, "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                 "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),  # as in-process
                 "--model_alias", "gemma", "--verbose", "False",
                 "--interrupt_requests", "False"],  # by default a new request cuts the stream in progress short
                stdout=sink, stderr=subprocess.STDOUT,
            )
        return cls(process, f"http://127.0.0.1:{port}/v1", log)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"llama_cpp.server did not answer at {self.url} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a host dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Outcome:
    seconds: float
    pieces: int  # streamed pieces: one token each from llama.cpp's server
    error: str | None = None


def one_request(llm: OpenAICompatibleLLM, prompt: str, max_tokens: int) -> Outcome:
    """Stream one answer; an error records how many pieces had already arrived (0 means it had not started)."""
    started, pieces = time.perf_counter(), 0
    try:
        for _ in llm.stream_tokens(prompt, max_tokens=max_tokens, stop=[]):
            pieces += 1
    except GenerationError as exc:
        return Outcome(time.perf_counter() - started, pieces, str(exc))
    return Outcome(time.perf_counter() - started, pieces)
