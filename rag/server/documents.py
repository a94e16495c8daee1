"""/v1/documents: upload (admin), list, get, delete (admin), each limited to the documents the caller may see.

An upload is all or nothing: every file is parsed first, and only if all of them are readable are they embedded and
committed to the index in one transaction. Parsing happens in the parser processes (rag/parse_pool.py) under the
`ingest.parse_timeout_s` and `ingest.parse_memory_mb` limits, so a hostile file is a 4xx and never stalls the server.
Uploaded documents are stored as `upload://<principal>/<labels>/<file name>` (the document's labels sorted, joined
by `+`), so a re-upload of a name with the same labels by the same principal replaces its document. Every document
of such a source is visible to whoever may upload to it (an uploader holds every label it gives), so an upload can
never overwrite, or by its answer detect, a document the caller cannot see: one of another principal, or of labels
this key does not hold.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile

from ..auth import Principal, checked_labels
from ..errors import AccessDeniedError, InputError, LoadError
from ..load import Document
from ..parse_pool import ParsePool
from .answers import ERRORS, in_thread
from .deps import admin, principal, ready, services
from .forms import UploadRoute
from .schemas import DeleteResponse, DocumentList, DocumentPublic, Text, UploadResponse

if TYPE_CHECKING:
    from ..ingest import IngestReport
    from ..pipeline import Pipeline

router = APIRouter(tags=["documents"], dependencies=[Depends(ready)], route_class=UploadRoute)

DocId = Path(description="a document id from GET /v1/documents", max_length=200)


@router.post("/v1/documents", status_code=201, response_model=UploadResponse, responses=ERRORS)
async def upload(
    request: Request,
    files: list[UploadFile] = File(
        description="one or more files (PDF, Word, PowerPoint, Excel, CSV, LibreOffice, e-mail, HTML, Markdown, "
        "text, Akoma Ntoso, Formex); the format is read from the content, not the name"
    ),
    labels: list[Text] | None = Form(
        None,
        description="access labels (repeat the field or separate with commas); "
        "default: the server's default_labels. You may only use labels you hold",
    ),
    caller: Principal = Depends(admin),
) -> dict:
    """Add or replace documents; nothing is stored unless every file is readable."""
    s = services(request)
    label_set = _upload_labels(labels, caller, s.settings.default_labels)
    named = [(_bare_name(f.filename), await f.read()) for f in files]
    _check_unique(name for name, _ in named)
    documents = await in_thread(_parse_all, s.parsers, named, f"{caller.id}/{'+'.join(sorted(label_set))}")
    async with s.writes:
        report = await in_thread(_store, s.pipeline, [data for _, data in named], documents, sorted(label_set))
    copies = dict(report.duplicates)
    stored = [
        await in_thread(s.pipeline.document, d.doc_id, caller.search_filter())
        for d in documents
        if d.source not in copies
    ]
    await s.record(
        request,
        201,
        labels=sorted(label_set),
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        files=[{"doc_id": d.doc_id, "sha256": d.sha256} for d in documents],
    )
    return {
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "chunks": report.chunks,
        "documents": [d.to_dict() for d in stored],
        "duplicates": [
            {"file": name, "duplicate_of": copies[d.source]}
            for (name, _), d in zip(named, documents, strict=True)
            if d.source in copies
        ],
        "pages_without_text": [
            {"file": name, "pages": d.pages_without_text}
            for (name, _), d in zip(named, documents, strict=True)
            if d.pages_without_text
        ],
        "pages_ocr": [
            {"file": name, "pages": d.pages_ocr} for (name, _), d in zip(named, documents, strict=True) if d.pages_ocr
        ],
    }


@router.get("/v1/documents", response_model=DocumentList, responses=ERRORS)
async def list_documents(request: Request, caller: Principal = Depends(principal)) -> dict:
    """The documents the caller may see; others are not counted or hinted at."""
    records = await in_thread(services(request).pipeline.documents, caller.search_filter())
    return {"documents": [d.to_dict() for d in records]}


@router.get("/v1/documents/{doc_id}", response_model=DocumentPublic, responses=ERRORS)
async def get_document(request: Request, doc_id: Text = DocId, caller: Principal = Depends(principal)) -> dict:
    """One document's metadata; a document the caller may not see is a 404 exactly like a missing one."""
    record = await in_thread(services(request).pipeline.document, doc_id, caller.search_filter())
    return record.to_dict()


@router.delete("/v1/documents/{doc_id}", response_model=DeleteResponse, responses=ERRORS)
async def delete_document(request: Request, doc_id: Text = DocId, caller: Principal = Depends(admin)) -> dict:
    """Remove a document the caller may see from every part of the index."""
    s = services(request)
    async with s.writes:
        await in_thread(s.pipeline.delete, [doc_id], caller.search_filter())
    await s.record(request, 200, doc_id=doc_id)
    return {"deleted": doc_id}


def _store(pipeline: Pipeline, contents: list[bytes], documents: list[Document], labels: list[str]) -> IngestReport:
    """Keep the files, then commit their documents in one transaction, then prune. The files are written before the
    commit (a crash leaves an unreferenced file, never a missing one) and held from other writers' prunes until it
    (rag/originals.py)."""
    with pipeline.originals.kept(contents):
        report = pipeline.ingest_documents(documents, labels=labels, atomic=True)
    pipeline.prune_originals()
    return report


def _upload_labels(labels: list[str] | None, caller: Principal, default: list[str]) -> frozenset[str]:
    """A principal may only label a document with labels it holds: otherwise it could upload what it cannot read
    back, or plant text in answers to principals of a label it was never given."""
    requested = [part.strip() for value in labels or [] for part in value.split(",") if part.strip()]
    label_set = checked_labels(requested or default)
    if not label_set <= caller.labels:
        missing = ", ".join(sorted(label_set - caller.labels))
        raise AccessDeniedError(
            f"principal {caller.id!r} does not hold the label(s) {missing}; upload with labels "
            "it holds (field `labels`)"
        )
    return label_set


def _bare_name(filename: str | None) -> str:
    """Refuse rather than strip folder parts: a client sending `../x.pdf` or `a/b.pdf` does not mean `x.pdf`, and
    silently renaming could replace another of its documents."""
    name = unicodedata.normalize("NFC", filename or "").strip()
    if not name:
        raise InputError("every file part needs a file name (the `filename` of its Content-Disposition)")
    if "/" in name or "\\" in name or name in (".", "..") or len(name) > 255 or not name.isprintable():
        raise InputError(
            f"file name {name[:100]!r} is not a bare file name: send the name without folders, "
            "control characters or `..`, at most 255 characters"
        )
    return name


def _check_unique(names: Iterable[str]) -> None:
    """Raise InputError when a file name occurs twice in one upload."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(
                f"file name {name!r} appears twice in one upload; each file becomes the document of "
                "its name, so send distinct names"
            )
        seen.add(name)


def _parse_all(parsers: ParsePool, named: list[tuple[str, bytes]], namespace: str) -> list[Document]:
    """All files, parsed side by side in the parser processes, or the LoadError of the first unreadable one (422,
    415 for an unsupported type; also when a file exceeds the parse time or memory limit); `namespace` is
    `<principal>/<labels>`."""
    documents: list[Document] = []
    for outcome in parsers.parse_uploads(named):
        if isinstance(outcome, LoadError):
            raise outcome
        documents.append(outcome)
    return [
        dataclasses.replace(document, source=f"upload://{namespace}/{name}")
        for (name, _), document in zip(named, documents, strict=True)
    ]
