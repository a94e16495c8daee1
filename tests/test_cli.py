"""The `rag` command as a user runs it: real subprocesses, real index folders, JSON output, one-line errors.

The fast tests need no model: configuration, and the commands that only read or delete rows of an index (built here
with the real store and made-up vectors). The integration tests ingest and search with the real embedder, one of them
from a folder that has nothing to do with the checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from rag.cli import page_notes, resolve_targets
from rag.errors import InputError, NotFoundError

from .conftest import EXAMPLES, ROOT

MODEL_LIBRARIES = ("torch", "sentence_transformers", "transformers", "llama_cpp", "onnxruntime")
# Runs the CLI as `python -m rag` does, then says which model libraries the process imported.
DRIVER = f"""
import sys
from rag.__main__ import main
try:
    main()
finally:
    print("loaded:", [m for m in {MODEL_LIBRARIES!r} if m in sys.modules], file=sys.stderr)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without RAG_ settings, with this checkout first on the path (the tests run from other folders
    than the checkout, where an installed copy of the package would otherwise be imported)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}


def run_in(folder: Path, *args: str, env: dict | None = None, driver: bool = False) -> subprocess.CompletedProcess:
    """`rag ARGS` run from `folder`; with `driver`, stderr's last line lists the model libraries it imported."""
    command = [sys.executable, "-c", DRIVER] if driver else [sys.executable, "-m", "rag"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=folder, env=env or clean_env(),
                          timeout=600, stdin=subprocess.DEVNULL, check=False)


# ---------------------------------------------------------------------------------------------- configuration (fast)
def test_the_packaged_configuration_applies_from_any_folder(tmp_path):
    shown = run_in(tmp_path, "config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    pins = yaml.safe_load((ROOT / "rag" / "default.yaml").read_text())
    assert settings["embedder"]["file_sha256"] == pins["embedder"]["file_sha256"], "the model pins ship in the package"
    assert settings["llm"]["sha256"] == pins["llm"]["sha256"]
    assert settings["index_dir"] == str(ROOT / "index") and settings["data_dir"] == str(ROOT / "data"), \
        "a development install keeps its index in the checkout, whatever the working directory"


def test_an_operators_file_is_laid_over_the_defaults_and_config_show_names_every_origin(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "rag.yaml").write_text("index_dir: idx\nretrieval:\n  k: 8\n")
    env = clean_env(RAG_RETRIEVAL__MODE="bm25", RAG_DATA_DIR="relative-data")
    text = run_in(tmp_path, "--config", "conf/rag.yaml", "config", "show", env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    config = str(tmp_path / "conf" / "rag.yaml")
    expected = {
        "index_dir": f'"{tmp_path}/conf/idx"  # {config}',  # relative to the file that says it
        "data_dir": f'"{tmp_path}/relative-data"  # env RAG_DATA_DIR',  # relative to the working directory
        "  k": f"8  # {config}",
        "  candidates": "50  # default",
        "  mode": '"bm25"  # env RAG_RETRIEVAL__MODE',
        "  sha256": f'"{yaml.safe_load((ROOT / "rag" / "default.yaml").read_text())["llm"]["sha256"]}"  # '
                    f'{ROOT / "rag" / "default.yaml"}',
    }
    for key, value in expected.items():
        assert f"{key}: {value}" in lines, (key, [line for line in lines if line.startswith(key + ":")])
    assert any(line.startswith("  file_sha256:  # ") and line.endswith("rag/default.yaml") for line in lines)

    as_json = json.loads(run_in(tmp_path, "--config", "conf/rag.yaml", "config", "show", "--json", env=env).stdout)
    assert yaml.safe_load(text.stdout) == as_json, "the annotated output is itself a configuration file"
    from_env = run_in(tmp_path, "config", "show", "--json", env={**env, "RAG_CONFIG": "conf/rag.yaml"})
    assert json.loads(from_env.stdout) == as_json, "RAG_CONFIG names the same file as --config"


def test_configuration_errors_are_one_line_naming_the_source(tmp_path):
    (tmp_path / "bad.yaml").write_text("retrieval:\n  k: 0\n")
    (tmp_path / "list.yaml").write_text("- k\n")
    for args, env, message in [
        (("--config", "bad.yaml"), {},
         f"retrieval.k: Input should be greater than or equal to 1 (from {tmp_path}/bad.yaml)"),
        ((), {"RAG_RETRIEVAL__MODE": "fuzzy"}, "retrieval.mode: Input should be 'hybrid', 'dense' or 'bm25' "
                                               "(from env RAG_RETRIEVAL__MODE)"),
        ((), {"RAG_CONFIG": "missing.yaml"}, f"RAG_CONFIG names {tmp_path}/missing.yaml, which does not exist"),
        (("--config", "list.yaml"), {}, "must hold a mapping of settings"),
    ]:
        result = run_in(tmp_path, *args, "config", "show", env=clean_env(**env))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_every_example_configuration_is_valid():
    from rag.settings import load_settings

    examples = sorted((ROOT / "configs").glob("*.yaml"))
    assert examples
    for example in examples:
        assert load_settings(example).config_file == example


# ---------------------------------------------------------------------------------------------- without models (fast)
def stored_index(index: Path, corpus: Path) -> dict[str, str]:
    """An index of three small documents made with the real store and made-up 8-dimensional vectors (as if by an
    embedder the configuration does not name); returns their ids by file name."""
    from rag.load import document_id
    from rag.store import NewChunk, new_manifest
    from rag.store.embedded import IndexStore

    manifest = new_manifest(embedder={"name": "made-up", "fingerprint": "0" * 64, "dim": 8, "max_tokens": 64,
                                      "backend": "torch"}, chunking={"max_tokens": 64, "overlap_tokens": 0})
    store = IndexStore.open(index, manifest)
    rng = np.random.default_rng(0)
    ids, puts = {}, []
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        source = corpus / name
        source.parent.mkdir(parents=True, exist_ok=True)
        text = f"Document {name} about leave and remote work."
        source.write_text(text)
        ids[name] = document_id(str(source.resolve()))
        vector = rng.normal(size=8).astype(np.float32)
        chunk = NewChunk(ordinal=0, start=0, end=len(text), page=None, heading_path=(), lang="en", content_hash=name,
                         text=text, tokens=text.lower().split(), vector=vector / np.linalg.norm(vector))
        puts.append(({"doc_id": ids[name], "source": str(source.resolve()), "title": name, "format": "text",
                      "lang": "en", "sha256": name, "labels": ["public"], "pages": None, "chars": len(text),
                      "text": text, "blocks": "[]"}, [chunk]))
    with store.writer() as writer:
        writer.commit(puts)
    store.close()
    return ids


def test_docs_stats_and_delete_need_no_model_and_delete_takes_ids_or_paths(tmp_path):
    ids = stored_index(tmp_path / "index", tmp_path / "corpus")
    env = clean_env(RAG_INDEX_DIR=str(tmp_path / "index"), RAG_DATA_DIR=str(tmp_path / "data"))

    def rag(*args: str) -> subprocess.CompletedProcess:
        result = run_in(tmp_path, *args, env=env, driver=True)
        assert result.stderr.splitlines()[-1] == "loaded: []", f"{args} imported a model library: {result.stderr}"
        return result

    listed = rag("docs")
    assert listed.returncode == 0 and f"3 documents in {tmp_path / 'index'}" in listed.stdout
    assert {d["doc_id"] for d in json.loads(rag("docs", "--json").stdout)} == set(ids.values())
    stats = json.loads(rag("stats", "--json").stdout)
    assert stats["documents"] == stats["chunks"] == stats["vectors"] == 3 and stats["manifest"]["embedder"]["name"] \
        == "made-up", "an index built by another embedder is listed as it is"

    folder = rag("delete", "corpus/sub")
    assert folder.returncode == 2 and "corpus/sub is a folder holding 1 indexed document(s)" in folder.stderr
    unknown = rag("delete", "corpus/a.txt", "corpus/zzz.txt")
    assert unknown.returncode == 4 and f"'corpus/zzz.txt' ({tmp_path}/corpus/zzz.txt)" in unknown.stderr
    assert len(json.loads(rag("docs", "--json").stdout)) == 3, "nothing is deleted when one target is unknown"

    (tmp_path / "corpus" / "a.txt").unlink()  # a file that was ingested and is gone since
    deleted = rag("delete", "corpus/a.txt", ids["b.txt"], "corpus/b.txt")
    assert deleted.returncode == 0 and deleted.stdout.splitlines()[-1] == "deleted 2 document(s)", deleted.stdout
    assert [d["doc_id"] for d in json.loads(rag("docs", "--json").stdout)] == [ids["sub/c.txt"]]


def test_without_an_index_docs_lists_nothing_and_stats_and_delete_say_so(tmp_path):
    env = clean_env(RAG_INDEX_DIR=str(tmp_path / "none"))
    listed = run_in(tmp_path, "docs", env=env)
    assert listed.returncode == 0 and "0 documents in" in listed.stdout and "`rag ingest FILES` creates it" \
        in listed.stdout
    for args in (("stats",), ("delete", "x")):
        result = run_in(tmp_path, *args, env=env)
        assert result.returncode == 3 and f"no index in {tmp_path / 'none'} yet" in result.stderr, result.stderr
    assert not (tmp_path / "none").exists(), "looking does not create an index"


def record(doc_id: str, source: str):
    return SimpleNamespace(doc_id=doc_id, source=source)


def test_delete_targets_resolve_like_ingest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.txt").write_text("a")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real" / "a.txt")
    records = [record("a-1", str(tmp_path / "real" / "a.txt")), record("b-2", str(tmp_path / "real" / "b.txt")),
               record("link.txt", "upload://someone/public/x.txt")]
    assert resolve_targets(["real/a.txt", "b-2", "./real/../real/b.txt"], records) == ["a-1", "b-2"]
    assert resolve_targets(["real/a.txt", "a-1", str(tmp_path / "real" / "a.txt")], records) == ["a-1"], "once each"
    with pytest.raises(InputError, match=re.escape("'link.txt' is the id of one document and the path of another")):
        resolve_targets(["link.txt"], records)  # the symlink resolves to real/a.txt, the id is the upload's
    with pytest.raises(InputError, match="real is a folder holding 2 indexed document"):
        resolve_targets(["real"], records)
    with pytest.raises(NotFoundError, match=re.escape("no indexed document has the id or path 'c.txt'")):
        resolve_targets(["c.txt"], records)


def test_docs_lists_ocr_pages_and_pages_without_text():
    scanned = SimpleNamespace(pages_ocr=(2, 3), pages_without_text=(7,))
    assert page_notes(scanned) == "OCR: page(s) 2, 3; no text: page(s) 7 (not searchable)"
    assert page_notes(SimpleNamespace(pages_ocr=(), pages_without_text=())) == ""


# ---------------------------------------------------------------------------------------------- with models
@pytest.mark.integration
def test_ingest_search_and_delete_from_an_unrelated_folder_quietly(tmp_path):
    """No RAG_INDEX_DIR, no checkout in sight: a relative RAG_CONFIG whose relative paths are the file's own."""
    work, conf = tmp_path / "work", tmp_path / "conf"
    shutil.copytree(EXAMPLES, work / "docs")
    conf.mkdir()
    (conf / "rag.yaml").write_text("index_dir: index\ndata_dir: data\nretrieval:\n  k: 2\n")
    env = clean_env(RAG_CONFIG="../conf/rag.yaml", RAG_RETRIEVAL__MODE="dense", RAG_EMBEDDER__THREADS="1")

    ingested = run_in(work, "ingest", "docs", "--quiet", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("5 added") and ingested.stderr == "", "no third-party progress output"
    assert (conf / "index" / "manifest.json").is_file() and not (work / "index").exists()

    found = run_in(work, "search", "Combien de jours de télétravail ?", "--json", env=env)
    assert found.returncode == 0 and found.stderr == "", found.stderr
    hits = json.loads(found.stdout)
    assert (hits["k"], hits["mode"], len(hits["hits"])) == (2, "dense", 2), "retrieval.k and retrieval.mode apply"
    telework = {str(work / "docs" / name) for name in ("teletravail-directive.md", "remote-work-summary.md")}
    assert {h["source"] for h in hits["hits"]} == telework  # the directive and its English summary, by path
    flagged = json.loads(run_in(work, "search", "télétravail", "--json", "-k", "3", "--mode", "bm25", env=env).stdout)
    assert (flagged["k"], flagged["mode"], len(flagged["hits"])) == (3, "bm25", 3), "flags win over settings"

    deleted = run_in(work, "delete", "docs/teletravail-directive.md", env=env)
    assert deleted.returncode == 0 and deleted.stderr == "", deleted.stderr
    left = json.loads(run_in(work, "docs", "--json", env=env).stdout)
    assert len(left) == 4 and all(not d["source"].endswith("teletravail-directive.md") for d in left)


@pytest.fixture(scope="module")
def rag(tmp_path_factory):
    index = tmp_path_factory.mktemp("cli-index")
    env = {**os.environ, "RAG_INDEX_DIR": str(index), "RAG_DATA_DIR": str(index.parent / "cli-data"),
           "HF_HUB_OFFLINE": "1"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
            stdin=subprocess.DEVNULL, check=False,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


@pytest.mark.integration
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


@pytest.mark.integration
def test_errors_are_one_line_with_nonzero_exit(rag, tmp_path):
    missing = rag("ingest", str(tmp_path / "nope"), check=False)
    assert missing.returncode != 0 and missing.stderr.strip().count("\n") == 0 and "nope" in missing.stderr

    unknown = rag("delete", "no-such-doc", check=False)
    assert unknown.returncode == 4 and "no-such-doc" in unknown.stderr and "Traceback" not in unknown.stderr

    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("retrieval:\n  k: 0\n")
    config = rag("--config", str(bad_config), "config", "show", check=False)
    assert config.returncode == 2 and "retrieval.k" in config.stderr and "Traceback" not in config.stderr


@pytest.mark.integration
def test_config_show_reflects_environment(rag):
    shown = json.loads(rag("config", "show", "--json").stdout)
    assert "cli-index" in shown["index_dir"]
    assert shown["embedder"]["model"] == "use-multilingual-v3" and shown["server"]["host"] == "127.0.0.1"


@pytest.mark.parametrize("args", [("search", "q", "-k", "0"), ("ask", "q", "-k", "abc"), ("search",),
                                  ("search", "q", "--bogus"), ("serch", "q")])
def test_a_usage_error_is_a_message_and_exit_2_never_a_traceback(tmp_path, args):
    """Typer 0.2x vendors click (typer._click): its usage errors are not click.ClickException and came out as
    tracebacks with exit 1 (`rag search q -k 0`, a mistyped command)."""
    result = run_in(tmp_path, *args, env=clean_env(RAG_INDEX_DIR=str(tmp_path / "index"),
                                                   RAG_DATA_DIR=str(tmp_path / "data")))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error" in result.stderr, result.stderr
