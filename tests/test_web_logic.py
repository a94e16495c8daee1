"""Pure logic behind the web page, beside the end-to-end tests in tests/test_web.py: who a proxy's headers name,
where a cited text lies on a PDF page, which kept original belongs to a document; and the page's static files."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from rag.errors import AccessDeniedError, InputError
from rag.originals import Originals
from rag.pdf_page import locate
from rag.proxy_auth import is_trusted, proxy_principal
from rag.server.web import STATIC
from rag.settings import ProxyAuthSettings
from rag.store import DocumentRecord

PROXY = ProxyAuthSettings(trusted_proxies=["10.0.0.0/24", "::1"], group_labels={"staff": ["public"],
                          "defence": ["public", "restricted:defence"]}, admin_groups=["records"])


@pytest.mark.parametrize(("peer", "trusted"), [
    ("10.0.0.7", True), ("::1", True), ("10.0.1.7", False), ("127.0.0.1", False), (None, False), ("not-an-ip", False)])
def test_trusted_proxies_are_addresses_or_networks(peer, trusted):
    assert is_trusted(peer, PROXY.trusted_proxies) is trusted


def test_groups_become_labels_and_admin_rights():
    headers = {"X-Forwarded-User": "dan@example.org", "X-Forwarded-Groups": "staff, defence ,records,unknown"}
    person = proxy_principal(settings=PROXY, peer="10.0.0.5", headers=headers)
    assert (person.id, person.labels, person.admin, person.key_id) == (
        "dan@example.org", frozenset({"public", "restricted:defence"}), True, None)
    nobody = proxy_principal(settings=PROXY, peer="10.0.0.5", headers={"X-Forwarded-User": "zoe"})
    assert nobody.labels == frozenset() and not nobody.admin


def test_identity_headers_from_elsewhere_are_refused_and_absent_ones_defer_to_the_key():
    for headers in ({"X-Forwarded-User": "dan"}, {"X-Forwarded-Groups": "defence"}):
        with pytest.raises(AccessDeniedError, match="trusted_proxies"):
            proxy_principal(settings=PROXY, peer="192.0.2.1", headers=headers)
    assert proxy_principal(settings=PROXY, peer="10.0.0.5", headers={"Authorization": "Bearer x"}) is None
    off = ProxyAuthSettings()  # no trusted proxy: the feature is off and the headers mean nothing
    assert proxy_principal(settings=off, peer="192.0.2.1", headers={"X-Forwarded-User": "dan"}) is None
    with pytest.raises(InputError):
        proxy_principal(settings=PROXY, peer="10.0.0.5", headers={"X-Forwarded-User": "../etc"})
    with pytest.raises(ValueError, match="10.0.0.300"):
        ProxyAuthSettings(trusted_proxies=["10.0.0.300"])


def test_cited_text_is_located_across_line_breaks_hyphens_and_punctuation():
    page = "Art. 2.\r\nLes agents du Grand-\r\nDuché bénéficient d'un régime\r\nspécial. Page 1 sur 4"
    start, end = locate(page, "Les agents du Grand-Duché bénéficient d'un régime spécial.")
    assert page[start:end] == "Les agents du Grand-\r\nDuché bénéficient d'un régime\r\nspécial"
    assert locate(page, "Nothing of this is on the page") is None
    assert locate(page, "…") is None
    # the opening words moved (de-hyphenation joined them): the region starts at the first run that matches
    start, end = locate(page, "Intro words. Les agents du Grand Duché bénéficient")
    assert page[start:end].startswith("Les agents")


def test_originals_are_private_found_by_content_and_pruned(tmp_path):
    originals = Originals(tmp_path / "originals")
    data = b"%PDF-1.4 the file"
    sha = originals.put(data)
    assert originals.put(data) == sha == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "originals" / sha).stat().st_mode & 0o777 == 0o600
    record = DocumentRecord("d", "/uploads/alice/a.pdf", "A", "pdf", "en", sha, ("public",), 1, 10, 0.0)
    assert originals.read(record) == data
    on_disk = tmp_path / "b.txt"
    on_disk.write_bytes(b"ingested from a path")
    sha_on_disk = hashlib.sha256(b"ingested from a path").hexdigest()
    from_path = DocumentRecord("b", str(on_disk), "B", "text", "en", sha_on_disk, ("public",), None, 20, 0.0)
    assert originals.read(from_path) == b"ingested from a path"
    on_disk.write_bytes(b"changed since")  # a different file now: not the document's original any more
    assert originals.read(from_path) is None
    assert originals.prune(keep=lambda: {sha}) == 0 and originals.prune(keep=set) == 1
    assert originals.read(record) is None and list((tmp_path / "originals").glob("[!.]*")) == []


def test_a_prune_never_removes_the_files_of_an_upload_not_committed_yet(tmp_path):
    """Two writers on one folder (workers or replicas of one host, each with its own `Originals`): while one holds
    its upload's files until its commit, the other's prune, which does not see that upload's document yet, removes
    nothing; the next prune after the commit removes only what no document refers to."""
    uploader, deleter = Originals(tmp_path / "originals"), Originals(tmp_path / "originals")
    stale = deleter.put(b"the file of a deleted document")
    with uploader.kept([b"an upload being embedded"]) as (new,):
        assert deleter.prune(keep=set) == 0
        assert (tmp_path / "originals" / new).is_file() and (tmp_path / "originals" / stale).is_file()
    assert deleter.prune(keep=lambda: {new}) == 1
    assert [p.name for p in (tmp_path / "originals").glob("[!.]*")] == [new]


def test_security_headers_keep_a_policy_the_route_sets_itself():
    """An API reference page may need its own Content-Security-Policy; every other header is still added."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from rag.server.web import CONTENT_SECURITY_POLICY, SecurityHeaders

    own = "default-src 'self'; script-src 'self' 'sha256-abc'"
    app = Starlette(routes=[Route("/plain", lambda request: PlainTextResponse("x")),
                            Route("/own", lambda request: PlainTextResponse("x", headers={
                                "Content-Security-Policy": own}))])
    with TestClient(SecurityHeaders(app)) as client:
        plain, custom = client.get("/plain"), client.get("/own")
    assert plain.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert custom.headers.get_list("content-security-policy") == [own]
    assert custom.headers["x-frame-options"] == "DENY" and custom.headers["x-content-type-options"] == "nosniff"


def test_page_files_name_no_other_host_and_hold_no_inline_code():
    # The page's own files; the vendored Swagger UI of /docs (its licence texts name their authors' sites) has its
    # own check in tests/test_exposure.py.
    files = [p for p in STATIC.rglob("*") if p.is_file() and "swagger-ui" not in p.parts]
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css", "en.json", "fr.json", "de.json"}
    for path in files:
        text = path.read_text()
        urls = [u for u in re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text) if u != "http://www.w3.org"]
        assert urls == [], (path.name, urls)  # the one exception is the SVG namespace name, never fetched
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son\w+=", html) == []  # the CSP would block them


def test_locales_have_the_same_keys():
    keys = {lang: set(json.loads((STATIC / "locales" / f"{lang}.json").read_text())) for lang in ("en", "fr", "de")}
    assert keys["en"] == keys["fr"] == keys["de"]
    used = set(re.findall(r'data-i18n(?:-aria)?="([\w.]+)"', (STATIC / "index.html").read_text()))
    used |= {m for p in STATIC.glob("*.js") for m in re.findall(r'\bt\("([\w.]+)"', p.read_text())}
    assert used <= keys["en"], used - keys["en"]
