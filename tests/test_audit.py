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
    (lambda lines: lines[:-1] + [lines[-1][:40]], 5, "not a JSON record"),
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
