"""A tamper-evident audit trail: an append-only JSON-lines file in which every record carries its predecessor's hash.

    {"seq": 7, "time": "2025-01-01T12:00:00.000Z", "principal": "alice", "endpoint": "/v1/ask", ...,
     "prev_hash": "<hash of record 6>", "hash": "<sha256 of this record's canonical JSON without `hash`>"}

What `verify` catches: an edited record no longer matches its own hash; a removed or reordered record breaks the
`prev_hash` link (and the `seq` count) of the record after it; records cut off the end leave the log shorter than the
head file (`<log>.head`: last seq and hash, replaced after every append). What it cannot catch: someone who rewrites
the whole chain and the head consistently. Copy the head hash that `rag audit verify` prints somewhere they cannot
write (a ticket, a WORM store) to detect that too.

Appends take an exclusive `flock` on the log and fsync it, so several server workers can share one log. An append
cut short (power loss, a killed process) leaves a torn last line: `verify` names it (line, byte offset) apart from
tampering, appends refuse to build on it (AuditUnavailableError), and `AuditLog.repair` (`rag audit repair`) moves
the torn bytes to a side file and continues the chain with a `repair` record that says what happened. The log, its
head and side files are created 0600 in a 0700 folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .errors import AuditUnavailableError, RagError
from .private_files import open_private
from .settings import Settings

GENESIS = "0" * 64  # prev_hash of the first record
NOT_JSON = "not a JSON record (damaged or truncated line)"


def audit_path(settings: Settings) -> Path:
    """The audit log: `audit.path`, or `audit.jsonl` in the data directory."""
    return settings.audit.path or settings.data_dir / "audit.jsonl"


def canonical(record: dict) -> bytes:
    """One byte string per record whatever the key order or the writer's JSON library version."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict) -> str:
    """sha256 (hex) of the record's canonical JSON without its `hash` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def sha256_text(text: str) -> str:
    """sha256 (hex) of `text` in UTF-8: how answers, and questions unless `audit.store_questions`, are recorded."""
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    """The log at `path` and its head file beside it (`<path>.head`); both are created on the first append.

    One instance per process is enough and is thread-safe; processes share the log through `flock`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._lock = threading.Lock()  # flock locks open files, not threads: threads of one process queue here

    def append(self, fields: dict) -> dict:
        """Write one record after the current last one; returns it with its seq and hashes.

        Raises AuditUnavailableError when the log ends with a torn record (`rag audit repair`) or the record cannot
        be written whole (disk full: the partial bytes are cut off again, so the log stays sealed)."""
        with self._lock, self._open(fcntl.LOCK_EX) as handle:
            return self._append_locked(handle, fields)

    def check(self) -> None:
        """Raise AuditUnavailableError if the log ends with a torn record, so that audited work is refused before it
        is done rather than after; reads only the tail. A log that does not exist yet is fine."""
        if self.path.exists():
            with self._open(fcntl.LOCK_SH) as handle:
                _last_record(handle, self.path)

    def repair(self) -> dict | None:
        """Seal a torn tail: move its bytes to `<log>.torn-<UTC time>` (0600, fsynced), cut them off the log, and append
        a record of type `repair` that names them (line, offset, size, sha256, side file), chained to the last good
        record. Holds the log's exclusive lock throughout, so a running server's appends wait and then continue the
        chain. Returns the repair record, or None when the log is intact.

        Raises RagError when the log is damaged in any other way (an edited, removed or reordered record, a head that
        is ahead of the log): that is evidence to keep, not to seal."""
        _require(self.path)
        with self._lock, self._open(fcntl.LOCK_EX) as handle:
            result = verify(self.path)
            if result.ok:
                return None
            if result.torn is None:
                raise RagError(
                    f"audit log {self.path}: line {result.bad_line}: {result.reason}. `rag audit repair` "
                    "only seals a torn last record; keep this log as evidence and restore the last "
                    "verified backup"
                )
            torn = result.torn
            handle.seek(torn.offset)
            data = handle.read()
            side = _keep_aside(self.path, data)
            os.ftruncate(handle.fileno(), torn.offset)
            os.fsync(handle.fileno())
            return self._append_locked(
                handle,
                {
                    "type": "repair",
                    "event": "torn_tail_sealed",
                    "torn_line": torn.line,
                    "torn_offset": torn.offset,
                    "torn_bytes": len(data),
                    "torn_sha256": hashlib.sha256(data).hexdigest(),
                    "side_file": side.name,
                    "torn_in_head": torn.in_head,
                },
            )

    @contextmanager
    def _open(self, lock: int) -> Iterator[BinaryIO]:
        """The log unbuffered (a failed write leaves no bytes behind in a buffer), created 0600 in a 0700 folder,
        under `flock(lock)`."""
        with os.fdopen(open_private(self.path, os.O_RDWR | os.O_APPEND), "a+b", buffering=0) as handle:
            fcntl.flock(handle, lock)
            yield handle

    def _append_locked(self, handle: BinaryIO, fields: dict) -> dict:
        """`append` with the log already open and locked exclusively."""
        end = handle.seek(0, os.SEEK_END)
        last = _last_record(handle, self.path)
        record = {
            **fields,
            "time": _now(),
            "seq": last["seq"] + 1 if last else 1,
            "prev_hash": last["hash"] if last else GENESIS,
        }
        record["hash"] = record_hash(record)
        data = canonical(record) + b"\n"
        try:
            while data:
                data = data[handle.write(data) :]
            os.fsync(handle.fileno())
        except OSError as exc:
            os.ftruncate(handle.fileno(), end)  # a partial record must not seal the log
            raise AuditUnavailableError(f"cannot write the audit log {self.path}: {exc}") from None
        self._write_head(record)
        return record

    def _write_head(self, record: dict) -> None:
        """Replaced atomically but not fsynced: after a crash the head may lag the log, which `verify` accepts
        (only a log *shorter* than its head lost records), and a second fsync would double the cost of a record."""
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w") as handle:
            handle.write(json.dumps({"seq": record["seq"], "hash": record["hash"]}))
        os.replace(tmp, self.head_path)


def _now() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a `Z`: `2025-01-01T12:00:00.000Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _last_record(handle: BinaryIO, path: Path) -> dict | None:
    """The last record, read backwards from the end so appends stay O(1) however long the log grows; None for an
    empty log. Raises AuditUnavailableError when the log does not end with a complete record."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None
    tail, position = b"", end
    while position > 0 and tail.count(b"\n") < 2:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
    try:
        if not tail.endswith(b"\n"):
            raise ValueError("no line end")
        record = json.loads(tail[:-1].rsplit(b"\n", 1)[-1])
        return {"seq": record["seq"], "hash": record["hash"]}
    except (ValueError, TypeError, KeyError):
        raise AuditUnavailableError(
            f"audit log {path} ends with a torn or damaged record (an append was interrupted, e.g. by a power loss); "
            "audited requests are refused until it is sealed: run `rag audit verify`, then `rag audit repair`"
        ) from None


# ---------------------------------------------------------------------------------------------- verification
@dataclass(frozen=True)
class TornTail:
    """The end of a log that is not a complete record: an append cut short (power loss, killed process)."""

    line: int  # 1-based line where the torn bytes begin
    offset: int  # byte offset of the first torn byte
    size: int  # bytes from there to the end of the file
    in_head: bool = False  # the head file names it: it was written whole once, and the storage lost its end


@dataclass(frozen=True)
class Verification:
    """What `verify` found: how many records passed, the last good hash, and the first fault if any."""

    records: int
    head: str | None  # hash of the last record, to be anchored elsewhere
    bad_line: int | None = None  # 1-based line of the first bad record, None when the log is intact
    reason: str = ""
    torn: TornTail | None = None  # set when a torn tail is the log's only fault, which `repair` can seal

    @property
    def ok(self) -> bool:
        """The log is intact: every record, link and the head check out, and no torn tail."""
        return not self.reason


def verify(path: Path) -> Verification:
    """Check every record's hash, link and number in order, then the head; stop at the first bad one.

    A last line that is not a complete record (no line end, or not JSON) is a torn tail rather than tampering: the
    records before it are checked against the head as usual, and if they pass, the result names the tail (`torn`).
    Raises RagError when the log does not exist."""
    path = _require(Path(path))
    head = _read_head(path)
    size = path.stat().st_size
    previous: dict | None = None
    hash_at_head = None
    torn = None
    for number, offset, line, terminated in _lines(path):
        record, reason = _check(line, previous)
        last = offset + len(line) + terminated == size
        if last and (not terminated or reason == NOT_JSON):
            torn = TornTail(number, offset, size - offset)
            break
        if record is None:  # `_check` gives a reason exactly when it gives no record
            return Verification(number - 1, previous["hash"] if previous else None, number, reason)
        if head and record["seq"] == head.get("seq"):
            hash_at_head = record["hash"]
        previous = record
    count, last_hash = (previous["seq"], previous["hash"]) if previous else (0, None)
    # The head names the torn record itself when the storage lost the end of a record it had acknowledged (a disk
    # cache without power protection): still one torn record, not records removed.
    head_names_torn = torn is not None and head is not None and head.get("seq") == count + 1
    bad_line, reason = _check_head(None if head_names_torn else head, count, hash_at_head)
    if not reason and torn:
        torn = replace(torn, in_head=head_names_torn)
        return Verification(
            count,
            last_hash,
            torn.line,
            (
                f"the last record is torn: the {torn.size} bytes from byte {torn.offset} are not a complete record (an "
                "append was interrupted, e.g. by a power loss); `rag audit repair` moves them aside and seals the chain"
            ),
            torn,
        )
    return Verification(count, last_hash, bad_line, reason)


def _keep_aside(path: Path, data: bytes) -> Path:
    """Write `data` to a new `<log>.torn-<UTC time>` beside the log, durably, before the log is cut."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    side = path.with_name(f"{path.name}.torn-{stamp}")
    with os.fdopen(open_private(side, os.O_WRONLY | os.O_EXCL), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the side file's name is durable before the bytes leave the log
    finally:
        os.close(directory)
    return side


def _require(path: Path) -> Path:
    """`path`, if the log exists; raises RagError naming the setting otherwise."""
    if not path.is_file():
        raise RagError(
            f"audit log {path} does not exist: `rag serve` writes it from its first request; "
            "otherwise check audit.path (`rag config show`)"
        )
    return path


def _check(line: bytes, previous: dict | None) -> tuple[dict | None, str]:
    """(the record, "") when `line` is a record whose hash, seq and prev_hash follow `previous`; else (None, why)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None, NOT_JSON
    if not isinstance(record, dict) or record.get("hash") != record_hash(record):
        return None, "its content does not match its hash: the record was edited"
    expected_seq = previous["seq"] + 1 if previous else 1
    if record.get("prev_hash") != (previous["hash"] if previous else GENESIS) or record.get("seq") != expected_seq:
        return None, (
            f"record {record.get('seq')} does not link to the record before it (record {expected_seq} was "
            "expected): records were removed, inserted or reordered"
        )
    return record, ""


def _check_head(head: dict | None, count: int, hash_at_head: str | None) -> tuple[int | None, str]:
    """The head is written after each append: a log shorter than the head lost its last records."""
    if head is None:
        return None, ""  # a log written before the head existed, or copied without it
    if not isinstance(head.get("seq"), int):
        return None, "the head file is damaged"
    if head["seq"] > count:
        return count + 1, (
            f"the log ends at record {count} but {head['seq']} were written (head file): records were "
            "removed from the end"
        )
    if hash_at_head != head.get("hash"):
        return head["seq"], f"record {head['seq']} differs from the hash kept in the head file: the log was rewritten"
    return None, ""


def _lines(path: Path) -> Iterator[tuple[int, int, bytes, bool]]:
    """(1-based number, byte offset, content without the line end, whether it had one) of every line."""
    offset = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            terminated = line.endswith(b"\n")
            yield number, offset, line[:-1] if terminated else line, terminated
            offset += len(line)


def _read_head(path: Path) -> dict | None:
    """The head file's `{"seq", "hash"}`, None when there is none, {} when it is not JSON (reported as damaged)."""
    head = path.with_name(path.name + ".head")
    try:
        return json.loads(head.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
