"""The web page at `/` and the endpoints it uses, against a real `rag serve` (uvicorn on 127.0.0.1, real models).

The HTTP tests pin down headers, the passage/page/original endpoints, proxy sign-in and originals; the browser tests
drive Debian's Chromium with Playwright through what a person does: sign in, ask, open a citation, manage documents,
hit bad input, and they check that no request leaves for another host and that axe-core finds no serious
accessibility violation. `RAG_WEB_SCREENSHOTS=docs/screenshots` saves a PNG of each page there.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from .server_kit import RESTRICTED, SECRET_FILES, SECRETS, build_index, start
from .test_load import make_pdf

pytestmark = pytest.mark.integration

STATIC = Path(__file__).resolve().parents[1] / "rag" / "server" / "static"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TITLES = ["Remote work for defence staff", "Travel expenses for defence missions"]
PDF_NAME = "archive-retention.pdf"
PDF = make_pdf([
    ["Archive retention rules", "Records of the archive office are kept for forty-two years in the basement.",
     "After that period the records go to the national library."],
    ["Access requests", "Requests for access to archived records are answered within thirty days."],
])
ANSWERABLE = "How many days per week may staff work remotely?"
PDF_QUESTION = "How long are records of the archive office kept?"
UNANSWERABLE = "What is the capital of Mongolia?"
PROXY = {"trusted_proxies": ["127.0.0.1"], "group_labels": {"staff": ["public"], "defence": ["public", RESTRICTED]},
         "admin_groups": ["defence"]}


@pytest.fixture(scope="module")
def web(make_settings, embedder, tmp_path_factory):
    """A server of its own (uploads here do not disturb the other server tests): the sample corpus and planted
    documents, proxy sign-in trusted from 127.0.0.1, abstention on weak evidence, 1 MB uploads."""
    from rag.pipeline import Pipeline

    home = tmp_path_factory.mktemp("web")
    settings = make_settings(
        llm={"n_threads": 1, "max_tokens": 32}, answer={"min_retrieval_score": 0.3},
        server={"queue_size": 2, "max_upload_mb": 1, "max_request_kb": 64, "keys_file": home / "keys.json", "proxy_auth": PROXY},
        audit={"path": home / "audit.jsonl"},
    )
    pipeline = Pipeline(settings)
    pipeline.__dict__["embedder"] = embedder
    running, stop = start(settings, pipeline, build_index(pipeline))
    yield running
    stop()
    pipeline.close()


@pytest.fixture(scope="module")
def second_server(web):
    """Another server over the same index whose only trusted proxy is elsewhere (192.0.2.1); stoppable by a test."""
    settings = web.settings.model_copy(deep=True)
    settings.server.proxy_auth.trusted_proxies = ["192.0.2.1"]
    settings.server.keys_file = web.settings.server.keys_file.with_name("second-keys.json")
    running, stop = start(settings, web.pipeline, web.secret_doc_ids)
    yield running, stop
    stop()


def _needles(service) -> list[str]:
    return [*SECRETS, *service.secret_doc_ids, *TITLES, *SECRET_FILES]


# ------------------------------------------------------------------------------------------------ HTTP
def test_every_response_carries_the_security_headers(web):
    with web.client(None) as anonymous, web.client("public") as reader:
        responses = [anonymous.get("/"), anonymous.get("/static/app.js"), anonymous.get("/static/locales/fr.json"),
                     anonymous.get("/static/nothing.js"), anonymous.get("/v1/me"), anonymous.get("/healthz"),
                     reader.post("/v1/ask", json={"question": "x" * 70_000}), reader.get("/v1/me")]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 401, 200, 413, 200]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    assert responses[0].headers["content-type"].startswith("text/html")
    assert responses[1].headers["content-type"].startswith("text/javascript")


def test_page_files_name_no_other_host_and_hold_no_inline_code():
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css", "en.json", "fr.json", "de.json"}
    for path in files:
        text = path.read_text()
        urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text) if u != "http://www.w3.org"]
        assert urls == [], (path.name, urls)  # the one exception is the SVG namespace name, never fetched
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son\w+=", html) == []  # the CSP would block them


def test_locales_have_the_same_keys():
    import json

    keys = {lang: set(json.loads((STATIC / "locales" / f"{lang}.json").read_text())) for lang in ("en", "fr", "de")}
    assert keys["en"] == keys["fr"] == keys["de"]
    used = set(re.findall(r'data-i18n(?:-aria)?="([\w.]+)"', (STATIC / "index.html").read_text()))
    used |= {m for p in STATIC.glob("*.js") for m in re.findall(r'\bt\("([\w.]+)"', p.read_text())}
    assert used <= keys["en"], used - keys["en"]


def test_me_names_the_caller_its_labels_and_limits(web):
    with web.client("public") as reader, web.client("defence") as cleared:
        assert reader.get("/v1/me").json() == {
            "principal": "public", "labels": ["public"], "admin": False, "default_labels": ["public"],
            "max_upload_mb": 1, "max_question_chars": 2000}
        assert cleared.get("/v1/me").json()["labels"] == ["public", RESTRICTED]


def test_proxy_identity_is_believed_only_from_the_trusted_proxy(web, second_server):
    other, _ = second_server
    staff = {"X-Forwarded-User": "erin@example.org", "X-Forwarded-Groups": "staff, unknown-group"}
    defence = {"X-Forwarded-User": "dan", "X-Forwarded-Groups": "defence"}
    with httpx.Client(base_url=web.base_url) as client:
        me = client.get("/v1/me", headers=staff).json()
        assert me["principal"] == "erin@example.org" and me["labels"] == ["public"] and not me["admin"]
        listed = {d["doc_id"] for d in client.get("/v1/documents", headers=staff).json()["documents"]}
        assert listed and not listed & set(web.secret_doc_ids)
        assert set(web.secret_doc_ids) <= {d["doc_id"] for d in client.get("/v1/documents", headers=defence).json()[
            "documents"]}
        nobody = client.get("/v1/me", headers={"X-Forwarded-User": "zoe"}).json()
        assert nobody["labels"] == [] and client.get("/v1/documents", headers={"X-Forwarded-User": "zoe"}).json() == {
            "documents": []}
        assert client.get("/v1/me", headers={"X-Forwarded-User": "bad name/.."}).status_code == 400
    with httpx.Client(base_url=other.base_url) as client:  # same headers, but 127.0.0.1 is not this server's proxy
        for headers in (staff, {"X-Forwarded-Groups": "defence"},
                        {**defence, "Authorization": f"Bearer {other.keys['defence']}"}):
            refused = client.get("/v1/documents", headers=headers)
            assert refused.status_code == 403 and "trusted_proxies" in refused.json()["error"]["message"]
        assert client.get("/v1/me", headers={"Authorization": f"Bearer {other.keys['public']}"}).status_code == 200


def test_passage_in_its_text_with_the_supporting_sentence(web):
    with web.client("public") as reader:
        hit = reader.post("/v1/search", json={"query": ANSWERABLE, "k": 1}).json()["hits"][0]
        sentence = "Staff may work remotely up to two days per week."
        context = reader.post("/v1/passages", json={"chunk_id": hit["chunk_id"], "sentence": sentence}).json()
        text, start = context["context"], context["context_start"]
        assert text[hit["start"] - start:hit["end"] - start] == hit["text"]
        assert len(text) > len(hit["text"]) or context["document"]["chars"] == len(hit["text"])
        span = context["sentence"]
        assert hit["start"] <= span["start"] < span["end"] <= hit["end"]
        assert "week" in text[span["start"] - start:span["end"] - start]
        assert context["document"]["doc_id"] == hit["doc_id"] and context["heading_path"] == hit["heading_path"]
        assert context["original"]  # ingested from examples/, the file is still there with the same sha256
    with web.client("defence") as cleared:
        secret = cleared.post("/v1/search", json={"query": "ZEBRA-7731", "mode": "bm25", "k": 1}).json()["hits"][0]
        assert cleared.post("/v1/passages", json={"chunk_id": secret["chunk_id"]}).status_code == 200
    with web.client("public") as reader:
        hidden = reader.post("/v1/passages", json={"chunk_id": secret["chunk_id"]})
        missing = reader.post("/v1/passages", json={"chunk_id": 10**9})
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(str(secret["chunk_id"]), "N") == missing.text.replace(str(10**9), "N")
        for path in (f"/v1/documents/{secret['doc_id']}/original", f"/v1/documents/{secret['doc_id']}/pages/1"):
            refused = reader.get(path)
            assert refused.status_code == 404 and not any(s in refused.text for s in SECRETS + tuple(TITLES))


def test_pdf_page_image_marks_the_cited_passage_and_the_original_downloads(web):
    from PIL import Image

    with web.client("public-admin") as admin:
        doc = admin.post("/v1/documents", files={"files": (PDF_NAME, PDF)}, data={"labels": "public"}).json()[
            "documents"][0]
        try:
            kept = web.settings.index_dir / "originals" / doc["sha256"]
            assert kept.read_bytes() == PDF and kept.stat().st_mode & 0o777 == 0o600
            hit = admin.post("/v1/search", json={"query": PDF_QUESTION, "mode": "bm25", "k": 1}).json()["hits"][0]
            assert hit["doc_id"] == doc["doc_id"] and hit["page"] == 1
            context = admin.post("/v1/passages", json={"chunk_id": hit["chunk_id"],
                                                       "sentence": "Records are kept for forty-two years."}).json()
            span = context["sentence"]
            base = f"/v1/documents/{doc['doc_id']}/pages/1"
            plain = admin.get(base)
            marked = admin.get(base, params={"chunk_id": hit["chunk_id"], "start": span["start"], "end": span["end"]})
            assert plain.headers["content-type"] == marked.headers["content-type"] == "image/png"
            yellow, orange = (_pixels(Image.open(io.BytesIO(r.content)), _is_marked) for r in (plain, marked))
            assert yellow == 0 and orange > 500
            assert admin.get(f"/v1/documents/{doc['doc_id']}/pages/3").status_code == 400
            original = admin.get(f"/v1/documents/{doc['doc_id']}/original")
            assert original.content == PDF and PDF_NAME in original.headers["content-disposition"]
            assert admin.post("/v1/documents", files={"files": (PDF_NAME, PDF)}, data={"labels": "public"}).json()[
                "unchanged"] == [doc["doc_id"]]
        finally:
            assert admin.delete(f"/v1/documents/{doc['doc_id']}").status_code == 200
        assert not kept.exists()  # nothing of a deleted upload stays on disk
        assert admin.get(f"/v1/documents/{doc['doc_id']}/original").status_code == 404


def _is_marked(pixel) -> bool:
    red, green, blue = pixel[:3]
    return red > 200 and blue < 180 and red - blue > 60


def _pixels(image, predicate) -> int:
    return sum(1 for pixel in image.convert("RGB").getdata() if predicate(pixel))
