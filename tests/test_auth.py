"""API keys: stored only as hashes, each standing for one principal; revocation is seen without a restart."""

from __future__ import annotations

import pytest

from rag.auth import KeyStore
from rag.errors import AuthenticationError, InputError


def test_keys_are_stored_hashed_and_authenticate_their_principal(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create("finance", ["public", "internal"], admin=True)
    assert key not in (tmp_path / "keys.json").read_text() and key.split("_")[2] not in (tmp_path / "keys.json").read_text()
    assert oct((tmp_path / "keys.json").stat().st_mode & 0o777) == "0o600"
    principal = KeyStore(tmp_path / "keys.json").authenticate(key)
    assert (principal.id, principal.labels, principal.admin, principal.key_id) == (
        "finance", frozenset({"public", "internal"}), True, record.key_id)
    assert "sha256" not in record.public()


@pytest.mark.parametrize("presented", [None, "", "Bearer x", "rag_00000000_" + "A" * 43])
def test_missing_malformed_or_unknown_keys_are_refused(tmp_path, presented):
    store = KeyStore(tmp_path / "keys.json")
    store.create("finance", ["public"])
    with pytest.raises(AuthenticationError):
        store.authenticate(presented)


def test_a_revoked_key_is_refused_by_a_store_that_already_loaded_it(tmp_path):
    server_view = KeyStore(tmp_path / "keys.json")
    key, record = KeyStore(tmp_path / "keys.json").create("finance", ["public"])
    assert server_view.authenticate(key).id == "finance"
    KeyStore(tmp_path / "keys.json").revoke(record.key_id)  # `rag keys revoke` in another process
    with pytest.raises(AuthenticationError):
        server_view.authenticate(key)


@pytest.mark.parametrize("principal, labels", [("a b", ["public"]), ("ok", []), ("ok", ["../x"])])
def test_names_and_labels_are_checked(tmp_path, principal, labels):
    with pytest.raises(InputError):
        KeyStore(tmp_path / "keys.json").create(principal, labels)
