"""POST /v1/search: ranked passages without generation; never queued behind the language model."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from ..auth import Principal
from ..errors import InputError
from .answers import ERRORS, in_thread
from .deps import principal, ready, services
from .schemas import SearchRequest, SearchResponse
from .services import passage_fields

router = APIRouter(tags=["search"], dependencies=[Depends(ready)])


@router.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
async def search(body: SearchRequest, request: Request, caller: Principal = Depends(principal)) -> dict:
    """Passages of the documents the caller may see, best first, with scores and provenance."""
    s = services(request)
    limit = s.settings.answer.max_question_chars
    if len(body.query) > limit:
        raise InputError(
            f"the query has {len(body.query)} characters, more than answer.max_question_chars ({limit}); shorten it"
        )
    k, mode = body.k or s.settings.retrieval.k, body.mode or s.settings.retrieval.mode
    started = time.perf_counter()
    hits = await in_thread(s.pipeline.search, body.query, k=k, mode=mode, search_filter=caller.search_filter())
    s.metrics.retrieval.labels("/v1/search").observe(time.perf_counter() - started)
    await s.record(
        request,
        200,
        **s.question_fields("query", body.query),
        k=k,
        mode=mode,
        passages=passage_fields((h.chunk.id, h.chunk.doc_id, h.chunk.content_hash) for h in hits),
    )
    return {"query": body.query, "mode": mode, "k": k, "hits": [h.to_dict() for h in hits]}
