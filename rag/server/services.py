"""Everything one app instance works with, built by `create_app` and reached through `request.app.state.services`.

The audit helpers live here because every route records the same envelope (who, which endpoint, status, latency)
around its own fields; what goes into the fields is decided by the builders at the bottom.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request

from ..audit import AuditLog, audit_path, sha256_text
from ..auth import KeyStore, Principal, keys_path
from ..errors import AuditUnavailableError
from ..parse_pool import ParsePool
from ..settings import Settings, usable_cores
from .generation import GenerationQueue
from .metrics import Metrics

if TYPE_CHECKING:
    from ..answer import Answer
    from ..generate import LLMInfo
    from ..pipeline import Pipeline

log = logging.getLogger("rag.server")

# (method, route template) of the requests that leave an audit record, whatever their outcome
AUDITED = frozenset(
    {
        ("POST", "/v1/ask"),
        ("POST", "/v1/search"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/documents"),
        ("DELETE", "/v1/documents/{doc_id}"),
        ("POST", "/v1/passages"),
        ("GET", "/v1/documents/{doc_id}/pages/{page}"),
        ("GET", "/v1/documents/{doc_id}/original"),
    }
)


@dataclass
class Services:
    """The app's parts and state: the pipeline, keys, audit log, metrics, generation queue and parser pool, whether
    the models are loaded (`state`), and the lock that puts this process's index writes in turn."""

    settings: Settings
    pipeline: Pipeline
    owns_pipeline: bool  # close it at shutdown only if create_app built it
    keys: KeyStore
    audit: AuditLog
    metrics: Metrics
    generation: GenerationQueue
    parsers: ParsePool  # uploads are parsed here, off the event loop and out of this process
    writes: asyncio.Lock = field(default_factory=asyncio.Lock)  # uploads and deletes of this process, in turn
    state: str = "loading"  # loading | ready | failed
    failure: str | None = None
    model: LLMInfo | None = None
    started: float = field(default_factory=time.time)

    @classmethod
    def build(cls, settings: Settings, pipeline: Pipeline, *, owns_pipeline: bool) -> Services:
        """The parts for `settings` around `pipeline`; `owns_pipeline` says whether `close` closes it too."""
        metrics = Metrics()
        return cls(
            settings,
            pipeline,
            owns_pipeline,
            KeyStore(keys_path(settings)),
            AuditLog(audit_path(settings)),
            metrics,
            GenerationQueue(settings.server.queue_size, metrics),
            ParsePool(settings.ingest),
        )

    # ------------------------------------------------------------------ lifecycle
    def warm_up(self) -> None:
        """Open the index and load both models before the first request needs them (runs in a thread)."""
        try:
            self.pipeline.check_index()
            self.pipeline.store.refresh()
            self.pipeline.embedder.encode(["warm-up"])
            self.model = self.pipeline.llm.info
        except Exception as exc:  # reported by /readyz; the details are for the operator
            log.exception("cannot start serving")
            self.state, self.failure = "failed", f"{type(exc).__name__}; the server log has the details"
            return
        self.state = "ready"
        log.info(
            "ready: index %s, model %s; threads: %s generation, %s embedding, %s usable cores",
            self.settings.index_dir,
            self.model.model,
            self.pipeline.settings.llm_threads(),
            self.pipeline.settings.embedder.threads or "all",
            usable_cores(),
        )
        try:
            self.audit.check()
        except AuditUnavailableError as exc:
            log.error("%s", exc)

    def close(self) -> None:
        """Stop the generation queue and the parser processes, then close the pipeline if this app built it."""
        self.generation.close()
        self.parsers.close()
        if self.owns_pipeline:
            self.pipeline.close()

    # ------------------------------------------------------------------ audit
    async def record(self, request: Request, status: int, **fields: Any) -> None:
        """Append one audit record for this request; a failure to write it fails the request (no unaudited
        answers): raises AuditUnavailableError. `fields` (JSON values) join the envelope (principal, key id,
        endpoint, method, HTTP `status`, embedder, latency in ms)."""
        principal: Principal | None = getattr(request.state, "principal", None)
        route = request.scope.get("route")
        envelope = {
            "principal": principal.id if principal else None,
            "key_id": principal.key_id if principal else None,
            "endpoint": getattr(route, "path", request.url.path),
            "method": request.method,
            "status": status,
            "embedder": self.embedder_identity(),
            "latency_ms": round(
                (time.perf_counter() - getattr(request.state, "started", time.perf_counter())) * 1000, 2
            ),
        }
        with anyio.CancelScope(shield=True):  # a disconnect must not cancel the record of what was done
            await anyio.to_thread.run_sync(self.audit.append, {**envelope, **fields})

    async def audit_failure(self, request: Request, status: int, kind: str) -> None:
        """Failed audited requests are recorded too (refusals are what an auditor looks for); unauthenticated
        ones are not, so that anyone on the network cannot fill the log. A refusal because the log cannot be
        written is only logged."""
        if getattr(request.state, "principal", None) and audited(request):
            try:
                await self.record(request, status, error=kind)
            except AuditUnavailableError as exc:
                log.warning("not audited (%s %s, status %s): %s", request.method, request.url.path, status, exc)

    async def check_audit(self, request: Request) -> None:
        """Before an audited request does its work: AuditUnavailableError (503) when its record could not be
        written because the log ends with a torn record, rather than an answer that is then withheld."""
        if audited(request):
            await anyio.to_thread.run_sync(self.audit.check)

    def embedder_identity(self) -> dict | None:
        """Which vectors answered: the model pinned in config (provenance), once the lifespan has loaded it."""
        embedder = self.pipeline.loaded_embedder
        if embedder is None:
            return None
        info = embedder.info
        return {"name": info.name, "sha256": info.fingerprint}

    def question_fields(self, name: str, text: str) -> dict:
        """The question in clear or only its sha256 (audit.store_questions)."""
        return {name: text} if self.settings.audit.store_questions else {f"{name}_sha256": sha256_text(text)}


def audited(request: Request) -> bool:
    """Whether the request's route is one of `AUDITED`."""
    return (request.method, getattr(request.scope.get("route"), "path", "")) in AUDITED


def passage_fields(passages: Iterable[tuple[int, str, str]]) -> list[dict]:
    """Which passages were shown, and their exact content (the hash proves it even after the document changes);
    `passages` holds (chunk id, doc id, content hash) triples."""
    return [{"chunk_id": c, "doc_id": d, "content_hash": h} for c, d, h in passages]


def answer_fields(answer: Answer, model: LLMInfo | None) -> dict:
    """The audit fields of an answer: the passages shown, the model (id and sha256) if one wrote it, the answer's
    sha256, which passage each cited `[n]` names, and whether it abstained."""
    by_n = {s.n: s for s in answer.sources}
    cited = sorted({c.marker for s in answer.sentences for c in s.citations})
    return {
        "passages": passage_fields((s.chunk.id, s.chunk.doc_id, s.chunk.content_hash) for s in answer.sources),
        "model": {"id": model.model, "sha256": model.sha256} if answer.model and model else None,
        "answer_sha256": sha256_text(answer.text),
        "citations": [{"n": n, "chunk_id": by_n[n].chunk.id} for n in cited if n in by_n],
        "abstained": answer.abstained,
    }
