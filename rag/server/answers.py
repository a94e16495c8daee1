"""POST /v1/ask, and the answer flow it shares with the OpenAI-compatible chat endpoint.

A streamed response starts only once the first event exists: a full queue, an empty or overlong question and every
other error that can be known before the model writes is then a plain HTTP error with its status, not an event
inside a 200 stream. Errors after that become an `error` event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ..answer import Answer, Event, Token
from ..auth import Principal
from .deps import principal, ready, services
from .errors import error_body, translate
from .schemas import AskRequest, AskResponse, ErrorResponse
from .services import answer_fields

router = APIRouter(tags=["answers"], dependencies=[Depends(ready)])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503)
}
"""The error statuses the answer, search and document routes may return, for the OpenAPI document."""
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class StreamError:
    """An error after the response started; sent as an event because the status line is already out."""

    status: int
    kind: str
    message: str

    def body(self) -> dict:
        """The error object, as in an HTTP error response."""
        return error_body(self.status, self.kind, self.message)


async def open_answer(
    request: Request, caller: Principal, question: str, history: Sequence[str], audit: dict, **options: Any
) -> AsyncGenerator[Event | StreamError, None]:
    """Queue the question and wait for its first event; the result is the whole audited event stream.

    `options` go to `Pipeline.stream` (k, mode); `audit` holds the request's own audit fields. Raises BusyError when
    the generation queue is full, and whatever the pipeline raises before its first event (e.g. InputError), so that
    those errors are plain HTTP errors."""
    s = services(request)
    events = s.generation.events(
        lambda: s.pipeline.stream(question, search_filter=caller.search_filter(), history=history, **options),
        request,
    )
    first = await anext(events, None)  # None: the client left while queued
    return _audited(first, events, request, audit)


async def _audited(
    first: Event | None, events: AsyncGenerator[Event, None], request: Request, audit: dict
) -> AsyncGenerator[Event | StreamError, None]:
    """The events, with the audit record written before the final answer goes out, and errors turned into a last
    `StreamError`. A stream that ends otherwise (client gone) is recorded as status 499."""
    s = services(request)
    recorded = False
    try:
        async with aclosing(events):
            async for event in _chain(first, events):
                if isinstance(event, Answer):
                    s.metrics.retrieval.labels(request.scope["route"].path).observe(event.timings.retrieval_ms / 1000)
                    await s.record(request, 200, **audit, **answer_fields(event, s.model))
                    recorded = True
                yield event
    except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an error event
        failure = StreamError(*translate(exc))
        await s.audit_failure(request, failure.status, failure.kind)
        recorded = True
        yield failure
    finally:
        if not recorded:
            await s.record(request, 499, **audit, error="client_closed")


async def _chain(first: Event | None, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """`first`, then the rest of `events` (nothing when `first` is None)."""
    if first is None:
        return
    yield first
    async for event in events:
        yield event


async def final(stream: AsyncGenerator[Event | StreamError, None]) -> Answer | StreamError | None:
    """The last event of a stream consumed whole (non-streaming responses); None when the stream stopped before its
    answer (the client left)."""
    last: Event | StreamError | None = None
    async with aclosing(stream):
        async for event in stream:
            last = event
    return None if isinstance(last, Token) else last


def as_response(result: Answer | StreamError | None, render: Callable[[Answer], dict]) -> Response:
    """The HTTP response of a non-streamed answer: `render(answer)` as JSON, the error with its status, or 499 (the
    client closed the request: nginx's code, nobody reads it)."""
    if result is None:
        return Response(status_code=499)  # nobody is listening any more
    if isinstance(result, StreamError):
        return JSONResponse(result.body(), status_code=result.status)
    return JSONResponse(render(result))


def sse(event: str | None, payload: str | dict) -> str:
    """One Server-Sent Event (WHATWG HTML, "Server-sent events"): `payload` as JSON unless it is already a string."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


# ------------------------------------------------------------------------------------------------ /v1/ask
@router.post(
    "/v1/ask",
    response_model=AskResponse,
    responses={
        **ERRORS,
        200: {
            "description": "the answer; with `stream: true` a text/event-stream of `token`, `citations`, "
            "`sources` and a final `answer` event (or an `error` event)",
            "content": {"text/event-stream": {}},
        },
    },
)
async def ask(body: AskRequest, request: Request, caller: Principal = Depends(principal)) -> Response:
    """Answer from the documents the caller may see, each sentence verified against the passages it cites."""
    audit = {
        **services(request).question_fields("question", body.question),
        "k": body.k,
        "mode": body.mode,
        "history_turns": len(body.history),
    }
    stream = await open_answer(request, caller, body.question, body.history, audit, k=body.k, mode=body.mode)
    if not body.stream:
        return as_response(await final(stream), Answer.to_dict)
    return StreamingResponse(_ask_events(stream), media_type="text/event-stream", headers=SSE_HEADERS)


async def _ask_events(stream: AsyncGenerator[Event | StreamError, None]) -> AsyncIterator[str]:
    """The SSE frames of `/v1/ask` with `stream: true`."""
    async with aclosing(stream):
        async for event in stream:
            if isinstance(event, Token):
                yield sse("token", {"text": event.text})
            elif isinstance(event, StreamError):
                yield sse("error", event.body())
            else:
                answer = event.to_dict()
                yield sse("citations", {"sentences": answer["sentences"], "removed": answer["removed"]})
                yield sse("sources", {"sources": answer["sources"]})
                yield sse("answer", answer)


async def in_thread(function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Blocking pipeline work (SQLite, FAISS, parsing, embedding) off the event loop."""
    return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
