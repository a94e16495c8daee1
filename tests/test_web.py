"""The web page at `/` and the endpoints it uses, against a real `rag serve` (uvicorn on 127.0.0.1, real models).

The HTTP tests pin down headers, the passage/page/original endpoints, proxy sign-in and originals; the browser tests
drive Debian's Chromium with Playwright through what a person does: sign in, ask, open a citation, manage documents,
hit bad input, and they check that no request leaves for another host and that axe-core finds no serious
accessibility violation. `RAG_WEB_SCREENSHOTS=docs/screenshots` saves a PNG of each page there.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from .server_kit import RESTRICTED, SECRET_FILES, SECRETS, build_index, start
from .test_load import make_pdf

pytestmark = pytest.mark.integration

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
        server={"queue_size": 2, "max_upload_mb": 1, "max_request_kb": 64, "keys_file": home / "keys.json",
                "proxy_auth": PROXY},
        audit={"path": home / "audit.jsonl"},
    )
    pipeline = Pipeline(settings, embedder=embedder)
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
    # who looked at which passage is in the audit trail, refusals included
    from rag.audit import audit_path, verify

    records = [json.loads(line) for line in audit_path(web.settings).read_text().splitlines()]
    views = [r for r in records if r["endpoint"] == "/v1/passages" and r["principal"] == "public"]
    assert [r["status"] for r in views] == [200, 404, 404]
    assert views[0]["passages"] == [{"chunk_id": hit["chunk_id"], "doc_id": hit["doc_id"],
                                     "content_hash": hit["content_hash"]}]
    assert [r["status"] for r in records if r["principal"] == "public" and "/v1/documents/{doc_id}" in r["endpoint"]
            ] == [404, 404]
    assert verify(audit_path(web.settings)).ok


def test_pdf_page_image_marks_the_cited_passage_and_the_original_downloads(web):
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
            assert _marked_pixels(plain.content) == 0 and _marked_pixels(marked.content) > 500
            assert admin.get(f"/v1/documents/{doc['doc_id']}/pages/3").status_code == 400
            original = admin.get(f"/v1/documents/{doc['doc_id']}/original")
            assert original.content == PDF and PDF_NAME in original.headers["content-disposition"]
            assert admin.post("/v1/documents", files={"files": (PDF_NAME, PDF)}, data={"labels": "public"}).json()[
                "unchanged"] == [doc["doc_id"]]
        finally:
            assert admin.delete(f"/v1/documents/{doc['doc_id']}").status_code == 200
        assert not kept.exists()  # nothing of a deleted upload stays on disk
        assert admin.get(f"/v1/documents/{doc['doc_id']}/original").status_code == 404


def _marked_pixels(png: bytes) -> int:
    """Pixels of the page image in the marks' yellow-to-orange (the page itself is black on white)."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red, blue = rgb[..., 0], rgb[..., 2]
    return int(((red > 200) & (blue < 180) & (red - blue > 60)).sum())


# ------------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium driven by Playwright (its own browser download is never used)."""
    missing = "" if Path(CHROMIUM).exists() else "chromium is not installed (apt-get install chromium; .ci/run does it)"
    try:
        from playwright import sync_api
    except ImportError:
        missing = "playwright is not installed (the test extra)"
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)  # CI installs both: missing is a failure
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        yield browser
        browser.close()


class Tab:
    """A browser tab of its own (fresh session storage) that logs every request and every API response body."""

    def __init__(self, browser, base_url: str, locale: str = "en-GB", headers: dict | None = None):
        self.base_url = base_url
        self.context = browser.new_context(locale=locale, extra_http_headers=headers or {}, accept_downloads=True,
                                           viewport={"width": 1280, "height": 860})
        self.context.set_default_timeout(60_000)
        self.requests: list[str] = []
        self.bodies: list[str] = []
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("response", self._keep_body)
        self.page.on("dialog", lambda dialog: dialog.accept())  # "delete for everyone?"

    def _keep_body(self, response) -> None:
        if "/v1/" in response.url and "image/png" not in response.headers.get("content-type", ""):
            try:
                self.bodies.append(response.text())
            except Exception:  # noqa: BLE001 - a stream the page cancelled has no body to read
                pass

    def open(self, path: str = "/"):
        self.page.goto(self.base_url + path)
        return self.page

    def sign_in(self, key: str) -> None:
        page = self.page
        page.locator("#api-key").wait_for()
        page.keyboard.type(key)  # the field has the focus
        page.keyboard.press("Enter")
        page.locator("#who").wait_for()

    def ask(self, question: str, turns: int) -> None:
        """Type the question, send it with Enter, wait until the `turns`-th verified answer is shown."""
        self.page.fill("#question", question)
        self.page.press("#question", "Enter")
        self.page.locator(".turn .answer").nth(turns - 1).wait_for()

    def other_hosts(self) -> list[str]:
        return [url for url in self.requests if not url.startswith((self.base_url + "/", "blob:" + self.base_url))]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(chromium):
    """`tab(base_url, ...)` opens tabs; each must have talked to its server only."""
    opened: list[Tab] = []

    def open_tab(base_url: str, **options) -> Tab:
        opened.append(Tab(chromium, base_url, **options))
        return opened[-1]

    yield open_tab
    for each in opened:
        assert each.requests and each.other_hosts() == []
        each.close()


def axe_violations(page) -> list[dict]:
    """Serious and critical accessibility violations axe-core finds in the page as it is now."""
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated by the driver, not loaded by the page: the CSP stays as served
    found = page.evaluate("async () => (await axe.run(document)).violations.map("
                          "v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def screenshot(page, name: str) -> None:
    folder = os.environ.get("RAG_WEB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def test_browser_keyboard_sign_in_stream_verified_answer_citation_abstention_export(web, tab):
    browser = tab(web.base_url)
    page = browser.open()
    page.locator("#api-key").wait_for()
    assert axe_violations(page) == []
    screenshot(page, "sign-in")
    browser.sign_in(web.keys["public"])
    page.evaluate("""() => { window.drafts = [];
        new MutationObserver(() => document.querySelectorAll('.provisional').forEach(d => drafts.push(d.textContent)))
            .observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});
    }""")
    browser.ask(ANSWERABLE, turns=1)
    drafts = [d for d in page.evaluate("window.drafts") if d and d != "Searching the documents…"]
    assert drafts, "no streamed token was shown before the verified answer"
    assert page.locator(".provisional").count() == 0  # the verified answer replaced the draft
    first = page.locator(".turn").nth(0)
    if first.locator(".abstained").count() == 0:
        assert first.locator(".answer > p a.cite").count() >= 1
    else:  # the documents answer it: an abstention here means verification removed what the model wrote
        first.locator("details.removed summary").click()
        assert "not supported by the cited passage" in first.locator("details.removed li").first.inner_text()
    # keyboard only: Tab to the first citation, Enter opens the source, Escape closes it
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('cite')"):
            break
    page.keyboard.press("Enter")
    page.locator("#source-text mark.passage").wait_for()
    assert page.locator("#source").evaluate("d => d.open") and page.locator("#source-title").inner_text()
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    assert not page.locator("#source").evaluate("d => d.open")
    # a follow-up keeps the conversation: the previous question travels as history
    with page.expect_request("**/v1/ask") as sent:
        browser.ask(UNANSWERABLE, turns=2)
    assert sent.value.post_data_json["history"] == [ANSWERABLE]
    second = page.locator(".turn").nth(1)
    assert second.locator(".abstained").count() == 1 and second.locator(".sources li").count() >= 1
    assert "do not answer" in second.inner_text()
    with page.expect_download() as download:
        first.get_by_role("button", name="Download as Markdown").click()
    markdown = Path(download.value.path()).read_text()
    assert markdown.startswith(f"**{ANSWERABLE}**") and re.search(r"^1\. .+\(remote-work", markdown, re.M)
    assert axe_violations(page) == []
    screenshot(page, "ask")
    page.get_by_role("button", name="Sign out").click()  # the next person at this browser finds nothing
    assert page.locator("#api-key").is_visible() and page.locator(".turn").count() == 0
    assert page.evaluate("() => sessionStorage.length") == 0


def test_browser_documents_upload_pdf_page_image_filter_delete(web, tab):
    browser = tab(web.base_url)
    page = browser.open("/#documents")
    browser.sign_in(web.keys["public-admin"])
    page.goto(f"{web.base_url}/#documents")
    page.locator("#documents-body tr").first.wait_for()
    too_big = {"name": "scan.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n" + b"0" * 1_200_000}
    odd = {"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n" + bytes(300)}
    pdf = {"name": PDF_NAME, "mimeType": "application/pdf", "buffer": PDF}
    page.set_input_files("#files", files=[pdf, too_big, odd])
    rows = page.locator("#upload-results li")
    rows.nth(2).locator(".failed").wait_for()
    results = [rows.nth(i).inner_text() for i in range(3)]
    assert "added" in results[0]
    assert "larger than the server accepts" in results[1] and "cannot be read" in results[2]
    page.set_input_files("#files", files=[pdf])  # the same file again changes nothing
    rows.nth(3).locator(".ok").wait_for()
    assert "unchanged" in rows.nth(3).inner_text()
    page.evaluate("""() => {  // what a file dropped from the desktop delivers
        const data = new DataTransfer();
        data.items.add(new File(["Canteen hours\\n\\nThe canteen opens at 11:30 on working days.\\n"], "canteen.txt",
                                {type: "text/plain"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }""")
    rows.nth(4).locator(".ok").wait_for()
    assert "canteen.txt" in rows.nth(4).inner_text() and "added" in rows.nth(4).inner_text()
    page.fill("#filter", "archive")
    assert page.locator("#documents-body tr").count() == 1
    assert "Archive retention rules" in page.locator("#documents-body").inner_text()
    assert axe_violations(page) == []
    screenshot(page, "documents")
    # the PDF cited: its page is shown with the passage marked
    page.goto(f"{web.base_url}/#ask")
    page.check("#mode-quote")
    browser.ask(PDF_QUESTION, turns=1)
    screenshot(page, "answer-quote")
    page.locator(".turn .answer a.cite").first.click()
    figure = page.locator("#source-figure img")
    figure.wait_for()
    assert figure.evaluate("img => img.complete && img.naturalWidth > 500")
    assert "forty-two years" in page.locator("#source-text mark").first.inner_text()
    with page.expect_download() as download:
        page.locator("#source-download").click()
    assert Path(download.value.path()).read_bytes() == PDF and download.value.suggested_filename == PDF_NAME
    assert axe_violations(page) == []
    screenshot(page, "source-pdf")
    page.keyboard.press("Escape")
    # delete, and it is gone
    page.goto(f"{web.base_url}/#documents")
    page.fill("#filter", "archive")
    page.get_by_role("button", name="Delete Archive retention rules").click()
    page.locator("#documents-empty").wait_for()
    assert all(d.title != "Archive retention rules" for d in web.pipeline.documents())


@pytest.mark.parametrize("who", ["public key", "proxy staff", "proxy defence"])
def test_browser_shows_no_trace_of_restricted_documents(web, tab, who):
    """Only the cleared person (the control: the probe can see what it looks for) meets the planted documents."""
    cleared = who == "proxy defence"
    proxy = {"X-Forwarded-User": "erin", "X-Forwarded-Groups": who.split()[1]} if who.startswith("proxy") else None
    browser = tab(web.base_url, headers=proxy, **({"locale": "de-DE"} if who == "proxy staff" else {}))
    page = browser.open("/#documents")
    if who == "proxy staff":
        page.set_viewport_size({"width": 768, "height": 1024})  # a tablet
    if proxy is None:
        browser.sign_in(web.keys["public"])
        page.goto(f"{web.base_url}/#documents")
    page.locator("#documents-body tr").first.wait_for()
    assert page.locator("#who-name").inner_text() == ("erin" if proxy else "public")
    assert page.locator("#sign-out").is_visible() == (proxy is None)  # the proxy signs people in and out
    if who == "proxy staff":
        assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")  # nothing off-screen
        screenshot(page, "documents-tablet-de")
    page.fill("#filter", "defence")
    assert page.locator("#documents-body tr").count() == (2 if cleared else 0)
    page.goto(f"{web.base_url}/#ask")
    page.check("#mode-quote")
    browser.ask("What is the codeword for remote access of defence staff? ZEBRA-7731", turns=1)
    page.locator(".turn a.cite").first.click()
    page.locator("#source-text mark").first.wait_for()
    seen = page.content() + "".join(browser.bodies).replace("ZEBRA-7731", "")  # the question's echo is no leak
    found = [needle for needle in _needles(web) if needle.lower() in seen.lower()]
    assert bool(found) == cleared, found


def test_browser_bad_input_shows_a_message_and_keeps_what_was_typed(web, second_server, tab):
    from rag.auth import KeyStore, keys_path

    store = KeyStore(keys_path(web.settings))
    key, record = store.create("short-lived", ["public"])
    browser = tab(web.base_url, locale="de-DE")
    page = browser.open()
    page.locator("#api-key").wait_for()  # shown once the texts are loaded and the server said who we are (nobody)
    assert page.locator("#signin-title").inner_text() == "Anmelden"
    page.select_option("#language", "en")
    browser.sign_in(key)
    page.press("#question", "Enter")
    assert page.locator("#ask-error").inner_text() == "Type a question first."
    long_question = "Why? " * 500
    page.fill("#question", long_question)
    page.press("#question", "Enter")
    assert "the limit is 2000" in page.locator("#ask-error").inner_text()
    assert page.input_value("#question") == long_question
    store.revoke(record.key_id)  # the key expires while the person types
    page.fill("#question", ANSWERABLE)
    page.press("#question", "Enter")
    page.locator("#signin-error").wait_for()
    assert "no longer valid" in page.locator("#signin-error").inner_text()
    browser.sign_in(web.keys["public"])
    assert page.input_value("#question") == ANSWERABLE
    # the server stops: a clear message, and the question is still there
    other, stop = second_server
    elsewhere = tab(other.base_url)
    page = elsewhere.open()
    elsewhere.sign_in(other.keys["public"])
    page.select_option("#language", "fr")
    assert page.locator("#ask-title").inner_text() == "Interroger vos documents" and axe_violations(page) == []
    stop()
    page.fill("#question", ANSWERABLE)
    page.press("#question", "Enter")
    page.locator("#ask-error").wait_for()
    assert "serveur est injoignable" in page.locator("#ask-error").inner_text()
    assert page.input_value("#question") == ANSWERABLE
    screenshot(page, "server-stopped")
