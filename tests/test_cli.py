"""The `rag` command as a user runs it: real subprocesses, real index folder, JSON output, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rag(tmp_path_factory):
    index = tmp_path_factory.mktemp("cli-index")
    env = {**os.environ, "RAG_INDEX_DIR": str(index), "RAG_DATA_DIR": str(index.parent / "cli-data"),
           "HF_HUB_OFFLINE": "1"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_ingest_search_docs_stats_delete(rag, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(EXAMPLES, corpus)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    (corpus / "empty.txt").write_text("")

    first = rag("ingest", str(corpus), "--json", check=False)
    assert first.returncode == 1, "a failed file makes the exit code non-zero"
    report = json.loads(first.stdout)
    assert len(report["added"]) == 5 and len(report["failed"]) == 2
    assert {os.path.basename(f) for f, _ in report["failed"]} == {"broken.pdf", "empty.txt"}
    assert all(os.path.basename(f) in reason for f, reason in report["failed"])

    (corpus / "broken.pdf").unlink()
    (corpus / "empty.txt").unlink()
    again = json.loads(rag("ingest", str(corpus), "--json").stdout)
    assert len(again["unchanged"]) == 5 and again["chunks_embedded"] == 0

    found = json.loads(rag("search", "Wie lange werden Bewerbungsunterlagen aufbewahrt?", "-k", "3", "--json").stdout)
    assert set(found) == {"query", "mode", "k", "hits"} and len(found["hits"]) == 3
    top = found["hits"][0]
    assert top["title"] and top["source"].endswith("datenaufbewahrung.html") and top["lang"] == "de"
    for key in ("chunk_id", "doc_id", "page", "heading_path", "start", "end", "content_hash", "text", "score"):
        assert key in top

    docs = json.loads(rag("docs", "--json").stdout)
    assert len(docs) == 5 and {d["lang"] for d in docs} >= {"fr", "de", "en"}
    stats = json.loads(rag("stats", "--json").stdout)
    assert stats["chunks"] == stats["vectors"] == stats["bm25_rows"] > 0
    assert stats["dense_index"]["type"] == "flat", "a small index is searched exactly"
    assert "dense index    type=flat" in rag("stats").stdout

    victim = next(d for d in docs if d["source"].endswith("datenaufbewahrung.html"))
    rag("delete", victim["doc_id"])
    found = json.loads(rag("search", "Bewerbungsunterlagen aufbewahrt", "-k", "10", "--json").stdout)
    assert all(h["doc_id"] != victim["doc_id"] for h in found["hits"])
    assert json.loads(rag("stats", "--json").stdout)["documents"] == 4


def test_errors_are_one_line_with_nonzero_exit(rag, tmp_path):
    missing = rag("ingest", str(tmp_path / "nope"), check=False)
    assert missing.returncode != 0 and missing.stderr.strip().count("\n") == 0 and "nope" in missing.stderr

    unknown = rag("delete", "no-such-doc", check=False)
    assert unknown.returncode == 4 and "no-such-doc" in unknown.stderr and "Traceback" not in unknown.stderr

    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("retrieval:\n  k: 0\n")
    config = rag("--config", str(bad_config), "config", "show", check=False)
    assert config.returncode == 2 and "retrieval.k" in config.stderr and "Traceback" not in config.stderr


def test_config_show_reflects_environment(rag):
    shown = json.loads(rag("config", "show", "--json").stdout)
    assert "cli-index" in shown["index_dir"]
    assert shown["embedder"]["model"] == "bundled" and shown["server"]["host"] == "127.0.0.1"
