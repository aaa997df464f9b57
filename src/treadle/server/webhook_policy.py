"""Where a run's webhook may go: langgraph.json's ``webhooks`` policy, checked twice.

The policy is LangGraph Platform's ``webhooks`` key (``url``: ``require_https``,
``allowed_domains`` with ``*.example.com`` wildcards, ``allowed_ports``, ``max_url_length``,
``disable_loopback``; ``headers`` with ``${{ env.VAR }}`` templates limited to
``env_prefix``), plus treadle's ``url.disable_private``. A URL is checked when the run (or
cron) is created — a refusal is a 422 — and again when the webhook is sent: the host is
resolved once, **every** address it resolves to is checked, and the delivery connects to
the checked address (:mod:`treadle.server.webhooks`), so a name that resolves elsewhere
between the two (DNS rebinding) cannot reach an address the policy refuses.

Addresses, by what they are (IPv4-mapped IPv6 addresses are judged as the IPv4 address):

* never: unspecified (``0.0.0.0/8``, ``::``), link-local (``169.254.0.0/16`` — cloud metadata
  services such as ``169.254.169.254`` —, ``fe80::/10``), multicast, reserved, broadcast;
* loopback (``127.0.0.0/8``, ``::1``): refused unless ``url.disable_loopback`` is ``false``
  (LangGraph's ``disable_loopback`` forbids relative URLs, which treadle never accepts);
* other non-public addresses (RFC 1918, CGNAT, unique-local ``fc00::/7``, documentation
  ranges): allowed unless ``url.disable_private`` is ``true``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from treadle.errors import ConfigError, WebhookRefusedError

__all__ = ["IPAddress", "Resolve", "Target", "WebhookPolicy", "classify", "literal",
           "resolve_addresses", "resolve_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolve(host, port)`` -> the addresses ``host`` resolves to (tests pass their own).
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TEMPLATE = re.compile(r"\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Headers a webhook's own request sets: static headers may not replace them.
_RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding",
                     "connection", "x-treadle-signature"}
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: what to connect to and how to name it."""

    url: str
    parts: SplitResult
    host: str  # lower case, without brackets or a trailing dot
    port: int

    @property
    def shown(self) -> str:
        """The URL for logs: no user info, query or fragment (they may hold tokens)."""
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if self.parts.port is not None:
            netloc += f":{self.parts.port}"
        return f"{self.parts.scheme}://{netloc}{self.parts.path}"


@dataclass(frozen=True)
class WebhookPolicy:
    """langgraph.json's ``webhooks`` (the defaults when it has none)."""

    require_https: bool = False
    allowed_domains: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    max_url_length: int = 4096
    allow_loopback: bool = False
    allow_private: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    disabled: bool = False  # http.disable_webhooks: URLs are checked, nothing is sent

    @classmethod
    def from_config(cls, webhooks: Mapping[str, Any] | None, source: str = "langgraph.json",
                    environ: Mapping[str, str] | None = None, *,
                    disabled: bool = False) -> WebhookPolicy:
        """The policy of a ``webhooks`` object (types already checked by
        :func:`treadle.langgraph_json.check`); header templates are resolved from
        ``environ`` now, so a missing variable stops start-up in one line. ``disabled``:
        langgraph.json's ``http.disable_webhooks``."""
        if not webhooks:
            return cls(disabled=disabled)
        url = webhooks.get("url") or {}
        where = f"{source}: webhooks"
        length = url.get("max_url_length")
        if length is not None and length < 10:
            raise ConfigError(f'{where}.url.max_url_length must be at least 10, not {length}')
        ports = tuple(url.get("allowed_ports") or ())
        bad = [p for p in ports if not 0 < p < 65536]
        if bad:
            raise ConfigError(f"{where}.url.allowed_ports: {bad[0]} is not a port (1-65535)")
        domains = tuple(d.strip().lower().rstrip(".") for d in url.get("allowed_domains") or ())
        for domain in domains:
            name = domain[2:] if domain.startswith("*.") else domain
            if not name or "*" in name or "/" in name or ":" in name:
                raise ConfigError(f'{where}.url.allowed_domains: "{domain}" is not a host name '
                                  'or "*.domain"')
        prefix = webhooks.get("env_prefix") or "LG_WEBHOOK_"
        env = os.environ if environ is None else environ
        headers: dict[str, str] = {}
        for name, value in (webhooks.get("headers") or {}).items():
            if name.lower() in _RESERVED_HEADERS:
                raise ConfigError(f'{where}.headers: "{name}" is set by treadle itself; '
                                  "remove it")
            headers[name] = _expand(value, prefix, env, f'{where}.headers["{name}"]')
        return cls(require_https=bool(url.get("require_https", False)),
                   allowed_domains=domains, allowed_ports=ports,
                   max_url_length=length or cls.max_url_length,
                   allow_loopback=url.get("disable_loopback") is False,
                   allow_private=not url.get("disable_private", False),
                   headers=headers, disabled=disabled)

    def target(self, url: str) -> Target:
        """The URL's target, or :class:`WebhookRefusedError` saying which rule refuses it."""
        if len(url) > self.max_url_length:
            raise WebhookRefusedError(f"webhook URL is {len(url)} characters long; the "
                                      f"webhooks policy allows {self.max_url_length}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise WebhookRefusedError(f"webhook is not a valid URL ({exc})") from None
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise WebhookRefusedError("webhook must be an absolute http:// or https:// URL")
        if self.require_https and parts.scheme != "https":
            raise WebhookRefusedError("webhook must be an https:// URL (webhooks.url."
                                      "require_https in langgraph.json)")
        target = Target(url, parts, parts.hostname.rstrip("."),
                        port or _DEFAULT_PORTS[parts.scheme])
        if self.allowed_ports and target.port not in self.allowed_ports:
            raise WebhookRefusedError(
                f"webhook port {target.port} is not allowed (webhooks.url.allowed_ports: "
                f"{', '.join(map(str, self.allowed_ports))})")
        if self.allowed_domains and not any(_matches(target.host, d)
                                            for d in self.allowed_domains):
            raise WebhookRefusedError(
                f"webhook host {target.host} is not allowed (webhooks.url.allowed_domains: "
                f"{', '.join(self.allowed_domains)})")
        return target

    def check_address(self, target: Target, address: str) -> IPAddress:
        """``address`` (one the target's host resolved to), or a refusal naming its kind."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        kind = classify(ip)
        allowed = kind == "public" or (kind == "loopback" and self.allow_loopback) or \
            (kind == "private" and self.allow_private)
        if not allowed:
            how = {"loopback": ' unless langgraph.json sets "webhooks": {"url": '
                               '{"disable_loopback": false}}',
                   "private": ' (langgraph.json sets "webhooks.url.disable_private")'}
            shown = "" if literal(target.host) == ip else f" resolves to {ip}, which"
            raise WebhookRefusedError(f"webhook host {target.host}{shown} is a {kind} "
                                      f"address: webhooks may not go there"
                                      f"{how.get(kind, '')}")
        return ip

    async def check(self, url: str, resolve: Resolve | None = None,
                    timeout: float = 10.0) -> tuple[Target, list[IPAddress]]:
        """The URL's target and its checked addresses (all of them), or a refusal."""
        target = self.target(url)
        addresses = await resolve_addresses(target, resolve or resolve_host, timeout)
        if not addresses:
            raise WebhookRefusedError(f"webhook host {target.host} does not resolve")
        return target, [self.check_address(target, a) for a in addresses]


def classify(ip: IPAddress) -> str:
    """``public``, ``loopback``, ``private`` or a kind that is never allowed
    (``unspecified``, ``link-local``, ``multicast``, ``reserved``)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "reserved"
    return "public" if ip.is_global else "private"


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, without blocking)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_addresses(target: Target, resolve: Resolve, timeout: float) -> list[str]:
    """The addresses to check and connect to: the literal, or one lookup's answers (none
    when the host does not resolve, perhaps for now)."""
    if literal(target.host) is not None:
        return [target.host]  # nothing to resolve
    try:
        return list(await asyncio.wait_for(resolve(target.host, target.port), timeout))
    except (OSError, TimeoutError):
        return []


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _matches(host: str, allowed: str) -> bool:
    if allowed.startswith("*."):  # subdomains only, not the apex (as LangGraph does)
        return host.endswith(allowed[1:])
    return host == allowed


def _expand(value: str, prefix: str, env: Mapping[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith(prefix):
            raise ConfigError(f"{where} reads ${{{{ env.{name} }}}}: only variables starting "
                              f'with "{prefix}" (webhooks.env_prefix) may be used')
        if name not in env:
            raise ConfigError(f"{where} reads ${{{{ env.{name} }}}}, which is not set: set "
                              f"{name} in the environment")
        return env[name]

    return _TEMPLATE.sub(one, value)
