"""Webhook delivery: pinned to the checked address, signed, never redirected."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from treadle.server import webhook_signature
from treadle.server.webhook_policy import Resolve, WebhookPolicy
from treadle.server.webhooks import deliver, pinned_request

SECRET = b"whsec-test"


@dataclass
class Receiver:
    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 recording (path, headers, body) of each POST."""
    state = Receiver(0)

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            state.requests.append((self.path, dict(self.headers.items()), body))
            self.send_response(state.status)
            if state.status == 302:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    state.port = srv.server_port
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()


def _resolver(*answers: Sequence[str]) -> tuple[list[str], Resolve]:
    asked: list[str] = []
    queue = list(answers)

    async def resolve(host: str, _port: int) -> Sequence[str]:
        asked.append(host)
        return queue.pop(0)

    return asked, resolve


LOOPBACK_OK = WebhookPolicy.from_config({"url": {"disable_loopback": False},
                                         "headers": {"X-Team": "agents"}})


def test_a_delivery_goes_to_the_checked_address_signed(receiver: Receiver) -> None:
    # hooks.test exists in no DNS: the request can only reach the receiver through the
    # address the one lookup returned.
    asked, resolve = _resolver(["127.0.0.1"])
    body = {"run_id": "r1", "status": "success", "values": {"n": 10}}
    ok = asyncio.run(deliver(f"http://hooks.test:{receiver.port}/hook?token=t", body,
                             policy=LOOPBACK_OK, attempts=1, timeout=5, secret=SECRET,
                             resolve=resolve))
    assert ok and asked == ["hooks.test"]
    [(path, headers, raw)] = receiver.requests
    assert path == "/hook?token=t" and json.loads(raw) == body
    assert headers["Host"] == f"hooks.test:{receiver.port}"
    assert headers["X-Team"] == "agents" and headers["Content-Type"] == "application/json"
    signature = headers[webhook_signature.HEADER]
    assert webhook_signature.verify(SECRET, raw, signature)
    assert not webhook_signature.verify(b"another secret", raw, signature)
    assert not webhook_signature.verify(SECRET, raw.replace(b"10", b"11"), signature)


def test_without_a_secret_nothing_is_signed(receiver: Receiver) -> None:
    ok = asyncio.run(deliver(f"http://127.0.0.1:{receiver.port}/", {"run_id": "r"},
                             policy=LOOPBACK_OK, attempts=1, timeout=5))
    assert ok and webhook_signature.HEADER not in receiver.requests[0][1]


def test_rebinding_to_loopback_after_the_check_is_refused(receiver: Receiver,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    url = f"http://rebind.test:{receiver.port}/hook?token=secret-token"
    asked, resolve = _resolver(["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"])
    policy = WebhookPolicy()  # loopback refused (the default)
    asyncio.run(policy.check(url, resolve))  # at create: the name looked public
    ok = asyncio.run(deliver(url, {"run_id": "r2"}, policy=policy, attempts=3, timeout=5,
                             resolve=resolve, base_delay=0))
    assert not ok and receiver.requests == []
    assert asked == ["rebind.test", "rebind.test"]  # refused at once: no retry
    assert "resolves to 127.0.0.1, which is a loopback address" in caplog.text
    assert "secret-token" not in caplog.text  # the query is not logged


def test_loopback_and_private_targets_are_refused_at_send(receiver: Receiver) -> None:
    ok = asyncio.run(deliver(f"http://localhost:{receiver.port}/", {"run_id": "r3"},
                             policy=WebhookPolicy(), attempts=2, timeout=5, base_delay=0))
    assert not ok
    _, resolve = _resolver(["10.20.30.40"])
    private = WebhookPolicy.from_config({"url": {"disable_private": True}})
    ok = asyncio.run(deliver("http://internal.test/", {"run_id": "r4"}, policy=private,
                             attempts=2, timeout=5, base_delay=0, resolve=resolve))
    assert not ok and receiver.requests == []


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    ok = asyncio.run(deliver(f"http://127.0.0.1:{receiver.port}/", {"run_id": "r5"},
                             policy=LOOPBACK_OK, attempts=3, timeout=5, base_delay=0))
    assert not ok and len(receiver.requests) == 1  # final: neither followed nor retried


def test_an_unresolvable_host_is_retried(receiver: Receiver) -> None:
    asked, resolve = _resolver([], ["127.0.0.1"])
    ok = asyncio.run(deliver(f"http://later.test:{receiver.port}/", {"run_id": "r6"},
                             policy=LOOPBACK_OK, attempts=2, timeout=5, base_delay=0,
                             resolve=resolve))
    assert ok and len(asked) == 2 and len(receiver.requests) == 1


def test_https_keeps_the_name_for_sni_and_the_certificate() -> None:
    _, resolve = _resolver(["93.184.216.34"])

    async def build() -> httpx.Request | None:
        async with httpx.AsyncClient() as client:
            target = WebhookPolicy().target("https://hooks.example.com/h")
            return await pinned_request(client, WebhookPolicy(), target, b"{}", secret=None,
                                        resolve=resolve, timeout=5)

    request = asyncio.run(build())
    assert request is not None
    assert str(request.url) == "https://93.184.216.34/h"
    assert request.headers["Host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    _, resolve = _resolver(["2606:2800:220:1::1946"])
    request = asyncio.run(build())
    assert request is not None and str(request.url) == "https://[2606:2800:220:1::1946]/h"


def test_a_signature_expires() -> None:
    now = int(time.time())
    header = webhook_signature.sign(SECRET, b"{}", now - 600)
    assert not webhook_signature.verify(SECRET, b"{}", header)
    assert webhook_signature.verify(SECRET, b"{}", header, now=now - 590)
    assert not webhook_signature.verify(SECRET, b"{}", "v1=abc")
