"""`rag doctor`: every precondition of a sovereign deployment checked at once, one pass/fail line each.

A check is a small function of the settings returning a `Check`; one that raises counts as failed with the error as
its detail, so one broken part does not hide the others. `data` carries what a machine (or an operator pinning a
model) needs: the current hashes, CPU features, versions.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from . import __version__, sovereign
from .errors import ConfigError, RagError
from .settings import Settings, load_settings, packaged_config_file, usable_cores

MIN_FREE_BYTES = 1 << 30  # below this, an ingest or a reindex can fail half-way
FAST_CPU_FEATURES = ("AVX2", "AVX512", "NEON")  # llama.cpp without any of these generates several times slower
VERSIONED = (
    "torch",
    "sentence-transformers",
    "transformers",
    "llama-cpp-python",
    "faiss-cpu",
    "bm25s",
    "fastapi",
    "uvicorn",
    "numpy",
    "pydantic",
)


@dataclass(frozen=True)
class Check:
    """One line of the report: `name`, pass (`ok`) or fail, a sentence for the operator (`detail`, naming the fix when
    it fails) and machine-readable `data` (hashes, versions, byte counts) for `rag doctor --json`."""

    name: str
    ok: bool
    detail: str
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The check as JSON-ready data: `{"name", "ok", "detail", "data"}`."""
        return asdict(self)


def checks(config_file: Path | None = None) -> Iterator[Check]:
    """Each check as it completes, in report order, so that a caller can show it at once (hashing the model files
    takes seconds); never raises (a check that raises is reported as failed).

    Configuration first: without valid settings only the process-wide checks (offline switches, egress guard) can
    run. `config_file` is the `--config` file, or None for the usual resolution (`RAG_CONFIG`, then the defaults).
    """
    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        yield from (Check("config", False, str(exc)), check_offline_switches(), check_guard())
        return
    sovereign.permit_configured(settings)  # the llm check probes llm.endpoints: an installed guard must allow them
    yield Check("config", True, f"{settings.config_file or packaged_config_file()}: valid")
    yield check_offline_switches()
    yield check_guard()
    for check in (check_embedder, check_llm, check_index, check_exposure, check_disk, check_cpu, check_versions):
        yield _safely(check, settings)


def _safely(check: Callable[[Settings], Check], settings: Settings) -> Check:
    """`check(settings)`, or a failed `Check` named after it carrying the exception's message."""
    name = check.__name__.removeprefix("check_")
    try:
        return check(settings)
    except RagError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a doctor that crashes reports nothing: this line fails instead
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def check_offline_switches() -> Check:
    """The offline environment switches (`sovereign.OFFLINE_ENV`: HF_HUB_OFFLINE...) hold their required values and
    were set before any model library was imported."""
    status = sovereign.status()
    wrong = {k: v for k, v in status.switches.items() if v != sovereign.OFFLINE_ENV[k]}
    if wrong:
        return Check(
            "offline_switches",
            False,
            f"not set as required: {wrong}; run through `rag`, which sets them",
            {"switches": status.switches},
        )
    if status.early_imports:
        return Check(
            "offline_switches",
            False,
            f"{', '.join(status.early_imports)} imported before the switches were set, so they may not apply",
            {"switches": status.switches},
        )
    return Check(
        "offline_switches",
        True,
        f"{len(status.switches)} set before any model library was imported",
        {"switches": status.switches},
    )


def check_guard() -> Check:
    """The egress guard refuses a probe connection to TEST-NET-1 (192.0.2.0/24, RFC 5737: an address that no network
    routes), so nothing can leave the machine unless its host is on the allow-list."""
    status = sovereign.status()
    allowed = ", ".join(status.allowed) or "nothing"
    if not sovereign.probe():
        return Check(
            "egress_guard",
            False,
            "not active: a connection to TEST-NET-1 was not refused; run through `rag`, which installs it",
        )
    return Check(
        "egress_guard",
        True,
        f"active: a probe connection to {sovereign.PROBE_ADDRESS[0]} was refused "
        f"before leaving; reachable besides loopback: {allowed}",
        {"allowed": list(status.allowed)},
    )


def check_embedder(settings: Settings) -> Check:
    """The embedder's files match their sha256 pins; `data` holds the current hashes, to pin a new model with."""
    from .embed import resolve_model_dir
    from .provenance import hash_model_dir
    from .verify import verify_embedder

    try:
        folder, fingerprint, files = verify_embedder(settings)
    except ConfigError as exc:
        folder = resolve_model_dir(settings.embedder)
        fingerprint, files = hash_model_dir(folder)
        return Check("embedder", False, str(exc), {"path": str(folder), "sha256": fingerprint, "file_sha256": files})
    return Check(
        "embedder",
        True,
        f"{folder}: {len(files)} files match their pins (fingerprint {fingerprint[:12]})",
        {"path": str(folder), "sha256": fingerprint, "file_sha256": files},
    )


def check_llm(settings: Settings) -> Check:
    """The GGUF file matches its sha256 pin (llama.cpp backend), or every configured OpenAI-compatible endpoint
    answers `GET /v1/models` within 3 s (HTTP backend; their weights are pinned on those servers)."""
    if settings.llm.backend != "llama_cpp":
        return _check_endpoints(settings)
    from .provenance import file_sha256
    from .verify import verify_llm

    try:
        path, sha256 = verify_llm(settings)
    except ConfigError as exc:
        path = Path(settings.llm.model_path)
        data = {"path": str(path), "sha256": file_sha256(path)} if path.is_file() else {}
        return Check("llm", False, str(exc), data)
    short = f" ({sha256[:12]})" if sha256 else ""
    return Check("llm", True, f"{path}: sha256 matches the pin{short}", {"path": str(path), "sha256": sha256})


def _check_endpoints(settings: Settings) -> Check:
    """`check_llm` for the HTTP backend."""
    import httpx

    down = []
    for url in settings.llm.endpoints:
        try:
            httpx.get(f"{url.rstrip('/').removesuffix('/v1')}/v1/models", timeout=3).raise_for_status()
        except (httpx.HTTPError, OSError) as exc:
            down.append(f"{url} ({type(exc).__name__})")
    if down or not settings.llm.endpoints:
        return Check("llm", False, f"endpoints not answering /v1/models: {', '.join(down) or 'none configured'}")
    return Check(
        "llm",
        True,
        f"{len(settings.llm.endpoints)} endpoint(s) answer /v1/models (weights not hashed here: "
        "pin them on the servers)",
    )


def check_index(settings: Settings) -> Check:
    """The index exists and its counts agree: as many chunk rows, vectors and BM25 rows (else `rag reindex`)."""
    from .pipeline import Pipeline

    if not (settings.index_dir / "meta.sqlite").is_file():
        return Check("index", False, f"no index in {settings.index_dir}; build one with `rag ingest`")
    pipeline = Pipeline(settings)
    try:
        figures = pipeline.stats()
    finally:
        pipeline.close()
    counts = {key: figures[key] for key in ("documents", "chunks", "vectors", "bm25_rows")}
    consistent = counts["chunks"] == counts["vectors"] == counts["bm25_rows"]
    detail = (
        f"{counts['documents']} documents; chunks {counts['chunks']}, vectors {counts['vectors']}, BM25 rows "
        f"{counts['bm25_rows']}" + ("" if consistent else ": they must agree, run `rag reindex`")
    )
    return Check("index", consistent, detail, {**counts, "generation": figures["generation"]})


def check_exposure(settings: Settings) -> Check:
    """A server bound beyond loopback requires API keys and has at least one active key."""
    from .auth import KeyStore, keys_path
    from .server.app import is_loopback

    server = settings.server
    if is_loopback(server.host):
        return Check("api_keys", True, f"server binds {server.host} (loopback): reachable from this machine only")
    if not server.require_keys:
        return Check("api_keys", False, f"server binds {server.host} with server.require_keys false: set it to true")
    active = [r for r in KeyStore(keys_path(settings)).records() if not r.revoked]
    if not active:
        return Check("api_keys", False, f"server binds {server.host} but no API key is active: `rag keys create`")
    return Check("api_keys", True, f"server binds {server.host}; {len(active)} active API key(s)")


def check_disk(settings: Settings) -> Check:
    """Free space in the index and data folders: at least twice the index (a reindex writes the new search structures
    beside the old ones) and never under `MIN_FREE_BYTES` (1 GiB). `data` gives bytes."""
    index_bytes = sum(p.stat().st_size for p in settings.index_dir.rglob("*") if p.is_file())
    need = max(MIN_FREE_BYTES, 2 * index_bytes)
    free = {str(d): shutil.disk_usage(_existing(d)).free for d in (settings.index_dir, settings.data_dir)}
    short = [d for d, f in free.items() if f < need]
    detail = ", ".join(f"{d}: {f / 2**30:.1f} GiB free" for d, f in free.items())
    return Check("disk", not short, f"{detail} (needs {need / 2**30:.1f} GiB)", {"free_bytes": free, "need": need})


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (the folder a not yet created index will be made in)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_cpu(settings: Settings) -> Check:
    """llama.cpp was built with a fast SIMD feature (`FAST_CPU_FEATURES`) and the server's generation and embedding
    threads fit the usable cores (oversubscribed, generation stalls while an upload is embedded)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")  # "CPU : SSE3 = 1 | AVX2 = 1 | ..."
    features = re.findall(r"(\w+) = 1", info)
    fast = [f for f in features if f in FAST_CPU_FEATURES]
    detail = f"llama.cpp uses {' '.join(features) or 'no SIMD feature'}"
    if not fast:
        detail += f"; none of {', '.join(FAST_CPU_FEATURES)}: expect slow generation"
    threads, embedding, cores = settings.llm_threads(), settings.server.ingest_threads, usable_cores()
    fits = threads + embedding <= cores or threads == 1 == cores
    detail += f"; server threads: {threads} generation + {embedding} embedding on {cores} usable cores"
    if not fits:
        detail += " (oversubscribed: generation stalls while an upload is embedded; lower llm.n_threads)"
    return Check(
        "cpu",
        bool(fast) and fits,
        detail,
        {"features": features, "threads": threads, "ingest_threads": embedding, "usable_cores": cores},
    )


def check_versions(settings: Settings) -> Check:
    """Always passes: the versions of Python, this package and the libraries in `VERSIONED` (None if absent)."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "sovereign-rag": __version__}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return Check("versions", True, " ".join(f"{k}={v}" for k, v in versions.items()), versions)
