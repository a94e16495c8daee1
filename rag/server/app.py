"""`create_app(settings)`: the HTTP front door over one `Pipeline` (endpoints and formats: docs/api.md).

Nothing happens at import. The app starts answering /healthz at once and loads the index and both models in a
background thread during its lifespan; /readyz turns 200 when they are loaded, and the endpoints that need them answer
503 with Retry-After until then.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import ConfigError
from ..settings import ServerSettings, Settings, load_settings
from ..verify import verify_models
from . import answers, docs_page, documents, errors, openai_compat, search, sources, web
from .deps import services
from .limits import BodyLimit
from .metrics import RequestMetrics
from .schemas import Status
from .services import Services

if TYPE_CHECKING:
    from ..pipeline import Pipeline

DESCRIPTION = """Grounded answers with verified citations over your own documents.

Every endpoint but /healthz, /readyz and /metrics needs `Authorization: Bearer <API key>` (`rag keys create`).
A caller only ever sees passages of documents whose labels it all holds: the filter runs inside the index search.
Errors are `{"error": {"message", "type", "code"}}`."""


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> FastAPI:
    """The app; `pipeline` lets a caller share already-loaded models (tests, benchmarks), else one is built with the
    server's thread budget (`Settings.for_serving`: embedding on server.ingest_threads, generation on the rest).

    Raises ConfigError before anything is served or loaded: anonymous access configured beyond loopback, or a
    model file that does not match its sha256 pin (or is unpinned while sovereignty.require_pins is on)."""
    from ..pipeline import Pipeline

    check_exposure(settings.server)
    verify_models(settings)
    app = FastAPI(
        title="Sovereign RAG",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
    )  # /docs is served from vendored files: docs_page.py
    app.state.services = s = Services.build(
        settings, pipeline or Pipeline(settings.for_serving()), owns_pipeline=pipeline is None
    )
    errors.install(app)
    docs_page.install(app)
    for module in (answers, search, documents, sources, openai_compat):
        app.include_router(module.router)
    app.add_api_route("/healthz", _healthz, methods=["GET"], response_model=Status, tags=["service"])
    app.add_api_route(
        "/readyz", _readyz, methods=["GET"], response_model=Status, tags=["service"], responses={503: {"model": Status}}
    )
    app.add_api_route("/metrics", _metrics, methods=["GET"], tags=["service"], response_class=Response)
    app.add_middleware(
        BodyLimit,
        json_bytes=settings.server.max_request_kb * 1024,
        upload_bytes=settings.server.max_upload_mb * 1024 * 1024,
        upload_paths=frozenset({"/v1/documents"}),
    )
    app.add_middleware(RequestMetrics, metrics=s.metrics)  # outer to BodyLimit, so it also counts 413s
    app.add_middleware(web.SecurityHeaders)  # added last: outermost, so every response carries the headers
    web.install(app)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` with several workers: each worker process, a fresh interpreter, loads its
    settings (`RAG_CONFIG` and `RAG_*` from the environment) and installs its own egress guard from them before it
    builds its app."""
    from ..sovereign import enforce_offline

    settings = load_settings()
    enforce_offline(settings)
    return create_app(settings)


def check_exposure(server: ServerSettings) -> None:
    """Anonymous access is a development convenience and must never reach a network: raises ConfigError when keys are
    off and `server.host` is not loopback."""
    if not server.require_keys and not is_loopback(server.host):
        raise ConfigError(
            f"server.require_keys is false but server.host is {server.host!r}: anonymous access is only allowed on a "
            "loopback address (127.0.0.1, ::1, localhost); create API keys with `rag keys create` and set "
            "server.require_keys to true, or bind to 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    """Whether the configured `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models and open the index in a thread while the app already answers; release them at shutdown."""
    s: Services = app.state.services
    loading = asyncio.create_task(anyio.to_thread.run_sync(s.warm_up))
    try:
        yield
    finally:
        await loading  # a thread cannot be interrupted; let it finish before the models are freed
        s.close()


async def _healthz() -> dict:
    """The process is up (it may still be loading: see /readyz)."""
    return {"status": "ok"}


async def _readyz(request: Request) -> JSONResponse:
    """Models loaded and index open: traffic can be routed here."""
    s = services(request)
    status = 200 if s.state == "ready" else 503
    return JSONResponse({"status": s.state, "detail": s.failure}, status_code=status)


async def _metrics(request: Request) -> Response:
    """Prometheus text format; holds no document content, ids or principal names."""
    return Response(services(request).metrics.render(), media_type="text/plain; version=0.0.4")
