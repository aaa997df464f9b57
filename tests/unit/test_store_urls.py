"""Store URLs in messages never carry a password (treadle.store.urls.redact, used by every
message that prints a store URL)."""

from __future__ import annotations

import pytest

from treadle.cluster.pending import worker_command
from treadle.errors import ConfigError
from treadle.store import open_store
from treadle.store.urls import redact, scrub


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://alice:s3cret@db:5432/app", "postgresql://alice:***@db:5432/app"),
    ("postgresql://alice:s3cret@db/app?password=s3cret&sslmode=require",
     "postgresql://alice:***@db/app?password=***&sslmode=require"),
    ("postgresql://db/app?password=s3cret", "postgresql://db/app?password=***"),
    ("mysql://root:s3cret@host/db", "mysql://root:***@host/db"),
    ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
    ("postgresql://alice@db/app", "postgresql://alice@db/app"),
])
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_unparseable_url_is_not_echoed() -> None:
    assert "s3cret" not in redact("postgresql://alice:s3cret@[db/app")


def test_unsupported_store_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigError, match="unsupported store URL") as refused:
        open_store("mysql://root:s3cret@host/db")
    assert "s3cret" not in str(refused.value)
    assert "mysql://root:***@host/db" in str(refused.value)


def test_worker_command_hides_the_password() -> None:
    command = worker_command("postgresql://alice:s3cret@db/app", "ref:chain")
    assert "s3cret" not in command and "alice:***@db" in command


@pytest.mark.parametrize("url", ["postgresql://alice:s3cret@[db/app",
                                 "postgresql://alice:s3cret@db/app?foo=bar",
                                 "postgresql://alice:s3cret@db:notaport/app",
                                 "postgresql://alice:s3cret%zz@db/app"])
def test_a_bad_postgres_url_error_hides_the_password(url: str) -> None:
    try:
        open_store(url).close()
    except ConfigError as exc:
        assert "s3cret" not in str(exc) and "bad PostgreSQL URL" in str(exc), exc
    except Exception as exc:  # noqa: BLE001 - a connection error must not show it either
        assert "s3cret" not in str(exc), exc


def test_scrub_hides_the_url_and_its_password_in_a_driver_message() -> None:
    url = "postgresql://alice:s3cret@[db/app"
    assert "s3cret" not in scrub(f'unparseable: "{url}"', url)
