"""See the source: a cited passage in its surrounding text, a PDF page with the passage marked, the original file.

Every route checks, through `Pipeline.document` / `Pipeline.passage` like the other document routes, that the caller
may see the document: a hidden one is answered exactly like a missing one, and the message names only what the
caller sent. Which sentence of a passage supports an answer sentence is decided here with the verifier's own measure
(`cite.support`), not in the page's scripts.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from ..auth import Principal
from ..chunk import sentence_spans
from ..cite import support
from ..errors import NotFoundError
from ..pdf_page import Mark, render_page
from ..store import ChunkRecord
from .answers import ERRORS, in_thread
from .deps import principal, ready, services
from .documents import DocId
from .schemas import DocumentPublic
from .schemas import Request as RequestBody
from .services import passage_fields

router = APIRouter(tags=["sources"], dependencies=[Depends(ready)])

PASSAGE_COLOUR = (255, 214, 0, 70)
SENTENCE_COLOUR = (255, 120, 0, 110)


class Span(BaseModel):
    """A range of characters of a document's extracted text, `[start, end)`."""

    start: int = Field(description="offset in the document's extracted text")
    end: int = Field(description="offset just after the span")


class PassageRequest(RequestBody):
    """Body of `POST /v1/passages`."""

    chunk_id: int = Field(ge=1, le=2**62, description="the passage's id (`chunk_id` of a source or search hit)")
    sentence: str | None = Field(
        None,
        max_length=2000,
        description="an answer sentence citing the passage: the passage's sentence that "
        "supports it best is returned (sent in the body, not the URL, so that no text reaches access logs)",
    )


class PassageContext(BaseModel):
    """A passage in its surrounding text, as the web page shows a cited source."""

    chunk_id: int = Field(description="the passage's id (`chunk_id` of a source)")
    document: DocumentPublic = Field(description="the document the passage belongs to")
    page: int | None = Field(description="1-based page (PDFs), else null")
    heading_path: list[str] = Field(description="headings above the passage (chapter, article...), outermost first")
    context: str = Field(description="the passage with up to web.context_chars of the document before and after it")
    context_start: int = Field(description="offset of `context` in the document's extracted text")
    passage: Span = Field(description="where the passage lies")
    sentence: Span | None = Field(description="the passage sentence that best supports `sentence`, if any")
    original: bool = Field(description="the original file can be downloaded (GET /v1/documents/{id}/original)")


@router.post("/v1/passages", response_model=PassageContext, responses=ERRORS)
async def passage(body: PassageRequest, request: Request, caller: Principal = Depends(principal)) -> dict:
    """A passage in its surrounding text, with the sentence supporting an answer sentence."""
    s = services(request)
    chunk, record, text = await in_thread(s.pipeline.passage, body.chunk_id, caller.search_filter())
    start, end = _widen(text, chunk.start, chunk.end, s.settings.web.context_chars)
    best = _supporting_sentence(text, chunk, body.sentence) if body.sentence else None
    original = await in_thread(s.pipeline.originals.read, record)
    await s.record(request, 200, passages=passage_fields([(chunk.id, chunk.doc_id, chunk.content_hash)]))
    return {
        "chunk_id": chunk.id,
        "document": record.to_dict(),
        "page": chunk.page,
        "heading_path": list(chunk.heading_path),
        "context": text[start:end],
        "context_start": start,
        "passage": {"start": chunk.start, "end": chunk.end},
        "sentence": {"start": best[0], "end": best[1]} if best else None,
        "original": original is not None,
    }


@router.get(
    "/v1/documents/{doc_id}/pages/{page}",
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    response_class=Response,
)
async def page_image(
    request: Request,
    doc_id: str = DocId,
    page: int = Path(ge=1, le=100_000),
    chunk_id: int | None = Query(None, ge=1, le=2**62, description="a passage of this page to mark"),
    start: int | None = Query(
        None,
        ge=0,
        description="with `end`: a sentence of that passage to mark more strongly, "
        "as offsets in the document's text (`sentence` of POST /v1/passages)",
    ),
    end: int | None = Query(None, ge=0, description="offset just after that sentence"),
    caller: Principal = Depends(principal),
) -> Response:
    """A PDF page as a PNG image, with a passage's region and its supporting sentence marked."""
    s = services(request)
    record = await in_thread(s.pipeline.document, doc_id, caller.search_filter())
    data = await in_thread(s.pipeline.originals.read, record)
    if record.format != "pdf" or data is None:
        raise NotFoundError(f"document {doc_id!r} has no page images: only PDFs whose file is kept have them")
    marks = []
    if chunk_id is not None:
        chunk, _, text = await in_thread(s.pipeline.passage, chunk_id, caller.search_filter())
        if chunk.doc_id == doc_id and chunk.page == page:
            marks.append(Mark(chunk.text, PASSAGE_COLOUR))
            if start is not None and end is not None and chunk.start <= start < end <= chunk.end:
                marks.append(Mark(text[start:end], SENTENCE_COLOUR))
    png = await in_thread(render_page, data, page=page, scale=s.settings.web.page_scale, marks=marks)
    await s.record(request, 200, doc_id=doc_id, page=page, chunk_id=chunk_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.get(
    "/v1/documents/{doc_id}/original",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
)
async def original(request: Request, doc_id: str = DocId, caller: Principal = Depends(principal)) -> Response:
    """The file the document was made from, as an attachment named like it."""
    s = services(request)
    record = await in_thread(s.pipeline.document, doc_id, caller.search_filter())
    data = await in_thread(s.pipeline.originals.read, record)
    if data is None:
        raise NotFoundError(
            f"the original file of document {doc_id!r} is not kept (it was ingested from a path that changed or moved)"
        )
    await s.record(request, 200, doc_id=doc_id, sha256=record.sha256)
    name = record.source.rsplit("/", 1)[-1] or doc_id
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "private, no-store",
        },
    )


def _widen(text: str, start: int, end: int, margin: int) -> tuple[int, int]:
    """[start, end) grown by about `margin` characters each side, cut at a line break or a space when there is one."""
    left, right = max(0, start - margin), min(len(text), end + margin)
    if left > 0:
        cut = text.find("\n", left, start)
        cut = cut if cut >= 0 else text.find(" ", left, start)
        left = cut + 1 if cut >= 0 else left
    if right < len(text):
        cut = text.rfind("\n", end, right)
        cut = cut if cut >= 0 else text.rfind(" ", end, right)
        right = cut if cut >= 0 else right
    return left, right


def _supporting_sentence(text: str, chunk: ChunkRecord, sentence: str) -> tuple[int, int] | None:
    """The span of the passage's sentence that supports `sentence` most (cite.support), or None if none does."""
    scored = [
        (support(sentence, text[a:b], chunk.lang).score, (a, b))
        for a, b in sentence_spans(text, chunk.start, chunk.end)
    ]
    score, span = max(scored, default=(0.0, None), key=lambda item: item[0])
    return span if score > 0 else None
