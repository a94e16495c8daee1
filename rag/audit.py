"""A tamper-evident audit trail: an append-only JSON-lines file in which every record carries its predecessor's hash.

    {"seq": 7, "time": "2025-01-01T12:00:00.000Z", "principal": "alice", "endpoint": "/v1/ask", ...,
     "prev_hash": "<hash of record 6>", "hash": "<sha256 of this record's canonical JSON without `hash`>"}

What `verify` catches: an edited record no longer matches its own hash; a removed or reordered record breaks the
`prev_hash` link (and the `seq` count) of the record after it; records cut off the end leave the log shorter than the
head file (`<log>.head`: last seq and hash, replaced after every append). What it cannot catch: someone who rewrites
the whole chain and the head consistently. Copy the head hash that `rag audit verify` prints somewhere they cannot
write (a ticket, a WORM store) to detect that too.

Appends take an exclusive `flock` on the log and fsync it, so several server workers can share one log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import RagError
from .settings import Settings

GENESIS = "0" * 64  # prev_hash of the first record


def audit_path(settings: Settings) -> Path:
    return settings.audit.path or settings.data_dir / "audit.jsonl"


def canonical(record: dict) -> bytes:
    """One byte string per record whatever the key order or the writer's JSON library version."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._lock = threading.Lock()  # flock locks open files, not threads: threads of one process queue here

    def append(self, fields: dict) -> dict:
        """Write one record after the current last one; returns it with its seq and hashes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            last = _last_record(handle, self.path)
            record = {**fields, "time": _now(), "seq": last["seq"] + 1 if last else 1,
                      "prev_hash": last["hash"] if last else GENESIS}
            record["hash"] = record_hash(record)
            handle.write(canonical(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            self._write_head(record)
        return record

    def _write_head(self, record: dict) -> None:
        """Replaced atomically but not fsynced: after a crash the head may lag the log, which `verify` accepts
        (only a log *shorter* than its head lost records), and a second fsync would double the cost of a record."""
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"seq": record["seq"], "hash": record["hash"]}))
        os.replace(tmp, self.head_path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _last_record(handle, path: Path) -> dict | None:
    """The last record, read backwards from the end so appends stay O(1) however long the log grows."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None
    tail, position = b"", end
    while position > 0 and tail.count(b"\n") < 2:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
    line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        return json.loads(line)
    except ValueError:
        raise RagError(f"audit log {path} ends with a damaged record; run `rag audit verify` and repair it") from None


# ---------------------------------------------------------------------------------------------- verification
@dataclass(frozen=True)
class Verification:
    records: int
    head: str | None  # hash of the last record, to be anchored elsewhere
    bad_line: int | None = None  # 1-based line of the first bad record, None when the log is intact
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def verify(path: Path) -> Verification:
    """Check every record's hash, link and number in order, then the head; stop at the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"audit log {path} does not exist; check audit.path (`rag config show`)")
    head = _read_head(path)
    previous: dict | None = None
    hash_at_head = None
    for number, line in _lines(path):
        record, reason = _check(line, previous)
        if reason:
            return Verification(number - 1, previous and previous["hash"], number, reason)
        if head and record["seq"] == head.get("seq"):
            hash_at_head = record["hash"]
        previous = record
    count, last_hash = (previous["seq"], previous["hash"]) if previous else (0, None)
    bad_line, reason = _check_head(head, count, hash_at_head)
    return Verification(count, last_hash, bad_line, reason)


def _check(line: bytes, previous: dict | None) -> tuple[dict | None, str]:
    try:
        record = json.loads(line)
    except ValueError:
        return None, "not a JSON record (damaged or truncated line)"
    if not isinstance(record, dict) or record.get("hash") != record_hash(record):
        return None, "its content does not match its hash: the record was edited"
    expected_seq = previous["seq"] + 1 if previous else 1
    if record.get("prev_hash") != (previous["hash"] if previous else GENESIS) or record.get("seq") != expected_seq:
        return None, (f"record {record.get('seq')} does not link to the record before it (record {expected_seq} was "
                      "expected): records were removed, inserted or reordered")
    return record, ""


def _check_head(head: dict | None, count: int, hash_at_head: str | None) -> tuple[int | None, str]:
    """The head is written after each append: a log shorter than the head lost its last records."""
    if head is None:
        return None, ""  # a log written before the head existed, or copied without it
    if not isinstance(head.get("seq"), int):
        return None, "the head file is damaged"
    if head["seq"] > count:
        return count + 1, (f"the log ends at record {count} but {head['seq']} were written (head file): records were "
                           "removed from the end")
    if hash_at_head != head.get("hash"):
        return head["seq"], f"record {head['seq']} differs from the hash kept in the head file: the log was rewritten"
    return None, ""


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            yield number, line.rstrip(b"\n")


def _read_head(path: Path) -> dict | None:
    head = path.with_name(path.name + ".head")
    try:
        return json.loads(head.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
