"""`rag doctor` (rag/doctor.py): each check on its own, then the command on a healthy and on a broken setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from rag.auth import KeyStore, keys_path
from rag.doctor import check_cpu, check_exposure, check_guard
from rag.settings import Settings, usable_cores

from .conftest import ROOT


def test_loopback_needs_no_keys_but_any_other_address_does(tmp_path):
    keys = tmp_path / "keys.json"
    assert check_exposure(Settings(server={"host": "127.0.0.1", "keys_file": keys})).ok
    exposed = Settings(server={"host": "0.0.0.0", "keys_file": keys})
    refused = check_exposure(exposed)
    assert not refused.ok and "rag keys create" in refused.detail
    KeyStore(keys_path(exposed)).create("alice", ["public"])
    assert check_exposure(exposed).ok
    anonymous = check_exposure(Settings(server={"host": "0.0.0.0", "require_keys": False, "keys_file": keys}))
    assert not anonymous.ok and "require_keys" in anonymous.detail


def test_the_guard_check_fails_in_a_process_without_the_guard():
    check = check_guard()  # pytest does not install it; a probe is then not even attempted
    assert not check.ok and "not active" in check.detail


def test_cpu_features_come_from_llama_cpp_and_oversubscription_fails():
    fitting = check_cpu(Settings(llm={"n_threads": 1}, server={"ingest_threads": 1}))
    assert fitting.data["features"], fitting.detail
    assert fitting.ok == any(f in ("AVX2", "AVX512", "NEON") for f in fitting.data["features"])
    oversubscribed = check_cpu(Settings(llm={"n_threads": usable_cores() + 1}, server={"ingest_threads": 1}))
    assert not oversubscribed.ok and "oversubscribed" in oversubscribed.detail


def doctor(env: dict) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, "-m", "rag", "doctor", "--json"], capture_output=True, text=True,
                            env={**os.environ, **env}, cwd=ROOT, timeout=300)
    return result.returncode, json.loads(result.stdout)


@pytest.mark.integration
def test_doctor_passes_on_a_healthy_setup_and_names_each_failure(example_pipeline, tmp_path):
    settings = example_pipeline.settings
    code, report = doctor({"RAG_INDEX_DIR": str(settings.index_dir), "RAG_DATA_DIR": str(settings.data_dir)})
    by_name = {c["name"]: c for c in report["checks"]}
    assert code == 0 and report["ok"], [c for c in report["checks"] if not c["ok"]]
    assert set(by_name) == {"config", "offline_switches", "egress_guard", "embedder", "llm", "index", "api_keys",
                            "disk", "cpu", "versions"}
    assert by_name["index"]["data"]["chunks"] == by_name["index"]["data"]["vectors"] > 0

    config = yaml.safe_load((ROOT / "rag" / "default.yaml").read_text())
    config["embedder"]["file_sha256"]["weights.npz"] = "0" * 64
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code, report = doctor({"RAG_CONFIG": str(tmp_path / "config.yaml"), "RAG_INDEX_DIR": str(tmp_path / "empty"),
                           "RAG_DATA_DIR": str(settings.data_dir), "RAG_SERVER__HOST": "0.0.0.0",
                           "RAG_SERVER__KEYS_FILE": str(tmp_path / "keys.json")})
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert code == 1 and not report["ok"]
    assert set(failed) == {"embedder", "index", "api_keys"}
    assert "weights.npz has sha256" in failed["embedder"]["detail"]
    assert failed["embedder"]["data"]["file_sha256"] == by_name["embedder"]["data"]["file_sha256"], \
        "the values to pin are printed even when the check fails"


def test_checks_are_given_one_by_one_as_they_complete(monkeypatch):
    """`rag doctor` prints each line when its check is done: hashing the model files takes seconds."""
    from rag import doctor

    ran: list[str] = []
    monkeypatch.setattr(doctor, "check_embedder", lambda settings: ran.append("embedder") or doctor.Check(
        "embedder", True, "stub"))
    given = doctor.checks()
    assert next(given).name == "config" and ran == []  # nothing past the configuration has run yet
    assert [next(given).name for _ in range(2)] == ["offline_switches", "egress_guard"] and ran == []
    assert next(given).name == "embedder" and ran == ["embedder"]
