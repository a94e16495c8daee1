"""POST /v1/chat/completions and GET /v1/models in OpenAI's wire format, so existing clients work unchanged.

The last user message is the question and earlier user messages are the conversation (follow-ups are retrieved with
the previous question); system prompts are ignored because the grounding prompt is the product. The message text is
what `rag chat` prints: the answer with [n] markers, then the sources. The structured citations and sources are in
the extension fields `citations`, `sources` and `abstained` (of the response, or of the last chunk when streaming).

Streaming sends the model's tokens as they come. Verification runs when the model is done and may remove sentences;
the text an OpenAI client has already shown cannot be taken back, so the last content chunk then repeats the verified
answer ("Verified answer: ..."), exactly as the terminal chat does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from ..answer import Answer, Event, Token
from ..auth import Principal
from ..chat import render_tail
from ..errors import InputError, NotFoundError
from .answers import ERRORS, SSE_HEADERS, StreamError, as_response, final, open_answer, sse
from .deps import principal, ready, services
from .openai_schemas import ChatCompletionRequest, ChatCompletionResponse, ModelList

router = APIRouter(tags=["openai"], dependencies=[Depends(ready)])


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
async def models(request: Request, caller: Principal = Depends(principal)) -> dict:
    """The one model this service answers with (retrieval and verification included)."""
    s = services(request)
    return {
        "object": "list",
        "data": [
            {"id": s.settings.llm.model_name, "object": "model", "created": int(s.started), "owned_by": "sovereign-rag"}
        ],
    }


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses={
        **ERRORS,
        200: {
            "description": "a chat.completion, or with `stream: true` chat.completion.chunk events ending "
            "with `data: [DONE]`",
            "content": {"text/event-stream": {}},
        },
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, caller: Principal = Depends(principal)
) -> Response:
    """A grounded answer to the last user message, with citations."""
    s = services(request)
    if body.model != s.settings.llm.model_name:
        raise NotFoundError(f"model {body.model!r} does not exist; GET /v1/models lists {s.settings.llm.model_name!r}")
    question, history = _conversation(body)
    audit = {**s.question_fields("question", question), "history_turns": len(history)}
    stream = await open_answer(request, caller, question, history, audit)
    reply = _Reply(s.settings.llm.model_name)
    if not body.stream:
        return as_response(await final(stream), reply.completion)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(reply.chunks(stream, include_usage), media_type="text/event-stream", headers=SSE_HEADERS)


def _conversation(body: ChatCompletionRequest) -> tuple[str, list[str]]:
    asked = [m.text().strip() for m in body.messages if m.role == "user"]
    if body.messages[-1].role != "user" or not asked[-1]:
        raise InputError("the last message must be the user's question, with text")
    return asked[-1], [q for q in asked[:-1] if q]


class _Reply:
    """One completion's identity and its two renderings."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def completion(self, answer: Answer) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": render_tail(answer, "")},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(answer),
            **_extensions(answer),
        }

    async def chunks(
        self, stream: AsyncGenerator[Event | StreamError, None], include_usage: bool
    ) -> AsyncGenerator[str, None]:
        """The `chat.completion.chunk` SSE frames of a streamed completion, ending with `[DONE]`."""
        streamed: list[str] = []
        yield self._chunk({"role": "assistant", "content": ""})
        async with aclosing(stream):
            async for event in stream:
                if isinstance(event, Token):
                    streamed.append(event.text)
                    yield self._chunk({"content": event.text})
                elif isinstance(event, StreamError):
                    yield sse(None, event.body())
                else:
                    text = "".join(streamed)
                    tail = render_tail(event, text)
                    yield self._chunk({"content": f"\n{tail}" if text else tail})
                    yield self._chunk({}, "stop", **_extensions(event))
                    if include_usage:
                        yield sse(None, {**self._envelope(), "choices": [], "usage": _usage(event)})
        yield sse(None, "[DONE]")

    def _chunk(self, delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
        """One chunk frame holding `delta`; `extra` adds top-level fields (the extensions, in the last one)."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return sse(None, {**self._envelope(), "choices": [choice], **extra})

    def _envelope(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}


def _usage(answer: Answer) -> dict:
    prompt = answer.timings.prompt_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": answer.timings.generated_tokens,
        "total_tokens": prompt + answer.timings.generated_tokens,
    }


def _extensions(answer: Answer) -> dict:
    cited = [s.to_dict() for s in answer.sources if s.cited or answer.abstained]
    return {"citations": [s.to_dict() for s in answer.sentences], "sources": cited, "abstained": answer.abstained}
