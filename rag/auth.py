"""API keys and the principals they stand for; only hashes of the keys are ever written down.

A key reads `rag_<id>_<secret>`: `id` (8 hex characters) is public and names the key in `rag keys list`, in the audit
log and in `rag keys revoke`; `secret` is 32 random bytes. The key file keeps sha256(key) and never the key: the secret
has 256 bits of entropy, so a slow password hash would add nothing but per-request latency.

A principal is who a key belongs to: an id, the access labels it holds (it sees a document iff it holds all the
document's labels) and whether it may change the index (upload, delete).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import AuthenticationError, ConfigError, InputError, NotFoundError
from .private_files import open_private
from .settings import Settings
from .store import SearchFilter

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_KEY = re.compile(r"rag_([0-9a-f]{8})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: `id`, the access `labels` it holds, whether it may change the index (`admin`), and the
    id of the API key it authenticated with (`key_id`, None when keys are switched off)."""

    id: str
    labels: frozenset[str]
    admin: bool = False
    key_id: str | None = None  # None when keys are switched off

    def search_filter(self) -> SearchFilter:
        """What this principal may see, applied inside every search and listing."""
        return SearchFilter(labels=self.labels)


@dataclass(frozen=True)
class KeyRecord:
    """One line of the key file: the key's public id, sha256 of the whole key (hex), its principal, labels and admin
    right, and when it was created and revoked (Unix seconds; `revoked` None while it is valid)."""

    key_id: str
    sha256: str
    principal: str
    labels: tuple[str, ...]
    admin: bool
    created: float
    revoked: float | None = None

    def principal_of(self) -> Principal:
        """The principal a request authenticated with this key acts for."""
        return Principal(self.principal, frozenset(self.labels), self.admin, self.key_id)

    def public(self) -> dict:
        """Everything but the hash, for `rag keys list`."""
        return {k: v for k, v in asdict(self).items() if k != "sha256"}


def checked_name(value: str, what: str) -> str:
    """`value` unchanged if it is a valid principal id or label: 1-64 of `A-Za-z0-9._:@-`, starting with a letter or
    digit (they end up in filters, file paths and logs). Raises InputError naming `what` otherwise."""
    if not _NAME.fullmatch(value):
        raise InputError(
            f"{what} {value[:80]!r} is not allowed: use 1-64 letters, digits and . _ : @ - (starting with a letter "
            "or digit)"
        )
    return value


def checked_labels(labels: Iterable[str]) -> frozenset[str]:
    """The labels as a set, each checked by `checked_name`; raises InputError if one is invalid or there are none."""
    checked = frozenset(checked_name(label, "label") for label in labels)
    if not checked:
        raise InputError("at least one access label is needed, e.g. public")
    return checked


def keys_path(settings: Settings) -> Path:
    """The key file: `server.keys_file`, or `keys.json` in the data directory."""
    return settings.server.keys_file or settings.data_dir / "keys.json"


class KeyStore:
    """The key file; re-read when it changes on disk, so `rag keys revoke` takes effect without a restart."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._records: dict[str, KeyRecord] = {}
        self._loaded: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the version in memory

    # ------------------------------------------------------------------ reading
    def records(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first. Raises ConfigError if the key file is damaged."""
        self._reload()
        return sorted(self._records.values(), key=lambda r: r.created)

    def authenticate(self, key: str | None) -> Principal:
        """The principal of a valid, unrevoked key; anything else is one and the same AuthenticationError.

        The hashes are compared in constant time (`hmac.compare_digest`). Raises ConfigError if the file is damaged.
        """
        key = key or ""
        match = _KEY.fullmatch(key)
        self._reload()
        record = self._records.get(match.group(1)) if match else None
        if record is None or record.revoked or not hmac.compare_digest(record.sha256, _hash(key)):
            raise AuthenticationError("missing, unknown or revoked API key; send `Authorization: Bearer <key>`")
        return record.principal_of()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._loaded = {}, None
            return
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # every write replaces the file: a new inode
        if self._loaded != version:
            self._records = _read(self.path)
            self._loaded = version

    # ------------------------------------------------------------------ writing (the `rag keys` commands)
    def create(self, principal: str, labels: Iterable[str], *, admin: bool = False) -> tuple[str, KeyRecord]:
        """A new key and its record; the key itself is returned once and stored nowhere.

        Raises InputError for an invalid principal id or labels, ConfigError if the key file is damaged."""
        checked_name(principal, "principal id")
        label_set = checked_labels(labels)
        with self._editing() as records:
            key_id = _new_key_id(records)
            key = f"rag_{key_id}_{secrets.token_urlsafe(32)}"
            record = KeyRecord(key_id, _hash(key), principal, tuple(sorted(label_set)), admin, time.time())
            records[key_id] = record
        return key, record

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark the key revoked (kept in the file, for the audit log's key ids); returns its new record.

        Raises NotFoundError for an unknown id. Takes effect in running servers at their next request."""
        with self._editing() as records:
            if key_id not in records:
                raise NotFoundError(f"no API key with id {key_id!r}; `rag keys list` shows the ids")
            records[key_id] = record = KeyRecord(**{**asdict(records[key_id]), "revoked": time.time()})
        return record

    @contextmanager
    def _editing(self) -> Iterator[dict[str, KeyRecord]]:
        """Read-modify-write under an exclusive lock, replaced atomically, readable by the owner only (file 0600, a
        folder it creates 0700)."""
        with os.fdopen(open_private(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = _read(self.path) if self.path.exists() else {}
            yield records
            tmp = self.path.with_name(self.path.name + ".tmp")
            with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w") as handle:
                json.dump(
                    {"format": "sovereign-rag-keys/1", "keys": [asdict(r) for r in records.values()]}, handle, indent=2
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)


def _read(path: Path) -> dict[str, KeyRecord]:
    """The records of the key file by key id; raises ConfigError when it cannot be parsed."""
    try:
        rows = json.loads(path.read_text())["keys"]
        return {row["key_id"]: KeyRecord(**{**row, "labels": tuple(row["labels"])}) for row in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"key file {path} is damaged ({exc}); restore it from a backup or recreate the keys"
        ) from None


def _new_key_id(records: dict[str, KeyRecord]) -> str:
    while (key_id := secrets.token_hex(4)) in records:
        pass
    return key_id


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
