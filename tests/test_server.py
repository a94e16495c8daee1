"""The HTTP service as clients use it: a real uvicorn server, the real models, httpx, SSE parsing, the openai package."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import zipfile

import httpx
import pytest

from rag.server.openai_schemas import ChatCompletionResponse
from rag.server.schemas import AskResponse, SearchResponse, SourcePublic

from .conftest import ROOT
from .server_kit import ask_stream

pytestmark = pytest.mark.integration

QUESTION = "How many days per week may staff work remotely?"


def test_health_ready_and_documented_api(service):
    assert httpx.get(f"{service.base_url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{service.base_url}/readyz").json()["status"] == "ready"
    assert httpx.get(f"{service.base_url}/docs").status_code == 200
    schemas = httpx.get(f"{service.base_url}/openapi.json").json()["components"]["schemas"]
    undocumented = [f"{name}.{field}" for name, schema in schemas.items()
                    for field, spec in schema.get("properties", {}).items() if "description" not in spec]
    assert not undocumented


def test_keys_missing_wrong_revoked_and_admin_rights(service):
    from rag.auth import KeyStore, keys_path

    anonymous = httpx.post(f"{service.base_url}/v1/search", json={"query": "remote work"})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["type"] == "authentication_error"
    forged = service.keys["public"][:-4] + "AAAA"
    assert httpx.get(f"{service.base_url}/v1/documents", headers={"Authorization": f"Bearer {forged}"}).status_code == 401

    store = KeyStore(keys_path(service.settings))
    key, record = store.create("temp", ["public"])
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{service.base_url}/v1/documents", headers=headers).status_code == 200
    store.revoke(record.key_id)
    assert httpx.get(f"{service.base_url}/v1/documents", headers=headers).status_code == 401

    with service.client("public") as reader:
        upload = reader.post("/v1/documents", files={"files": ("a.txt", b"some text")})
        assert upload.status_code == 403 and "admin" in upload.json()["error"]["message"]
        assert reader.delete(f"/v1/documents/{service.secret_doc_ids[0]}").status_code == 403


def test_search_ranks_passages_with_provenance(service):
    with service.client("public") as client:
        response = client.post("/v1/search", json={"query": "remote work days per week", "k": 3})
    assert response.status_code == 200
    body = SearchResponse.model_validate(response.json())
    assert len(body.hits) == 3 and body.hits[0].title.startswith("Remote work")
    assert [h.score for h in body.hits] == sorted((h.score for h in body.hits), reverse=True)
    assert all(h.content_hash and h.doc_id and h.end > h.start for h in body.hits)


def test_ask_returns_the_answer_object(service):
    with service.client("public") as client:
        response = client.post("/v1/ask", json={"question": QUESTION})
    assert response.status_code == 200
    answer = AskResponse.model_validate(response.json())  # the documented schema is what is sent ...
    assert set(response.json()) == set(AskResponse.model_fields)  # ... field for field
    assert set(response.json()["sources"][0]) == set(SourcePublic.model_fields)
    assert answer.answer and answer.sources and answer.timings.total_ms > 0
    cited = {n for s in answer.sentences for n in s.citations}
    assert cited <= {s.n for s in answer.sources}
    assert answer.abstained or cited


def test_ask_stream_sends_tokens_then_citations_sources_and_the_answer(service):
    with service.client("public") as client:
        events = ask_stream(client, QUESTION)
    names = [name for name, _ in events]
    assert names[-3:] == ["citations", "sources", "answer"]
    assert set(names[:-3]) <= {"token"}
    final = AskResponse.model_validate(events[-1][1])
    assert events[-2][1]["sources"] == [s.model_dump() for s in final.sources]
    assert names.count("token") == final.timings.generated_tokens


def test_openai_client_works_unchanged(service):
    from openai import OpenAI

    client = OpenAI(base_url=f"{service.base_url}/v1", api_key=service.keys["public"], max_retries=0)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": QUESTION}])
    content = reply.choices[0].message.content
    extra = ChatCompletionResponse.model_validate(reply.model_dump())
    assert extra.sources and ("Sources:" in content or "Closest passages:" in content)
    assert all(f"[{s.n}]" in content for s in extra.sources)

    chunks = list(client.chat.completions.create(model=model, stream=True, messages=[
        {"role": "user", "content": QUESTION}], stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = next(c for c in reversed(chunks) if c.choices)
    assert last.choices[0].finish_reason == "stop" and last.model_extra["sources"]
    assert chunks[-1].usage.total_tokens >= chunks[-1].usage.completion_tokens  # include_usage: a last usage chunk
    assert f"[{last.model_extra['sources'][0]['n']}]" in streamed

    with pytest.raises(Exception) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert getattr(unknown.value, "status_code", None) == 404


def test_upload_list_get_delete(service):
    files = [("files", ("notes.md", b"# Parking\n\nVisitors park on level -2 of the Kirchberg garage.")),
             ("files", ("rota.txt", b"The helpdesk rota changes every Monday at 8:00."))]
    with service.client("public-admin") as admin:
        uploaded = admin.post("/v1/documents", files=files, data={"labels": "public"})
        assert uploaded.status_code == 201, uploaded.text
        body = uploaded.json()
        assert len(body["added"]) == 2 and body["chunks"] >= 2
        ids = [d["doc_id"] for d in body["documents"]]
        assert all(d["source"].startswith("upload://public-admin/public/") and d["labels"] == ["public"]
                   for d in body["documents"])
        again = admin.post("/v1/documents", files=files, data={"labels": "public"}).json()
        assert sorted(again["unchanged"]) == sorted(ids)

        listed = {d["doc_id"] for d in admin.get("/v1/documents").json()["documents"]}
        assert set(ids) <= listed
        assert admin.get(f"/v1/documents/{ids[0]}").json()["title"] == "Parking"
        hit = admin.post("/v1/search", json={"query": "where do visitors park", "k": 1}).json()["hits"][0]
        assert hit["doc_id"] == ids[0]
        for doc_id in ids:
            assert admin.delete(f"/v1/documents/{doc_id}").json() == {"deleted": doc_id}
        assert admin.get(f"/v1/documents/{ids[0]}").status_code == 404
        hits = admin.post("/v1/search", json={"query": "where do visitors park", "k": 5}).json()["hits"]
        assert all(h["doc_id"] not in ids for h in hits)


def _docx_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/'
                         'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        archive.writestr("word/document.xml", b"<w:document>" + b" " * (20 * 1024 * 1024) + b"</w:document>")
    return buffer.getvalue()


def test_bad_input_is_a_clear_4xx_and_stores_nothing(service):
    before = service.pipeline.stats()
    corrupt_pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog"
    cases = [  # (method, path, request options, status, words the message must contain)
        ("POST", "/v1/ask", {"content": b'{"question": "x"', "headers": {"content-type": "application/json"}},
         400, "not valid JSON"),
        ("POST", "/v1/ask", {"json": {"question": "   "}}, 422, "question"),
        ("POST", "/v1/ask", {"json": {}}, 422, "question: Field required"),
        ("POST", "/v1/ask", {"json": {"question": "x" * 3000}}, 400, "max_question_chars"),
        ("POST", "/v1/ask", {"json": {"question": "x" * 100_000}}, 413, "limit"),
        ("POST", "/v1/ask", {"json": {"question": QUESTION, "colour": "red"}}, 422, "colour"),
        ("POST", "/v1/search", {"json": {"query": "remote", "k": 0}}, 422, "k"),
        ("POST", "/v1/documents", {"files": {"files": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))}},
         415, "unsupported"),
        ("POST", "/v1/documents", {"files": {"files": ("report.pdf", corrupt_pdf)}}, 422, "report.pdf"),
        ("POST", "/v1/documents", {"files": [("files", ("fine.txt", b"A readable memo.")),
                                             ("files", ("broken.pdf", corrupt_pdf))]}, 422, "broken.pdf"),
        ("POST", "/v1/documents", {"files": {"files": ("../report.txt", b"text")}}, 400, "bare file name"),
        ("POST", "/v1/documents", {"files": {"files": ("a/b.txt", b"text")}}, 400, "bare file name"),
        ("POST", "/v1/documents", {"files": {"files": ("bomb.docx", _docx_bomb())}}, 422, "bomb.docx"),
        ("POST", "/v1/documents", {"files": {"files": ("big.txt", b"word " * 300_000)}}, 413, "limit"),
        ("POST", "/v1/documents", {"files": [("files", ("a.txt", b"one")), ("files", ("a.txt", b"two"))]},
         400, "twice"),
        ("POST", "/v1/documents", {"files": {"files": ("ok.txt", b"fine text")}, "data": {"labels": "secret"}},
         403, "secret"),
        ("POST", "/v1/documents", {"files": {"files": ("ok.txt", b"fine text")}, "data": {"labels": "bad label"}},
         400, "label"),
    ]
    with service.client("public-admin") as client:
        for method, path, options, status, words in cases:
            response = client.request(method, path, **options)
            error = response.json()["error"]
            assert (response.status_code, words in error["message"]) == (status, True), (path, options.keys(), error)
            assert error["code"] == status
    after = service.pipeline.stats()
    assert (after["documents"], after["chunks"], after["generation"]) == (
        before["documents"], before["chunks"], before["generation"])


async def _ask(client: httpx.AsyncClient, question: str) -> httpx.Response:
    return await client.post("/v1/ask", json={"question": question})


def test_full_queue_is_429_with_retry_after_while_search_is_served(service):
    async def burst():
        async with service.async_client("public") as client:
            asks = [asyncio.create_task(_ask(client, f"{QUESTION} ({i})")) for i in range(8)]
            await asyncio.sleep(0.5)
            searched = await client.post("/v1/search", json={"query": "travel expenses"})
            search_done = [task.done() for task in asks].count(False)
            return await asyncio.gather(*asks), searched, search_done

    answers, searched, still_generating = asyncio.run(burst())
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 1
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1 and "queue" in refused.json()["error"]["message"]
    assert searched.status_code == 200 and still_generating >= 1, "search waited for the language model"


def test_client_disconnect_frees_the_model(service):
    cancelled = service.metric("rag_generation_cancelled_total")
    with service.client("public") as client:
        with client.stream("POST", "/v1/ask", json={"question": QUESTION, "stream": True}) as response:
            next(response.iter_lines())  # the first event has arrived: the model is writing; hang up
    deadline = time.monotonic() + 30
    while service.metric("rag_generation_queue_depth") > 0 or service.metric("rag_generation_cancelled_total") == cancelled:
        assert time.monotonic() < deadline, "the generation went on after the client left"
        time.sleep(0.1)
    with service.client("public") as client:
        assert client.post("/v1/ask", json={"question": QUESTION}).status_code == 200


def _metrics(service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{service.base_url}/metrics").text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_each_request_its_retrieval_and_its_tokens(service):
    """What this test's own requests moved: every family is registered at start-up and the service is shared, so a
    name being present proves nothing. A request is counted once its last byte is sent, so the counts are awaited."""
    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted(labels.items()))

    search = key("rag_http_requests_total", endpoint="/v1/search", method="POST", status="200")
    ask = key("rag_http_requests_total", endpoint="/v1/ask", method="POST", status="200")
    too_large = key("rag_http_requests_total", endpoint="/v1/ask", method="POST", status="413")
    before = _metrics(service)
    with service.client("public") as client:
        assert client.post("/v1/search", json={"query": "remote work"}).status_code == 200
        assert client.post("/v1/ask", json={"question": "x" * 100_000}).status_code == 413  # refused before routing
        events = ask_stream(client, QUESTION)
    deadline = time.monotonic() + 10
    while (after := _metrics(service))[ask] < before.get(ask, 0) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)

    def moved(name: str, **labels: str) -> float:
        return after.get(key(name, **labels), 0) - before.get(key(name, **labels), 0)

    assert after[search] - before.get(search, 0) == 1 and after[ask] - before.get(ask, 0) == 1
    assert after[too_large] - before.get(too_large, 0) == 1  # under its endpoint, not "unmatched"
    for endpoint, requests in (("/v1/search", 1), ("/v1/ask", 2)):  # the 413 is timed too; it retrieved nothing
        assert moved("rag_http_request_seconds_count", endpoint=endpoint) == requests
        assert moved("rag_retrieval_seconds_count", endpoint=endpoint) == 1
    assert moved("rag_http_request_seconds_sum", endpoint="/v1/ask") > moved("rag_retrieval_seconds_sum",
                                                                              endpoint="/v1/ask") > 0
    tokens = sum(1 for name, _ in events if name == "token")
    assert tokens > 0 and moved("rag_tokens_generated_total") == tokens  # one per streamed token
    assert after[key("rag_generation_queue_depth")] == 0  # the answer left the queue


def test_every_audited_request_is_in_a_verifiable_chain(service):
    from rag.audit import audit_path

    path = audit_path(service.settings)
    with service.client("public") as client:
        client.post("/v1/search", json={"query": "remote work"})
    chain = [json.loads(line) for line in path.read_text().splitlines()]
    records = [r for r in chain if r.get("type") != "repair"]  # tests/test_audit.py tears and repairs this log
    last = records[-1]
    assert last["endpoint"] == "/v1/search" and last["principal"] == "public" and last["status"] == 200
    assert last["passages"] and all(p["content_hash"] for p in last["passages"])
    assert "query" not in last and len(last["query_sha256"]) == 64  # audit.store_questions is off
    asks = [r for r in records if r["endpoint"] == "/v1/ask" and r["status"] == 200]
    assert asks and all(r["model"] is None or r["model"]["sha256"] for r in asks)
    assert all(len(r["answer_sha256"]) == 64 and "abstained" in r and "latency_ms" in r for r in asks)
    assert {r["status"] for r in records} >= {200, 201, 403, 422}
    verified = subprocess.run([sys.executable, "-m", "rag", "audit", "verify", str(path)], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
    assert verified.returncode == 0 and f"{len(chain)} records" in verified.stdout, verified.stderr
