"""treadle's errors -> HTTP statuses: one table, one handler in the server app."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from treadle import errors
from treadle.server.app import _error_handlers, http_status


@pytest.mark.parametrize(("exc", "status"), [
    (errors.RefusedConfigError("config.checkpoint_store is not accepted"), 400),
    (errors.NotFoundError("thread 't' not found"), 404),
    (errors.ConflictError("thread t is busy"), 409),
    (errors.ThreadBusyError("t", ["r"]), 409),
    (errors.IdempotencyKeyError("k", "r"), 409),
    (errors.InputError("run_timeout must be a positive number"), 422),
    (errors.RunSpecVersionError("version 9"), 422),
    (errors.ConfigError("bad"), 422),
    (errors.StoreUnavailableError("down"), 503),
    (errors.StoreError("other"), 500),
    (errors.TreadleError("other"), 500),
])
def test_status(exc: errors.TreadleError, status: int) -> None:
    assert http_status(exc) == status


def test_one_handler_answers_detail() -> None:
    app = FastAPI()
    _error_handlers(app)

    @app.get("/missing")
    async def missing() -> None:
        raise errors.NotFoundError("assistant 'x' not found")

    @app.get("/refused")
    async def refused() -> None:
        raise errors.RefusedConfigError("config.runtime is not accepted over the HTTP API")

    client = TestClient(app)
    r = client.get("/missing")
    assert (r.status_code, r.json()) == (404, {"detail": "assistant 'x' not found"})
    r = client.get("/refused")
    assert r.status_code == 400
    assert r.json() == {"detail": "config.runtime is not accepted over the HTTP API"}


def test_every_error_is_public_and_rooted() -> None:
    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, errors.TreadleError), name
