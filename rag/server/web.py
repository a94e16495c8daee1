"""The web page at `/` (docs/web.md) and the security headers of every response.

The page is static files inside the package (`static/`): HTML, one stylesheet, plain JavaScript modules. They call
the same HTTP API as any other client, with the API key the person typed (kept in the browser's session storage) or,
behind an authenticating proxy, with no key at all (rag/proxy_auth.py). Nothing is rendered on the server and no
retrieval or verification happens in the scripts.

`SecurityHeaders` is the one place where response security headers are set; a route that needs another
Content-Security-Policy (an API reference page, say) sets its own header and keeps it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import Principal
from .answers import ERRORS
from .deps import principal, services

STATIC = Path(__file__).parent / "static"

# Only the server's own origin, for everything; no inline script or style, no framing, no plugins. `blob:` images
# are the PDF page images the page fetches with the person's key and shows from memory.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)

router = APIRouter()


class WhoAmIResponse(BaseModel):
    """Body of `GET /v1/me`."""

    principal: str = Field(description="the caller's id: the key's principal, or the person named by the proxy")
    labels: list[str] = Field(description="access labels the caller holds: it sees documents carrying only these")
    admin: bool = Field(description="may upload and delete documents")
    default_labels: list[str] = Field(
        description="the server's default labels that the caller holds (pre-selected for uploads)"
    )
    max_upload_mb: int = Field(description="largest upload request in MiB (server.max_upload_mb)")
    max_question_chars: int = Field(description="longest question in characters (answer.max_question_chars)")


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response that does not set the header itself (errors and 413s
    included, as this middleware is the outermost)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the missing security headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in SECURITY_HEADERS if name not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    """Serve the page at `/` and its files under `/static/`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The single page; it finds out who is signed in by calling /v1/me."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/v1/me", response_model=WhoAmIResponse, responses=ERRORS, tags=["service"])
async def who_am_i(request: Request, caller: Principal = Depends(principal)) -> dict:
    """Who the caller is, the labels it holds and whether it may upload and delete: what the page shows and offers."""
    s = services(request)
    return {
        "principal": caller.id,
        "labels": sorted(caller.labels),
        "admin": caller.admin,
        "default_labels": sorted(set(s.settings.default_labels) & caller.labels),
        "max_upload_mb": s.settings.server.max_upload_mb,
        "max_question_chars": s.settings.answer.max_question_chars,
    }
