"""The OpenAI chat-completions wire format, as far as this service speaks it.

Every field of OpenAI's Chat Completions request and of its messages is accepted, so that a client replaying a
conversation (`message.model_dump()` of a reply, with `refusal`, `annotations`, `audio`, `tool_calls`...) works
unchanged. What a grounded answer cannot honour is handled in one of two ways:

- ignored, when the reply keeps the shape the client expects (temperature, penalties, `max_tokens`, `tools` the model
  may choose not to call, `metadata`, `store`, `seed`...): generation follows the server's configuration;
- refused with a 422 naming the field, when the client asks for a reply this service cannot give (more than one
  choice, log probabilities, JSON output, audio, a forced tool call, web search, moderation).

Fields nobody defines are refused like everywhere else in the API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from .schemas import JsonObject, Request, SentencePublic, SourcePublic, Text


def _ignored(
    description: str = "accepted for compatibility and ignored: generation follows the server's settings",
) -> Any:
    """An optional field that is read and dropped (`Field` is typed `Any` so that it fits every annotation)."""
    return Field(None, description=description)


def _not_applicable() -> Any:
    """A field of a replayed reply message (e.g. `refusal`, `audio`) that means nothing in a request."""
    return _ignored("accepted for compatibility with replayed conversations and ignored")


class ContentPart(Request):
    """One part of a message's content: only text parts are read."""

    type: Literal["text", "refusal", "image_url", "input_audio", "file"] = Field(
        description="`text` parts make up the message; the other kinds are accepted and ignored"
    )
    text: Text | None = Field(None, description="the text of a `text` part")
    refusal: Text | None = _not_applicable()
    image_url: JsonObject | None = _not_applicable()
    input_audio: JsonObject | None = _not_applicable()
    file: JsonObject | None = _not_applicable()
    prompt_cache_breakpoint: JsonObject | None = _not_applicable()


class ChatMessage(Request):
    """One message of the conversation; only the text of user messages is read."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="system/developer messages are ignored (the grounding prompt is fixed); user messages are the "
        "questions, the last one being answered; assistant, tool and function messages are ignored"
    )
    content: Text | list[ContentPart] | None = Field(None, description="the text, or a list of content parts")
    name: Text | None = _not_applicable()
    refusal: Text | None = _not_applicable()
    annotations: list[JsonObject] | None = _not_applicable()
    audio: JsonObject | None = _not_applicable()
    tool_calls: list[JsonObject] | None = _not_applicable()
    function_call: JsonObject | None = _not_applicable()
    tool_call_id: Text | None = _not_applicable()

    def text(self) -> str:
        """The message's text: `content`, or its text parts joined by spaces."""
        if isinstance(self.content, list):
            return " ".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(Request):
    """`stream_options` of a streamed completion."""

    include_usage: bool = Field(False, description="send a last chunk with token usage")
    include_obfuscation: bool | None = _ignored()


class ChatCompletionRequest(Request):
    """Body of `POST /v1/chat/completions`: the last user message is answered from the documents."""

    model: Text = Field(description="an id from GET /v1/models")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200, description="the conversation so far")
    stream: bool | None = Field(
        False, description="send `chat.completion.chunk` Server-Sent Events, ending with [DONE]"
    )
    stream_options: StreamOptions | None = Field(None, description="streaming options")
    n: int | None = Field(None, ge=1, le=1, description="only 1 choice is produced")
    max_tokens: int | None = _ignored()
    max_completion_tokens: int | None = _ignored()
    temperature: float | None = _ignored()
    top_p: float | None = _ignored()
    seed: int | None = _ignored()
    stop: Text | list[Text] | None = _ignored()
    presence_penalty: float | None = _ignored()
    frequency_penalty: float | None = _ignored()
    logit_bias: dict[Text, float] | None = _ignored()
    reasoning_effort: Text | None = _ignored()
    verbosity: Text | None = _ignored()
    service_tier: Text | None = _ignored()
    prediction: JsonObject | None = _ignored()
    parallel_tool_calls: bool | None = _ignored()
    tools: list[JsonObject] | None = _ignored("accepted and ignored: the answer is always a message (tool_choice auto)")
    functions: list[JsonObject] | None = _ignored("deprecated form of `tools`; accepted and ignored")
    tool_choice: Text | JsonObject | None = Field(
        None, description="`none` and `auto` are accepted (the answer is a message); a forced tool call is refused"
    )
    function_call: Text | JsonObject | None = Field(
        None, description="deprecated form of `tool_choice`: `none` and `auto` accepted, a forced call refused"
    )
    logprobs: bool | None = Field(None, description="must be false or absent: log probabilities are not returned")
    top_logprobs: int | None = Field(None, description="must be 0 or absent: log probabilities are not returned")
    response_format: JsonObject | None = Field(
        None, description='only `{"type": "text"}`: the answer is text with citations, never JSON'
    )
    modalities: list[Text] | None = Field(None, description='only `["text"]`: no audio output')
    audio: JsonObject | None = Field(None, description="must be absent or null: no audio output")
    web_search_options: JsonObject | None = Field(
        None, description="must be absent or null: answers come from the indexed documents only, never the web"
    )
    moderation: JsonObject | None = Field(None, description="must be absent or null: no moderation model runs here")
    user: Text | None = _ignored("ignored; the audit log records the API key's principal")
    safety_identifier: Text | None = _ignored("ignored; the audit log records the API key's principal")
    prompt_cache_key: Text | None = _ignored()
    prompt_cache_retention: Text | None = _ignored()
    prompt_cache_options: JsonObject | None = _ignored()
    metadata: dict[Text, Text] | None = _ignored("accepted and ignored: completions are not stored")
    store: bool | None = _ignored("accepted and ignored: completions are not stored (the audit log records them)")

    @model_validator(mode="after")
    def _answerable(self) -> ChatCompletionRequest:
        """Refuse what asks for a reply other than one text message with citations."""
        refused = [
            reason
            for asked, reason in (
                (self.logprobs, "logprobs: log probabilities are not returned; leave it false"),
                (self.top_logprobs, "top_logprobs: log probabilities are not returned; leave it 0"),
                (_forces_call(self.tool_choice), "tool_choice: the answer is always a message; use `auto` or `none`"),
                (
                    _forces_call(self.function_call),
                    "function_call: the answer is always a message; use `auto` or `none`",
                ),
                (
                    (self.response_format or {}).get("type", "text") != "text",
                    'response_format: the answer is text with citations; only `{"type": "text"}` is supported',
                ),
                (set(self.modalities or ["text"]) != {"text"}, 'modalities: only `["text"]` is supported'),
                (self.audio is not None, "audio: no audio output; leave it out"),
                (
                    self.web_search_options is not None,
                    "web_search_options: answers come from the indexed documents, never the web",
                ),
                (self.moderation is not None, "moderation: no moderation model runs here; leave it out"),
            )
            if asked
        ]
        if refused:
            raise ValueError("unsupported: " + "; ".join(refused))
        return self


def _forces_call(choice: str | dict[str, Any] | None) -> bool:
    return choice not in (None, "none", "auto")


class AssistantMessage(BaseModel):
    """The reply message of a completion."""

    role: Literal["assistant"] = Field("assistant", description="always assistant")
    content: str = Field(description="the verified answer with [n] markers, then a `Sources:` list")


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = Field(0, description="always 0: one choice")
    message: AssistantMessage = Field(description="the reply")
    finish_reason: Literal["stop", "length"] = Field("stop", description="why generation ended")


class Usage(BaseModel):
    """Token counts of a completion (prompt and generated tokens of the language model)."""

    prompt_tokens: int = Field(description="prompt length in model tokens (0 when unknown)")
    completion_tokens: int = Field(description="tokens generated")
    total_tokens: int = Field(description="prompt and completion tokens")


class ChatCompletionResponse(BaseModel):
    """A completion in OpenAI's shape, with the answer's citations and sources as extensions."""

    id: str = Field(description="unique id of this completion")
    object: Literal["chat.completion"] = Field("chat.completion", description="always chat.completion")
    created: int = Field(description="Unix time")
    model: str = Field(description="the model id asked for")
    choices: list[Choice] = Field(description="exactly one")
    usage: Usage = Field(description="token counts")
    citations: list[SentencePublic] = Field(
        description="extension: the answer's sentences with the `n` of the sources each cites and their support"
    )
    sources: list[SourcePublic] = Field(description="extension: the passages the answer cites, numbered as in [n]")
    abstained: bool = Field(description="extension: the documents do not contain the answer")


class ModelPublic(BaseModel):
    """The one model this service answers with, as `GET /v1/models` lists it."""

    id: str = Field(description="pass as `model` to /v1/chat/completions")
    object: Literal["model"] = Field("model", description="always model")
    created: int = Field(description="Unix time the server started")
    owned_by: str = Field(description="always `sovereign-rag`")


class ModelList(BaseModel):
    """Body of `GET /v1/models`."""

    object: Literal["list"] = Field("list", description="always list")
    data: list[ModelPublic] = Field(description="the models served")
