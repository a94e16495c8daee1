"""The audit chain: every kind of tampering is detected at the right line, through `rag audit verify` too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag.audit import AuditLog, verify

from .conftest import ROOT


@pytest.fixture
def log(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        audit.append({"principal": "alice", "endpoint": "/v1/ask", "question_sha256": f"{i:064d}"})
    return audit


def _lines(log) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def test_an_intact_log_verifies_and_appends_continue_the_chain(log):
    result = verify(log.path)
    assert result.ok and result.records == 5
    records = [json.loads(line) for line in _lines(log)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:]))
    assert log.append({"principal": "bob"})["prev_hash"] == result.head


def _edited(lines):
    record = json.loads(lines[2])
    record["principal"] = "mallory"
    return lines[:2] + [json.dumps(record)] + lines[3:]


def _rehashed_edit(lines):
    """An editor who also recomputes the edited record's own hash still breaks the next link."""
    from rag.audit import record_hash

    record = json.loads(lines[2])
    record["principal"] = "mallory"
    record["hash"] = record_hash(record)
    return lines[:2] + [json.dumps(record)] + lines[3:]


@pytest.mark.parametrize("tamper, bad_line, words", [
    (_edited, 3, "edited"),
    (_rehashed_edit, 4, "reordered"),
    (lambda lines: lines[:1] + lines[2:], 2, "removed"),
    (lambda lines: lines[1:], 1, "removed"),
    (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2, "reordered"),
    (lambda lines: lines[:-1], 5, "removed from the end"),
    (lambda lines: lines[:2] + [lines[2][:40]] + lines[3:], 3, "not a JSON record"),
])
def test_tampering_is_found_at_the_first_bad_record(log, tamper, bad_line, words):
    _write(log, tamper(_lines(log)))
    result = verify(log.path)
    assert not result.ok and result.bad_line == bad_line and words in result.reason


def test_cli_names_the_bad_line_and_exits_nonzero(log):
    _write(log, _edited(_lines(log)))
    run = subprocess.run([sys.executable, "-m", "rag", "audit", "verify", str(log.path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and "line 3" in run.stderr and run.stderr.count("\n") == 1


def _tear(log) -> tuple[int, bytes]:
    """Cut the log in the middle of its last record, as a power loss during an append would; returns the torn
    record's byte offset and the bytes left of it."""
    data = log.path.read_bytes()
    offset = data.rstrip(b"\n").rfind(b"\n") + 1
    cut = offset + (len(data) - offset) // 2
    with open(log.path, "r+b") as handle:
        handle.truncate(cut)
    return offset, data[offset:cut]


@pytest.mark.parametrize("torn_tail", [
    lambda log: _tear(log),
    lambda log: log.path.open("ab").write(b"\0" * 300 + b"\n"),  # a block that never reached the disk, line end kept
])
def test_a_torn_tail_is_named_refused_and_sealed_by_repair(log, torn_tail):
    from rag.errors import AuditUnavailableError

    torn_tail(log)
    result = verify(log.path)
    assert not result.ok and result.torn and "torn" in result.reason
    assert result.bad_line == result.torn.line and result.records in (4, 5)
    with pytest.raises(AuditUnavailableError, match="rag audit repair"):
        log.append({"principal": "bob"})
    with pytest.raises(AuditUnavailableError):
        log.check()

    torn_bytes = log.path.read_bytes()[result.torn.offset:]
    record = log.repair()
    assert record["type"] == "repair" and record["torn_offset"] == result.torn.offset
    assert record["torn_in_head"] == (result.records == 4)  # a cut acknowledged record vs an unfinished append
    assert record["torn_bytes"] == len(torn_bytes) and record["prev_hash"] == result.head
    side = log.path.with_name(record["side_file"])
    assert side.read_bytes() == torn_bytes and oct(side.stat().st_mode & 0o777) == "0o600"
    assert verify(log.path).ok and log.repair() is None
    assert log.append({"principal": "bob"})["seq"] == record["seq"] + 1 and verify(log.path).ok


def test_repair_refuses_anything_but_a_torn_tail(log):
    from rag.errors import RagError

    _write(log, _edited(_lines(log)))
    before = log.path.read_bytes()
    with pytest.raises(RagError, match="line 3.*only seals a torn"):
        log.repair()
    assert log.path.read_bytes() == before and not list(log.path.parent.glob("*.torn-*"))


def test_a_torn_tail_cut_from_a_log_whose_head_is_ahead_is_not_sealed(log):
    """Cutting records off the end *and* leaving half a record is not a power loss: the head names what is missing."""
    from rag.errors import RagError

    lines = _lines(log)
    _write(log, lines[:3])
    with open(log.path, "ab") as handle:
        handle.write(lines[3][:30].encode())
    result = verify(log.path)
    assert not result.ok and result.torn is None and "removed from the end" in result.reason
    with pytest.raises(RagError, match="only seals"):
        log.repair()


def test_a_failed_write_leaves_no_partial_record(log, monkeypatch):
    """A disk that fills up mid-record: the partial bytes are cut off again, the log stays sealed."""
    import os as os_module

    from rag.errors import AuditUnavailableError

    before = log.path.read_bytes()
    real_fsync = os_module.fsync

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os_module, "fsync", full_disk)
    with pytest.raises(AuditUnavailableError, match="No space left"):
        log.append({"principal": "bob"})
    monkeypatch.setattr(os_module, "fsync", real_fsync)
    assert log.path.read_bytes() == before and verify(log.path).ok


def test_log_head_and_folder_are_private(tmp_path):
    audit = AuditLog(tmp_path / "new" / "audit.jsonl")
    audit.append({"principal": "alice"})
    assert oct(audit.path.stat().st_mode & 0o777) == "0o600"
    assert oct(audit.head_path.stat().st_mode & 0o777) == "0o600"
    assert oct(audit.path.parent.stat().st_mode & 0o777) == "0o700"


def _rag(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag", "audit", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cli_names_a_torn_tail_and_repair_seals_it(log):
    offset, _ = _tear(log)
    verified = _rag("verify", log.path)
    assert verified.returncode == 1 and "line 5" in verified.stderr and f"byte {offset}" in verified.stderr
    assert "rag audit repair" in verified.stderr and verified.stderr.count("\n") == 1
    repaired = _rag("repair", log.path)
    assert repaired.returncode == 0 and "sealed" in repaired.stdout and "record 5 (type repair)" in repaired.stdout
    assert _rag("verify", log.path).returncode == 0
    again = _rag("repair", log.path)
    assert again.returncode == 0 and "nothing to repair" in again.stdout


def test_cli_repair_of_a_tampered_log_is_one_line_and_exit_1(log):
    _write(log, _edited(_lines(log)))
    refused = _rag("repair", log.path)
    assert refused.returncode == 1 and refused.stderr.startswith("error:") and refused.stderr.count("\n") == 1


@pytest.mark.integration
def test_a_server_on_a_torn_log_refuses_audited_requests_with_503_until_repaired(service):
    """Power loss mid-append, as a real server meets it: 503 with a clear message for audited requests, the rest
    served, and `rag audit repair` run beside the running server brings it back without a restart."""
    from rag.audit import audit_path

    path = audit_path(service.settings)
    with service.client("public") as client:
        assert client.post("/v1/search", json={"query": "remote work"}).status_code == 200
        _tear(AuditLog(path))
        before = path.read_bytes()
        for refused in (client.post("/v1/search", json={"query": "remote work"}),
                        client.post("/v1/ask", json={"question": "How many days of remote work?", "stream": True})):
            error = refused.json()["error"]
            assert refused.status_code == 503 and error["type"] == "audit_unavailable", refused.text
            assert "rag audit repair" in error["message"] and str(path) not in error["message"]
            assert int(refused.headers["Retry-After"]) > 0
        assert path.read_bytes() == before  # nothing was built on the torn record
        assert client.get("/v1/documents").status_code == 200  # reads that are not audited go on
        assert _rag("verify", path).returncode == 1
        assert _rag("repair", path).returncode == 0
        assert client.post("/v1/search", json={"query": "remote work"}).status_code == 200
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[-2]["type"] == "repair" and records[-2]["torn_in_head"]
    assert records[-1]["endpoint"] == "/v1/search" and records[-1]["status"] == 200
    assert verify(path).ok
    assert any("rag audit repair" in line for line in service.logs)  # the operator is told in the server log
