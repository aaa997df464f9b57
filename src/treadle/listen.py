"""The listening socket of treadle's HTTP servers (the API, a worker's endpoint).

A server binds its port first, before it opens the store or loads graphs, so a port in use
stops it at once in one line (:class:`~treadle.errors.ConfigError`, exit code 1) rather
than after start-up, in uvicorn's words and an asyncio traceback. The bound socket is
then handed to uvicorn, which listens on it once the server is ready.
"""

from __future__ import annotations

import errno
import socket

from treadle.errors import ConfigError

__all__ = ["bind"]


def bind(host: str, port: int, *, option: str) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (not listening yet); ``option`` names the
    setting that chose the port, for the error message (``--port / TREADLE_PORT``)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host!r}: not an address or host name this machine "
                          f"resolves ({exc}); check --host / TREADLE_HOST") from None
    sock = socket.socket(family, kind, proto)
    # As uvicorn does: a port whose previous server left connections in TIME_WAIT is free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            message = (f"port {port} is already in use on {host} (another process listens "
                       f"there): stop it or choose another port with {option}")
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = (f"cannot listen on {where}: {host} is not an address of this machine; "
                       "check --host / TREADLE_HOST")
        elif exc.errno == errno.EACCES:
            message = (f"cannot listen on {where}: ports below 1024 need privileges; choose "
                       f"another port with {option}")
        else:
            message = f"cannot listen on {where}: {exc.strerror or exc}"
        raise ConfigError(message) from None
    return sock
