"""The one place where exceptions become HTTP statuses: chosen by exception class, never by message text.

Errors about the caller's input show the pipeline's message (it names the value, the limit and the fix). Errors about
the server's own state (index, model, configuration) show a fixed sentence instead: their messages carry file paths
and other details that are for the operator, who finds them in the server log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    AccessDeniedError,
    AuditUnavailableError,
    AuthenticationError,
    BusyError,
    GenerationError,
    IndexError_,
    IndexLockedError,
    InputError,
    LoadError,
    NotFoundError,
    RagError,
    UnsupportedFormatError,
)

log = logging.getLogger("rag.server")

_OPERATOR = "; the server log has the details"
# (class, status, type, public message or None for the exception's own); first match wins, so subclasses first
_TRANSLATIONS: tuple[tuple[type[Exception], int, str, str | None], ...] = (
    (AuthenticationError, 401, "authentication_error", None),
    (AccessDeniedError, 403, "permission_denied", None),
    (NotFoundError, 404, "not_found", None),
    (UnsupportedFormatError, 415, "unsupported_media_type", None),
    (LoadError, 422, "unreadable_file", None),
    (InputError, 400, "invalid_request", None),
    (
        UnicodeError,
        400,
        "invalid_request",
        "the request holds text that is not valid UTF-8 or Unicode (e.g. half of an emoji); send whole characters",
    ),
    (BusyError, 429, "queue_full", None),
    (
        IndexLockedError,
        409,
        "index_locked",
        "the index is being written by another process (e.g. `rag ingest`); retry when it has finished",
    ),
    (IndexError_, 503, "index_unavailable", "the index cannot be used" + _OPERATOR),
    (
        AuditUnavailableError,
        503,
        "audit_unavailable",
        "requests that must be audited are refused until the audit "
        "trail can be written again (the operator runs `rag audit repair`)" + _OPERATOR,
    ),
    (GenerationError, 502, "model_error", "the language model failed" + _OPERATOR),
    (RagError, 500, "server_error", "the server cannot handle this request" + _OPERATOR),
    (Exception, 500, "server_error", "internal error" + _OPERATOR),
)
_LOCKED_RETRY_S = 10


def translate(exc: Exception) -> tuple[int, str, str]:
    """(status, type, message safe to show the caller) for any exception."""
    status, kind, public = next((s, k, m) for cls, s, k, m in _TRANSLATIONS if isinstance(exc, cls))
    if status >= 500 or public is not None:
        log.error("%s: %s", type(exc).__name__, exc, exc_info=status >= 500 and not isinstance(exc, RagError))
    return status, kind, public or str(exc)


def error_body(status: int, kind: str, message: str) -> dict:
    """The error object; characters of the message that UTF-8 cannot carry (a lone surrogate the caller sent, echoed
    in a field name) are escaped, so that the error itself can always be sent."""
    printable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": {"message": printable, "type": kind, "code": status}}


def _headers(request: Request, exc: Exception) -> dict[str, str] | None:
    """What a client needs to react: how to authenticate, or when to come back."""
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, BusyError):
        return {"Retry-After": str(request.app.state.services.generation.retry_after())}
    if isinstance(exc, IndexLockedError | AuditUnavailableError):
        return {"Retry-After": str(_LOCKED_RETRY_S)}
    return None


async def _rag_error(request: Request, exc: Exception) -> JSONResponse:
    """Any exception a route raised, as its status and error body (audited when the route is)."""
    status, kind, message = translate(exc)
    await request.app.state.services.audit_failure(request, status, kind)
    return JSONResponse(error_body(status, kind, message), status_code=status, headers=_headers(request, exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own HTTP errors (404 route, 405, 503 not ready...) in the same error shape."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only; typed as Starlette calls handlers
        return await _rag_error(request, exc)
    kind = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 503: "not_ready"}.get(
        exc.status_code, "http_error"
    )
    message = str(exc.detail)
    if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body", for a body not in UTF-8
        bad = exc.__cause__
        message = (
            f"the request body is not valid {bad.encoding} (byte 0x{bad.object[bad.start]:02X} at offset "
            f"{bad.start}): send JSON in UTF-8"
        )
    return JSONResponse(error_body(exc.status_code, kind, message), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """One readable line: `body.question: String should have at least 1 character; body.colour: Extra inputs...`.

    Malformed JSON is 400 (the body is not JSON at all), a well-formed body with wrong fields 422."""
    if not isinstance(exc, RequestValidationError):  # registered for it only; typed as Starlette calls handlers
        return await _rag_error(request, exc)
    problems = exc.errors()
    if any(p["type"] == "json_invalid" for p in problems):
        status, kind = 400, "invalid_json"
        message = "the request body is not valid JSON: " + "; ".join(
            p.get("ctx", {}).get("error", p["msg"]) for p in problems
        )
    else:
        status, kind = 422, "invalid_request"
        message = "; ".join(f"{'.'.join(str(part) for part in p['loc'])}: {p['msg']}" for p in problems)
    await request.app.state.services.audit_failure(request, status, kind)
    return JSONResponse(error_body(status, kind, message), status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into an error body with its status (see `translate`)."""
    app.add_exception_handler(RagError, _rag_error)
    app.add_exception_handler(Exception, _rag_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
