"""The OpenAI chat-completions wire format, as far as this service speaks it.

Fields that OpenAI clients commonly send but that a grounded answer cannot honour (temperature, penalties...) are
accepted and ignored: generation settings belong to the server's configuration, and refusing them would break
existing clients. Fields nobody defines are refused like everywhere else in the API.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .schemas import Request, SentencePublic, SourcePublic



def ignored():
    return Field(None, description="accepted for compatibility and ignored: generation follows the server's settings")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`text`; other part types are ignored")
    text: str | None = Field(None, description="the text of a `text` part")


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="system/developer messages are ignored (the grounding prompt is fixed); user messages are the "
        "questions, the last one being answered")
    content: str | list[TextPart] | None = Field(None, description="the text, or a list of text parts")
    name: str | None = Field(None, description="ignored")

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(Request):
    include_usage: bool = Field(False, description="send a last chunk with token usage")


class ChatCompletionRequest(Request):
    model: str = Field(description="an id from GET /v1/models")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200, description="the conversation so far")
    stream: bool = Field(False, description="send `chat.completion.chunk` Server-Sent Events, ending with [DONE]")
    stream_options: StreamOptions | None = Field(None, description="streaming options")
    n: int | None = Field(None, ge=1, le=1, description="only 1 choice is produced")
    max_tokens: int | None = ignored()
    max_completion_tokens: int | None = ignored()
    temperature: float | None = ignored()
    top_p: float | None = ignored()
    seed: int | None = ignored()
    stop: str | list[str] | None = ignored()
    presence_penalty: float | None = ignored()
    frequency_penalty: float | None = ignored()
    user: str | None = Field(None, description="ignored; the audit log records the API key's principal")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = Field("assistant", description="always assistant")
    content: str = Field(description="the verified answer with [n] markers, then a `Sources:` list")


class Choice(BaseModel):
    index: int = Field(0, description="always 0: one choice")
    message: AssistantMessage = Field(description="the reply")
    finish_reason: Literal["stop", "length"] = Field("stop", description="why generation ended")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="prompt length in model tokens (0 when unknown)")
    completion_tokens: int = Field(description="tokens generated")
    total_tokens: int = Field(description="prompt and completion tokens")


class ChatCompletionResponse(BaseModel):
    id: str = Field(description="unique id of this completion")
    object: Literal["chat.completion"] = Field("chat.completion", description="always chat.completion")
    created: int = Field(description="Unix time")
    model: str = Field(description="the model id asked for")
    choices: list[Choice] = Field(description="exactly one")
    usage: Usage = Field(description="token counts")
    citations: list[SentencePublic] = Field(
        description="extension: the answer's sentences with the `n` of the sources each cites and their support")
    sources: list[SourcePublic] = Field(description="extension: the passages the answer cites, numbered as in [n]")
    abstained: bool = Field(description="extension: the documents do not contain the answer")


class ModelPublic(BaseModel):
    id: str = Field(description="pass as `model` to /v1/chat/completions")
    object: Literal["model"] = Field("model", description="always model")
    created: int = Field(description="Unix time the server started")
    owned_by: str = Field(description="always `sovereign-rag`")


class ModelList(BaseModel):
    object: Literal["list"] = Field("list", description="always list")
    data: list[ModelPublic] = Field(description="the models served")
