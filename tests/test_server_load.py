"""The service under a bounded burst of mixed requests, and with another process writing the index."""

from __future__ import annotations

import asyncio
import collections

import pytest

pytestmark = pytest.mark.integration

SEARCHES, ASKS, UPLOADS = 30, 10, 10


async def _burst(service) -> list[tuple[str, int, dict]]:
    async with service.async_client("public") as reader, service.async_client("public-admin") as admin:
        async def search(i):
            return "search", await reader.post("/v1/search", json={"query": f"travel expenses rule {i}", "k": 3})

        async def ask(i):
            return "ask", await reader.post("/v1/ask", json={"question": f"How long are applications kept? ({i})"})

        async def upload(i):
            text = f"Load test memo {i}. The code of meeting room {i} is ROOM-{i:04d}.".encode()
            return "upload", await admin.post("/v1/documents", files={"files": (f"memo-{i}.txt", text)},
                                              data={"labels": "public"})

        jobs = [search(i) for i in range(SEARCHES)] + [ask(i) for i in range(ASKS)] + [upload(i) for i in range(UPLOADS)]
        done = await asyncio.gather(*jobs)
    return [(kind, r.status_code, r.json()) for kind, r in done]


def test_fifty_concurrent_mixed_requests(service):
    from rag.pipeline import Pipeline

    results = asyncio.run(_burst(service))
    statuses = collections.Counter((kind, status) for kind, status, _ in results)
    print(f"burst of {len(results)}: {dict(statuses)}")
    assert all(status < 500 for _, status, _ in results), statuses
    assert statuses[("search", 200)] == SEARCHES
    assert statuses[("ask", 200)] + statuses[("ask", 429)] == ASKS and statuses[("ask", 200)] >= 1
    assert statuses[("upload", 201)] == UPLOADS, "an upload was lost or refused"

    uploaded = {body["documents"][0]["doc_id"] for kind, _, body in results if kind == "upload"}
    with service.client("public-admin") as admin:
        listed = {d["doc_id"] for d in admin.get("/v1/documents").json()["documents"]}
        assert uploaded <= listed
        hit = admin.post("/v1/search", json={"query": "ROOM-0007", "mode": "bm25", "k": 1}).json()["hits"][0]
        assert "ROOM-0007" in hit["text"]
        for doc_id in uploaded:
            assert admin.delete(f"/v1/documents/{doc_id}").status_code == 200

    # the index as a new process finds it on disk
    reopened = Pipeline(service.settings, embedder=service.pipeline.embedder)
    try:
        stats = reopened.stats()
    finally:
        reopened.close()
    assert stats["chunks"] == stats["vectors"] == stats["bm25_rows"] > 0
    assert stats["documents"] == len(service.pipeline.documents())


def test_upload_while_another_process_writes_is_409_and_stores_nothing(service):
    from rag.store.embedded import IndexStore

    other = IndexStore.open(service.settings.index_dir, service.pipeline.store.manifest)  # like `rag ingest`
    before = service.pipeline.stats()["documents"]
    try:
        with other.writer(), service.client("public-admin") as admin:
            refused = admin.post("/v1/documents", files={"files": ("late.txt", b"Arrived while locked.")})
    finally:
        other.close()
    assert refused.status_code == 409 and int(refused.headers["retry-after"]) > 0
    message = refused.json()["error"]["message"]
    assert "another process" in message and str(service.settings.index_dir) not in message  # no server paths
    assert service.pipeline.stats()["documents"] == before
