"""langgraph.json's webhooks policy: URL rules, address kinds, header templates."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest

from treadle import langgraph_json
from treadle.errors import ConfigError, WebhookRefusedError
from treadle.server.webhook_policy import Resolve, WebhookPolicy, classify


@pytest.mark.parametrize(("address", "kind"), [
    ("8.8.8.8", "public"), ("2606:4700:4700::1111", "public"),
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "private"), ("fd00::1", "private"), ("::ffff:10.0.0.1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
])
def test_addresses_are_classified(address: str, kind: str) -> None:
    assert classify(ipaddress.ip_address(address)) == kind


def _resolver(*answers: Sequence[str]) -> tuple[list[str], Resolve]:
    """A resolver answering each lookup with the next of ``answers``; the hosts asked."""
    asked: list[str] = []
    queue = list(answers)

    async def resolve(host: str, _port: int) -> Sequence[str]:
        asked.append(host)
        return queue.pop(0)

    return asked, resolve


def _check(policy: WebhookPolicy, url: str, *answers: Sequence[str]) -> str:
    """"ok" or the refusal's message."""
    resolve = _resolver(*answers)[1] if answers else None
    try:
        asyncio.run(policy.check(url, resolve))
    except WebhookRefusedError as exc:
        assert "\n" not in str(exc)
        return str(exc)
    return "ok"


def test_defaults_refuse_loopback_link_local_and_special_addresses() -> None:
    policy = WebhookPolicy()
    assert _check(policy, "http://localhost:9/hook").startswith(
        "webhook host localhost resolves to ")
    assert "loopback" in _check(policy, "http://localhost:9/hook")
    assert "disable_loopback" in _check(policy, "http://127.0.0.1/")
    assert "link-local" in _check(policy, "http://169.254.169.254/latest/meta-data/")
    assert "loopback" in _check(policy, "http://[::ffff:127.0.0.1]:8080/")
    assert "unspecified" in _check(policy, "http://0.0.0.0:2024/")
    assert _check(policy, "https://hooks.example.com/x", ["93.184.216.34"]) == "ok"
    assert _check(policy, "http://10.0.0.5/x") == "ok"  # private: allowed unless disabled


def test_every_address_a_name_resolves_to_is_checked() -> None:
    message = _check(WebhookPolicy(), "https://hooks.example.com/x",
                     ["93.184.216.34", "127.0.0.1"])
    assert message == ("webhook host hooks.example.com resolves to 127.0.0.1, which is a "
                       'loopback address: webhooks may not go there unless langgraph.json '
                       'sets "webhooks": {"url": {"disable_loopback": false}}')


def test_loopback_and_private_switches() -> None:
    open_ = WebhookPolicy.from_config({"url": {"disable_loopback": False}})
    assert _check(open_, "http://localhost:9/hook") == "ok"
    closed = WebhookPolicy.from_config({"url": {"disable_private": True}})
    assert "private address" in _check(closed, "http://192.168.1.10/hook")
    assert "private address" in _check(closed, "https://intranet.example.com/",
                                       ["10.0.0.7"])
    # link-local stays refused whatever the switches say
    everything = WebhookPolicy.from_config({"url": {"disable_loopback": False}})
    assert "link-local" in _check(everything, "http://169.254.169.254/")


def test_url_rules() -> None:
    policy = WebhookPolicy.from_config({"url": {
        "require_https": True, "allowed_domains": ["hooks.example.com", "*.corp.example"],
        "allowed_ports": [443, 8443], "max_url_length": 60}})
    public = ["93.184.216.34"]
    assert _check(policy, "https://hooks.example.com/a", public) == "ok"
    assert _check(policy, "https://a.b.corp.example:8443/a", public) == "ok"
    assert "must be an https:// URL" in _check(policy, "http://hooks.example.com/a")
    assert "host corp.example is not allowed" in _check(policy, "https://corp.example/")
    assert "not allowed" in _check(policy, "https://evilcorp.example/")
    assert "not allowed" in _check(policy, "https://hooks.example.com.evil.test/")
    assert "port 80 is not allowed" in _check(policy, "https://hooks.example.com:80/")
    assert "allows 60" in _check(policy, "https://hooks.example.com/" + "a" * 60)
    assert "absolute http:// or https://" in _check(WebhookPolicy(), "ftp://example.com/")
    assert "does not resolve" in _check(WebhookPolicy(), "https://x.example.com/", [])


def test_header_templates_read_only_prefixed_variables() -> None:
    env = {"LG_WEBHOOK_TOKEN": "s3cret", "HOME": "/root", "HOOK_KEY": "k"}
    policy = WebhookPolicy.from_config(
        {"headers": {"Authorization": "Bearer ${{ env.LG_WEBHOOK_TOKEN }}", "X-Team": "ai"}},
        environ=env)
    assert policy.headers == {"Authorization": "Bearer s3cret", "X-Team": "ai"}
    custom = WebhookPolicy.from_config(
        {"env_prefix": "HOOK_", "headers": {"X-Key": "${{env.HOOK_KEY}}"}}, environ=env)
    assert custom.headers == {"X-Key": "k"}


@pytest.mark.parametrize(("webhooks", "message"), [
    ({"headers": {"X-Home": "${{ env.HOME }}"}},
     'langgraph.json: webhooks.headers["X-Home"] reads ${{ env.HOME }}: only variables '
     'starting with "LG_WEBHOOK_" (webhooks.env_prefix) may be used'),
    ({"headers": {"X-T": "${{ env.LG_WEBHOOK_MISSING }}"}},
     'langgraph.json: webhooks.headers["X-T"] reads ${{ env.LG_WEBHOOK_MISSING }}, which is '
     "not set: set LG_WEBHOOK_MISSING in the environment"),
    ({"headers": {"Host": "x"}},
     'langgraph.json: webhooks.headers: "Host" is set by treadle itself; remove it'),
    ({"url": {"allowed_ports": [0]}},
     "langgraph.json: webhooks.url.allowed_ports: 0 is not a port (1-65535)"),
    ({"url": {"allowed_domains": ["https://x.com"]}},
     'langgraph.json: webhooks.url.allowed_domains: "https://x.com" is not a host name or '
     '"*.domain"'),
    ({"url": {"max_url_length": 3}},
     "langgraph.json: webhooks.url.max_url_length must be at least 10, not 3"),
])
def test_policy_errors_are_one_line(webhooks: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        WebhookPolicy.from_config(webhooks, environ={})
    assert str(err.value) == message


def test_langgraph_json_types_the_webhooks_keys() -> None:
    doc = {"graphs": {"g": "./g.py:graph"},
           "webhooks": {"url": {"allowed_ports": ["443"]}}}
    with pytest.raises(ConfigError) as err:
        langgraph_json.check(doc, "langgraph.json")
    assert str(err.value) == \
        'langgraph.json: "webhooks.url.allowed_ports" must be a list of integers'
    doc["webhooks"] = {"headers": {"X-A": 1}}
    with pytest.raises(ConfigError) as err:
        langgraph_json.check(doc, "langgraph.json")
    assert str(err.value) == 'langgraph.json: "webhooks.headers" must be a JSON object of strings'
