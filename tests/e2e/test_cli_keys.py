"""``treadle keys create|list|revoke`` through the real CLI (a subprocess), on SQLite and on
PostgreSQL: the key is printed once and works; listing never shows it; revoking stops it at
once; mistakes are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from processes import subprocess_env
from treadle.store import open_store


def treadle(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("TREADLE_")}
    return subprocess.run([sys.executable, "-m", "treadle", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert result.stdout == "" and "Traceback" not in result.stderr, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: "), line
    return line


def _session(tmp_path: Path, url: str) -> None:
    made = treadle(tmp_path, "keys", "create", "--tenant", "acme", "--role", "runner",
                   "--name", "ci", "--store", url)
    key = ok(made).strip()
    assert key.startswith("tdl_") and len(key.splitlines()) == 1  # the key alone on stdout
    key_id = key.split("_")[1]
    assert f"created key {key_id} (ci) for tenant acme, role runner" in made.stderr
    assert "shown once" in made.stderr
    other = json.loads(ok(treadle(tmp_path, "keys", "create", "--tenant", "beta", "--role",
                                  "admin", "--store", url, "--json")))
    assert other["key"].startswith(f"tdl_{other['key_id']}_")
    assert (other["tenant_id"], other["role"], other["name"], other["revoked_at"]) == (
        "beta", "admin", None, None)

    store = open_store(url)
    try:
        found = store.verify_api_key(key)
        assert found is not None and (found.key_id, found.tenant_id) == (key_id, "acme")
    finally:
        store.close()

    table = ok(treadle(tmp_path, "keys", "list", "--store", url))
    lines = table.splitlines()
    assert lines[0].split() == ["id", "tenant", "role", "name", "created", "revoked"]
    assert lines[1].split()[:4] == [key_id, "acme", "runner", "ci"]
    assert lines[1].split()[-1] == "-"
    assert lines[2].split()[:4] == [other["key_id"], "beta", "admin", "-"]
    listed = json.loads(ok(treadle(tmp_path, "keys", "list", "--store", url, "--json")))
    assert [k["key_id"] for k in listed] == [key_id, other["key_id"]]
    assert all(set(k) == {"key_id", "tenant_id", "role", "name", "created_at", "revoked_at"}
               for k in listed)
    only = json.loads(ok(treadle(tmp_path, "keys", "list", "--tenant", "beta", "--store", url,
                                 "--json")))
    assert [k["key_id"] for k in only] == [other["key_id"]]
    everything = table + json.dumps(listed)
    assert key.split("_", 2)[2] not in everything and other["key"] not in everything

    revoked = ok(treadle(tmp_path, "keys", "revoke", key_id, "--store", url))
    assert revoked.startswith(f"revoked key {key_id} (tenant acme, role runner) at "), revoked
    store = open_store(url)
    try:
        assert store.verify_api_key(key) is None
        assert store.verify_api_key(other["key"]) is not None
    finally:
        store.close()
    after = ok(treadle(tmp_path, "keys", "list", "--store", url)).splitlines()
    assert after[1].split()[-1].endswith("Z")  # its revocation time
    again = ok(treadle(tmp_path, "keys", "revoke", key_id, "--store", url))
    assert again == revoked  # the first revocation time stays

    line = one_error_line(treadle(tmp_path, "keys", "revoke", "0123456789abcdef", "--store", url))
    assert "no API key '0123456789abcdef'" in line and "treadle keys list" in line


def test_keys_on_sqlite(tmp_path: Path) -> None:
    _session(tmp_path, f"sqlite:///{tmp_path}/keys.db")


@pytest.mark.postgres
def test_keys_on_postgres(tmp_path: Path, pg_url: str) -> None:
    _session(tmp_path, pg_url)


def test_mistakes_are_one_line_and_create_no_store(tmp_path: Path) -> None:
    bad_role = one_error_line(treadle(tmp_path, "keys", "create", "--tenant", "acme", "--role",
                                      "owner", "--store", "sqlite:///k.db"))
    assert bad_role == ("error: unknown role 'owner' (use one of viewer, runner, approver, "
                        "admin)")
    bad_tenant = one_error_line(treadle(tmp_path, "keys", "create", "--tenant", "a b", "--role",
                                        "viewer", "--store", "sqlite:///k.db"))
    assert bad_tenant.startswith("error: invalid tenant 'a b': use 1 to 128 letters")
    for args in (["list"], ["revoke", "abc"]):
        line = one_error_line(treadle(tmp_path, "keys", *args, "--store", "sqlite:///k.db"))
        assert line.startswith("error: no treadle store at sqlite:///k.db"), line
    assert list(tmp_path.iterdir()) == []
    missing = treadle(tmp_path, "keys", "create", "--role", "viewer", "--store", "sqlite:///k.db")
    assert missing.returncode == 2 and "--tenant" in missing.stderr
