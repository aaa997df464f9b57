"""The API keys contract (``treadle.store.api_keys.ApiKeyStore``), for every driver.

A backend's test module subclasses :class:`ApiKeysContract` and provides a function-scoped
``store`` fixture yielding a fresh, migrated, empty store (as for
``resources_contract.ResourcesContract``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from treadle.errors import InputError
from treadle.store.api_keys import ROLES, ApiKey, ApiKeyStore
from treadle.store.base import Store

TICK = 0.01  # sleep this long so the database clock moves on (SQLite: milliseconds)


class ApiKeysContract:
    """Backend-independent tests; subclasses provide the ``store`` fixture."""

    def test_the_store_is_an_api_key_store(self, store: Store) -> None:
        assert isinstance(store, ApiKeyStore)

    def test_create_returns_the_record_and_the_key_once(self, store: Store) -> None:
        before = store.now()
        record, key = store.create_api_key("acme", "runner", "ci")
        assert (record.tenant_id, record.role, record.name) == ("acme", "runner", "ci")
        assert record.revoked_at is None and not record.revoked
        assert before - 1 <= record.created_at <= store.now() + 1
        prefix, key_id, secret = key.split("_", 2)
        assert (prefix, key_id) == ("tdl", record.key_id)
        assert len(secret) == 43  # 32 random bytes, URL-safe base64
        assert store.verify_api_key(key) == record
        assert store.list_api_keys() == [record]

    def test_the_key_is_never_stored_or_listed(self, store: Store) -> None:
        record, key = store.create_api_key("acme", "viewer")
        secret = key.split("_", 2)[2]
        assert set(dataclasses.asdict(record)) == {
            "key_id", "tenant_id", "role", "name", "created_at", "revoked_at"}
        (row,) = store.db.all("reading the keys table", "api_key_hash",
                              {"key_id": record.key_id})
        assert secret not in repr(row) and key not in repr(row)
        assert row[0] == hashlib.sha256(secret.encode()).hexdigest()

    def test_every_key_is_different(self, store: Store) -> None:
        made = [store.create_api_key("acme", "viewer") for _ in range(5)]
        assert len({r.key_id for r, _ in made}) == len({k for _, k in made}) == 5
        for record, key in made:
            assert store.verify_api_key(key) == record

    def test_name_is_optional(self, store: Store) -> None:
        record, _ = store.create_api_key("acme", "admin")
        assert record.name is None
        blank, _ = store.create_api_key("acme", "admin", "")
        assert blank.name is None

    @pytest.mark.parametrize("role", ROLES)
    def test_every_role_is_accepted(self, store: Store, role: str) -> None:
        record, key = store.create_api_key("t1", role)
        assert record.role == role
        verified = store.verify_api_key(key)
        assert verified is not None and verified.role == role

    def test_a_bad_role_or_tenant_is_refused_with_what_to_use(self, store: Store) -> None:
        with pytest.raises(InputError, match=r"unknown role 'owner' \(use one of viewer, "
                           r"runner, approver, admin\)"):
            store.create_api_key("acme", "owner")
        for tenant in ("", "a.b", "with space", "x" * 129, "-lead"):
            with pytest.raises(InputError, match="invalid tenant"):
                store.create_api_key(tenant, "viewer")
        assert store.list_api_keys() == []

    def test_wrong_malformed_and_unknown_keys_do_not_verify(self, store: Store) -> None:
        record, key = store.create_api_key("acme", "admin")
        prefix, key_id, secret = key.split("_", 2)
        other = "A" if secret[0] != "A" else "B"
        for bad in (
            f"tdl_{key_id}_{other}{secret[1:]}",  # one character of the secret differs
            f"tdl_{'0' * 16}_{secret}",  # unknown id, the right secret
            f"tdl_{key_id}_{secret[:-1]}",  # too short
            f"tdl_{key_id}_{secret}x",  # too long
            f"xyz_{key_id}_{secret}",  # not a treadle key
            key_id, secret, "", "tdl_", "Bearer " + key,
        ):
            assert store.verify_api_key(bad) is None, bad
        assert store.verify_api_key(f"  {key} ") == record  # a pasted key's whitespace

    def test_revoke_is_immediate_and_kept(self, store: Store) -> None:
        keep, keep_key = store.create_api_key("acme", "viewer", "keep")
        gone, gone_key = store.create_api_key("acme", "runner", "gone")
        time.sleep(TICK)
        revoked = store.revoke_api_key(gone.key_id)
        assert revoked is not None and revoked.revoked_at is not None
        assert revoked.revoked_at >= gone.created_at
        assert dataclasses.replace(revoked, revoked_at=None) == gone
        assert store.verify_api_key(gone_key) is None
        assert store.verify_api_key(keep_key) == keep
        assert store.list_api_keys() == [keep, revoked]
        time.sleep(TICK)
        again = store.revoke_api_key(gone.key_id)
        assert again == revoked  # the first revocation time stays
        assert store.revoke_api_key("0123456789abcdef") is None

    def test_list_is_in_creation_order_and_filters_by_tenant(self, store: Store) -> None:
        made: list[ApiKey] = []
        for tenant in ("b", "a", "b", "c", "a"):
            made.append(store.create_api_key(tenant, "viewer")[0])
        assert store.list_api_keys() == made
        assert store.list_api_keys("a") == [made[1], made[4]]
        assert store.list_api_keys("b") == [made[0], made[2]]
        assert store.list_api_keys("nobody") == []
