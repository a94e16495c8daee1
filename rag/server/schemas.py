"""Request and response bodies, named by direction (`...Request` in, `...Response`/`...Public` out).

Requests forbid unknown fields, so a misspelt option is a 422 naming it rather than silently ignored, and take the
JSON types the OpenAPI document states (strict: `"k": "5"` or `"stream": 0` is a 422, not a guess). Every field
carries a description: they are the reference documentation at /docs. Every text field of a request is `Text`:
JSON can carry strings that are not text (a lone UTF-16 surrogate, what a client sends when it cuts an emoji in
half; a NUL), and they are refused with a 422 naming the field and the position before any handler sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError


class Request(BaseModel):
    """Base of request bodies: unknown fields are a 422 naming them, and JSON types are taken as stated."""

    model_config = ConfigDict(extra="forbid", strict=True)


def text_problem(value: str) -> str | None:
    """Why `value` is not text that can be stored, searched and sent back as UTF-8, or None when it is.

    Refused: lone UTF-16 surrogates (U+D800..U+DFFF, which no UTF-8 encoding has) and NUL (U+0000). The reason
    names the character and its 0-based position."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}) at character {exc.start}, which is not "
            "text (a client cut a character such as an emoji in half): send whole characters"
        )
    position = value.find("\0")
    if position >= 0:
        return f"a NUL character (U+0000) at character {position}: remove it"
    return None


def _checked_text(value: Any) -> Any:
    """Before pydantic's own checks, so that a surrogate is reported alike whatever other constraints apply."""
    if isinstance(value, str) and (problem := text_problem(value)):
        raise PydanticCustomError("invalid_text", "the text contains {problem}", {"problem": problem})
    return value


def _checked_tree(value: Any) -> Any:
    """`_checked_text` for every key and string inside a JSON value (objects accepted for compatibility); a loop,
    not recursion, so that no nesting the JSON parser accepts can exhaust the stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            for key in item:
                _checked_text(key)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        else:
            _checked_text(item)
    return value


Text = Annotated[str, BeforeValidator(_checked_text)]
"""Every text field of a request: a str without lone surrogates or NUL (422 `invalid_text` otherwise)."""
JsonObject = Annotated[dict[str, Any], BeforeValidator(_checked_tree)]
"""A JSON object the service accepts but does not interpret; its strings are checked like `Text`."""

Question = Annotated[
    Text,
    Field(
        min_length=1,
        pattern=r"\S",
        description="the question, in any language; at most answer.max_question_chars characters",
    ),
]
Passages = Annotated[int | None, Field(ge=1, le=100, description="passages to retrieve (default retrieval.k)")]


# ------------------------------------------------------------------------------------------------ ask
class AskRequest(Request):
    """Body of `POST /v1/ask`: a question, optionally the conversation so far, answered whole or streamed."""

    question: Question
    k: Passages = None
    mode: Literal["generate", "quote"] | None = Field(
        None,
        description="`generate` an answer with the language model or `quote` the best sentences verbatim "
        "(default answer.mode)",
    )
    history: list[Text] = Field(
        default_factory=list,
        max_length=50,
        description="previous questions of the conversation, oldest first; a follow-up is retrieved together with "
        "the last one",
    )
    stream: bool = Field(
        False,
        description="answer as Server-Sent Events: `token` events while the model writes, then `citations`, "
        "`sources` and a final `answer` event holding this same response object",
    )


class SentencePublic(BaseModel):
    """One sentence of an answer with the sources it cites and how well they support it."""

    text: str = Field(description="the sentence without its citation markers")
    citations: list[int] = Field(description="the `n` of each source the sentence cites")
    support: float = Field(description="0..1: how much of the sentence the cited passages contain")
    supported: bool = Field(description="support reached answer.min_support")
    missing: list[str] = Field(description="numbers and names in the sentence that the cited passages lack")


class TimingsPublic(BaseModel):
    """Where the time of one answer went, in milliseconds unless the name says otherwise."""

    retrieval_ms: float = Field(description="search time")
    prompt_tokens: int | None = Field(description="prompt length in model tokens (null for HTTP model backends)")
    ttft_ms: float | None = Field(description="from the request to the first generated token")
    generated_tokens: int = Field(description="tokens the model wrote")
    tokens_per_s: float | None = Field(description="decoding speed after the first token")
    verify_ms: float = Field(description="citation verification time")
    total_ms: float = Field(description="whole answer, queueing in the server excluded")


class AskResponse(BaseModel):
    """An answer (or an abstention) with its verified sentences, the numbered sources and the timings."""

    question: str = Field(description="the question as answered (trimmed)")
    answer: str = Field(description="the verified answer with `[n]` markers, or the abstention sentence")
    lang: str = Field(description="language of the answer (ISO 639-1)")
    mode: str = Field(description="generate or quote")
    abstained: bool = Field(description="the documents do not support an answer; `sources` are the closest passages")
    evidence: float = Field(
        description="0..1: the best passage's share of the question's content words; below "
        "answer.min_retrieval_score the service abstains without generating"
    )
    sentences: list[SentencePublic] = Field(description="the answer's sentences with their citations and support")
    removed: list[SentencePublic] = Field(
        description="generated sentences dropped because their sources do not support them"
    )
    sources: list[SourcePublic] = Field(description="the passages the answer was written from, numbered as cited")
    timings: TimingsPublic = Field(description="where the time went")
    model: str | None = Field(description="language model id; null when none was needed (quote, abstention)")
    raw: str = Field(description="the model's output before parsing and verification")
    set_aside: list[SetAsidePublic] = Field(
        description="retrieved passages with text that instructs the model (rag/untrusted.py): that text is shown "
        "here, never given to the model, quoted or used as support; the rest of the passage still answers unless "
        "`whole`"
    )
    unmatched: list[str] = Field(description="content words of the question that no cited passage speaks of")
    confidence: float = Field(
        description="0..1: calibrated probability that the passages answer the question; below answer.min_confidence "
        "the service abstains before generating (rag/confidence.py, docs/evaluation.md)"
    )
    features: dict[str, float] = Field(description="the values `confidence` was computed from (docs/verification.md)")


# ------------------------------------------------------------------------------------------------ search
class SearchRequest(Request):
    """Body of `POST /v1/search`: a query, the number of passages and the retriever."""

    query: Text = Field(description="what to look for", min_length=1, pattern=r"\S")
    k: Passages = None
    mode: Literal["hybrid", "dense", "bm25"] | None = Field(
        None, description="retriever: hybrid fusion, dense embeddings only or BM25 only (default retrieval.mode)"
    )


class HitPublic(BaseModel):
    """One retrieved passage with its place in the document and its scores."""

    chunk_id: int = Field(description="id of the passage in the index")
    doc_id: str = Field(description="id of the document")
    title: str = Field(description="document title")
    source: str = Field(description="where the document came from (file path or upload name)")
    page: int | None = Field(description="1-based page (PDFs), else null")
    heading_path: list[str] = Field(description="headings above the passage, outermost first")
    start: int = Field(description="offset of the passage in the document's extracted text")
    end: int = Field(description="offset just after the passage")
    lang: str = Field(description="language of the passage")
    content_hash: str = Field(description="sha256 of the passage text as embedded")
    text: str = Field(description="the passage")
    score: float = Field(description="fused score (hybrid) or the retriever's own")
    dense_score: float | None = Field(description="cosine similarity, null when dense search did not return it")
    bm25_score: float | None = Field(description="BM25 score, null when BM25 did not return it")
    dense_rank: int | None = Field(description="1-based rank in the dense list")
    bm25_rank: int | None = Field(description="1-based rank in the BM25 list")


class InstructionPublic(BaseModel):
    """A sentence, heading or title of a passage that instructs the model, and why it was recognised."""

    text: str = Field(description="the sentence (or heading, or title) as in the document, whitespace collapsed")
    part: Literal["text", "heading", "title"] = Field(description="where in the passage it is")
    start: int | None = Field(description="offset of the sentence in the passage's `text`; null for a heading or title")
    end: int | None = Field(description="offset just after the sentence; null for a heading or title")
    reason: str = Field(description='the rule that recognised it, e.g. "dictates what to answer, say or output"')


class SetAsidePublic(HitPublic):
    """A retrieved passage some of whose text instructs the model; `text` is the passage as retrieved."""

    whole: bool = Field(description="nothing else was left: the passage was not used at all")
    instructions: list[InstructionPublic] = Field(description="what was cut out of the passage, and why")


class SourcePublic(HitPublic):
    """A passage an answer was written from, with the number its `[n]` markers use."""

    n: int = Field(description="the number used in `[n]` markers")
    cited: bool = Field(description="at least one kept sentence cites this passage")


class SearchResponse(BaseModel):
    """The passages of `POST /v1/search`, best first."""

    query: str = Field(description="the query")
    mode: str = Field(description="retriever used")
    k: int = Field(description="passages asked for")
    hits: list[HitPublic] = Field(description="best first; only passages of documents the caller may see")


# ------------------------------------------------------------------------------------------------ documents
class DocumentPublic(BaseModel):
    """A stored document as the caller may see it (its text is not included)."""

    doc_id: str = Field(description="stable id; re-uploading the same file name replaces the document")
    source: str = Field(
        description="file path (command-line ingestion) or upload://<principal>/<labels joined by +>/<file name>"
    )
    title: str = Field(description="title from the document's metadata or its file name")
    format: str = Field(
        description="pdf, docx, html, markdown, text, akoma-ntoso, formex, pptx, xlsx, csv, odt, ods, odp or eml"
    )
    lang: str = Field(description="detected language")
    sha256: str = Field(description="of the file's bytes")
    labels: list[str] = Field(description="access labels: a caller sees the document iff it holds all of them")
    pages: int | None = Field(description="page count (PDFs), slide count (PPTX, ODP)")
    chars: int = Field(description="length of the extracted text")
    ingested_at: float = Field(description="Unix time of the last change")
    chunks: int = Field(description="passages in the index")
    pages_ocr: list[int] = Field(default_factory=list, description="1-based PDF pages whose text was read by OCR")
    pages_without_text: list[int] = Field(
        default_factory=list, description="1-based PDF pages still without text (scanned, OCR off or capped)"
    )


class DocumentList(BaseModel):
    """Body of `GET /v1/documents`."""

    documents: list[DocumentPublic] = Field(description="the documents the caller may see, by id")


class Duplicate(BaseModel):
    """An uploaded file that was not indexed because a stored document has the same bytes and labels."""

    file: str = Field(description="the uploaded file's name")
    duplicate_of: str = Field(description="id of the stored document with the same bytes")


class PagesWithoutText(BaseModel):
    """The PDF pages of one uploaded file that have no text layer."""

    file: str = Field(description="the uploaded file's name")
    pages: list[int] = Field(description="1-based page numbers")  # also the shape of `pages_ocr`


class UploadResponse(BaseModel):
    """What `POST /v1/documents` did with each uploaded file."""

    added: list[str] = Field(description="ids of new documents")
    updated: list[str] = Field(description="ids of documents replaced by a changed file or new labels")
    unchanged: list[str] = Field(description="ids of documents uploaded again without change")
    chunks: int = Field(description="passages written")
    duplicates: list[Duplicate] = Field(
        description="files byte-identical to a stored document with the same labels (or to an earlier file of this "
        "upload): not indexed again; search results show the passages of the first copy"
    )
    pages_without_text: list[PagesWithoutText] = Field(
        description="PDF pages without a text layer (scanned images), by file: their content is not searchable"
    )
    pages_ocr: list[PagesWithoutText] = Field(
        description="PDF pages without a text layer that were read by OCR (ingest.ocr), by file"
    )
    documents: list[DocumentPublic] = Field(description="the uploaded documents as stored (duplicates left out)")


class DeleteResponse(BaseModel):
    """Body of `DELETE /v1/documents/{doc_id}`."""

    deleted: str = Field(description="id of the removed document")


# ------------------------------------------------------------------------------------------------ service
class ErrorDetail(BaseModel):
    """The `error` member of an error body."""

    message: str = Field(description="what went wrong and how to fix it")
    type: str = Field(description="machine-readable kind, e.g. invalid_request, not_found, queue_full")
    code: int = Field(description="the HTTP status")


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx; the shape of OpenAI's errors, so their clients report the message."""

    error: ErrorDetail = Field(description="what went wrong")


class Status(BaseModel):
    """Body of `GET /healthz` and `GET /readyz`."""

    status: str = Field(description="ok (healthz), ready or loading or failed (readyz)")
    detail: str | None = Field(None, description="why the server is not ready")


AskResponse.model_rebuild()  # `set_aside` names SetAsidePublic, defined below it
