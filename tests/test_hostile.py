"""Hostile files (tests/hostile_corpus.py) through the real pipeline, the CLI and a real server: each one is added or
fails alone with a one-line reason within its parser limits, and everything else keeps working."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import httpx
import pytest

from rag.chunk import HEADING_SHARE
from rag.load import document_id

from .conftest import EXAMPLES, ROOT
from .hostile_corpus import ADDED, EXPECTED, LIMIT_REASONS, LIMITED, write_corpus

pytestmark = pytest.mark.integration

# small, so the suite stays fast, yet 10x what the largest good file needs on a busy 2-core machine
LIMITS = {"parse_timeout_s": 15, "parse_memory_mb": 512, "parse_workers": 2}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, make_settings, embedder):
    """The hostile corpus and the sample corpus ingested together in one `Pipeline.ingest`."""
    from rag.pipeline import Pipeline

    folder = tmp_path_factory.mktemp("batch")
    paths = write_corpus(folder / "hostile")
    shutil.copytree(EXAMPLES, folder / "good")
    pipeline = Pipeline(make_settings(ingest=LIMITS), embedder=embedder)
    report = pipeline.ingest([folder], progress=False)
    yield pipeline, report, paths
    pipeline.close()


def _failures(report) -> dict[str, str]:
    return {os.path.basename(source): reason for source, reason in report.failed}


def test_every_hostile_file_has_its_expected_outcome(batch):
    pipeline, report, paths = batch
    failed = _failures(report)
    for name, path in paths.items():
        expected = EXPECTED[name]
        if expected == ADDED:
            assert document_id(str(path)) in report.added, (name, failed.get(name))
            continue
        reason = failed[name]
        assert reason.startswith(f"{path}: ") and "\n" not in reason, reason
        if expected == LIMITED:
            assert any(limit in reason for limit in LIMIT_REASONS), reason
        else:
            assert expected in reason, reason


def test_the_good_files_of_the_batch_are_indexed(batch):
    pipeline, report, _ = batch
    good = sorted(path.name for path in EXAMPLES.iterdir())
    assert set(good) <= {record.source.rsplit("/", 1)[-1] for record in pipeline.documents()}
    hits = pipeline.search("How many days per week may staff work remotely?", k=3)
    assert any("remote" in hit.chunk.text.lower() for hit in hits)
    assert len(report.added) + len(report.failed) == len(EXPECTED) + len(good)


def test_heading_chains_are_shortened_to_fit_the_budget(batch, embedder):
    """The chains once crashed the batch with a RecursionError; now their heading line takes at most its share."""
    from rag.ingest import stored_document

    pipeline, report, paths = batch
    budget = pipeline.settings.chunking.max_tokens
    for name in ("heading-chain.md", "heading-chain.html", "heading-chain.xml"):
        record = pipeline.document(document_id(str(paths[name])))
        chunks = pipeline.chunker.split(stored_document(pipeline.store, record))
        assert chunks, name
        for chunk in chunks:
            heading = " > ".join(chunk.heading_path)
            assert chunk.heading_path and "…" in heading, (name, heading)
            assert embedder.count_tokens([heading])[0] + 1 <= budget // HEADING_SHARE, (name, heading)
            assert embedder.count_tokens([chunk.embed_text])[0] <= budget


def test_cli_reports_each_hostile_file_on_one_line(tmp_path, make_settings):
    """`rag ingest` of a stalling, a limit-breaking and a good file: exit 1, one `failed:` line each, no traceback."""
    paths = write_corpus(tmp_path / "in", ["pi-flood.xml", "million-pages.pdf"])
    chosen = [*paths.values(), EXAMPLES / "remote-work-summary.md"]
    settings = make_settings()
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_DATA_DIR": str(settings.data_dir),
           "RAG_INGEST__PARSE_TIMEOUT_S": "15", "RAG_INGEST__PARSE_MEMORY_MB": "512"}
    result = subprocess.run([sys.executable, "-m", "rag", "ingest", "-q", *map(str, chosen)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "1 added" in result.stdout and "2 failed" in result.stdout


def test_hostile_upload_is_a_4xx_while_the_server_keeps_answering(service, tmp_path):
    """A file that runs into the parse time limit (the `service` fixture's 15 s) is a 422 naming the limit; /healthz
    answers all along."""
    paths = write_corpus(tmp_path, ["million-pages.pdf"])
    outcome: dict = {}

    def upload() -> None:
        with service.client("public-admin") as client:
            files = {"files": ("million-pages.pdf", paths["million-pages.pdf"].read_bytes(), "application/pdf")}
            outcome["response"] = client.post("/v1/documents", files=files)

    uploading = threading.Thread(target=upload)
    uploading.start()
    answered_meanwhile = 0
    while uploading.is_alive():
        assert httpx.get(f"{service.base_url}/healthz", timeout=5).status_code == 200
        answered_meanwhile += uploading.is_alive()
        uploading.join(0.2)
    response = outcome["response"]
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert any(limit in message for limit in LIMIT_REASONS) and "\n" not in message, message
    assert answered_meanwhile >= 3  # health requests were served while the upload was being parsed


@pytest.mark.parametrize(("name", "status", "words"), [
    ("pi-flood.xml", 415, "unsupported file type"),
    ("deep-nesting.xml", 422, "corrupt XML"),
    ("zip-bomb.docx", 422, "zip bomb"),
    ("zip-bomb.xlsx", 422, "zip bomb"),
    ("forward-chain.eml", 422, "nested more than"),
    ("invalid-utf16.txt", 415, "binary content"),
])
def test_hostile_uploads_are_refused_with_the_reason(service, tmp_path, name, status, words):
    path = write_corpus(tmp_path, [name])[name]
    with service.client("public-admin") as client:
        response = client.post("/v1/documents", files={"files": (name, path.read_bytes())})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_upload_named_like_another_principals_document_replaces_nothing(service, tmp_path):
    """`defence-remote-work.md` exists, restricted; a public admin uploading that name gets its own document."""
    path = write_corpus(tmp_path, ["defence-remote-work.md"])["defence-remote-work.md"]
    with service.client("public-admin") as client:
        response = client.post("/v1/documents", files={"files": (path.name, path.read_bytes())})
        assert response.status_code == 201, response.text
        (uploaded,) = response.json()["added"]
        try:
            assert uploaded not in service.secret_doc_ids
            with service.client("defence") as defence:
                for doc_id in service.secret_doc_ids:
                    assert defence.get(f"/v1/documents/{doc_id}").status_code == 200
                hits = defence.post("/v1/search", json={"query": "codeword for remote access", "k": 3}).json()
            assert "ZEBRA-7731-SECRET" in str(hits)
        finally:
            assert client.delete(f"/v1/documents/{uploaded}").status_code == 200


def _special_folder(folder):
    """A folder with a memo, a FIFO and a symlink to it, a socket, a dangling and a looping symlink, all with
    document suffixes; returns the socket (closed by the caller)."""
    import socket

    folder.mkdir()
    (folder / "memo.md").write_text("# Bicycles\n\nBicycles are parked in the courtyard, never in the corridors.\n")
    os.mkfifo(folder / "pipe.txt")
    (folder / "to-pipe.md").symlink_to(folder / "pipe.txt")
    (folder / "dangling.md").symlink_to("/nonexistent")
    (folder / "loop.md").symlink_to(folder / "loop.md")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.txt"))
    return server


def test_cli_skips_special_files_unopened_and_names_broken_links_by_their_own_path(tmp_path, make_settings):
    """A FIFO (read, it would wait for a writer until the parse limit), a socket and a symlink to the FIFO are one
    `skipped:` line each; a dangling and a looping symlink one `failed:` line each, named by the link; the memo is
    ingested. Named on the command line, the FIFO is skipped alike. No file is opened: the FIFO never gets a reader,
    so a parser that opened it would block (and time out) rather than pass."""
    folder = tmp_path / "docs"
    server = _special_folder(folder)
    settings = make_settings()
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_DATA_DIR": str(settings.data_dir),
           "RAG_INGEST__PARSE_TIMEOUT_S": "600"}  # a parser blocked on the FIFO would outlast the run's timeout
    try:
        result = subprocess.run([sys.executable, "-m", "rag", "ingest", "-q", str(folder), str(folder / "pipe.txt")],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.close()
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert sorted(line for line in lines if line.startswith(("skipped: ", "failed: "))) == [
        f"failed: {folder}/dangling.md: dangling symbolic link (to /nonexistent), not read",
        f"failed: {folder}/loop.md: symbolic link loop, not read",
        f"skipped: {folder}/pipe.txt: not a regular file (a FIFO), not read",
        f"skipped: {folder}/sock.txt: not a regular file (a socket), not read",
        f"skipped: {folder}/to-pipe.md: not a regular file (a FIFO), not read",
    ], result.stderr
    assert "1 added" in result.stdout and "3 skipped, 2 failed" in result.stdout, result.stdout
