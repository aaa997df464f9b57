"""treadle.listen.bind: a server's port, bound before it starts, or one ConfigError line."""

from __future__ import annotations

import socket

import pytest

from treadle.errors import ConfigError
from treadle.listen import bind


def test_binds_without_listening() -> None:
    with bind("127.0.0.1", 0, option="--port") as sock:
        port = sock.getsockname()[1]
        assert port > 0
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))  # not listening until the server is ready
        sock.listen()
        with socket.socket() as client:
            client.connect(("127.0.0.1", port))


def test_a_port_in_use_names_the_option() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            bind("127.0.0.1", port, option="--port / TREADLE_WORKER_PORT")
    assert str(caught.value) == (
        f"port {port} is already in use on 127.0.0.1 (another process listens there): stop it "
        "or choose another port with --port / TREADLE_WORKER_PORT")


@pytest.mark.parametrize(("host", "message"), [
    ("192.0.2.1", "192.0.2.1 is not an address of this machine; check --host / TREADLE_HOST"),
    ("nosuch.invalid", "cannot listen on 'nosuch.invalid': not an address or host name"),
])
def test_a_host_that_is_not_this_machine(host: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        bind(host, 0, option="--port")
