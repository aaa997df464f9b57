"""Same-origin and Host-name parsing of the browser guards (origin_check, host_check)."""

from __future__ import annotations

import pytest

from treadle.server.host_check import host_name, parse_hosts
from treadle.server.origin_check import same_origin


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://localhost:2024", "localhost:2024", True),
    ("http://127.0.0.1:2024", "127.0.0.1:2024", True),
    ("http://[::1]:2024", "[::1]:2024", True),
    ("https://api.example.com", "api.example.com", True),
    ("https://api.example.com", "api.example.com:443", True),
    ("https://api.example.com:443", "api.example.com", True),
    ("http://localhost:3000", "localhost:2024", False),
    ("https://evil.example", "localhost:2024", False),
    ("https://api.example.com", "api.example.com:80", False),
    ("null", "localhost:2024", False),
    ("file://", "localhost", False),
    ("http://localhost:2024", "", False),
])
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


def test_host_names_and_the_setting() -> None:
    assert host_name("[::1]:2024") == "::1"
    assert host_name("LocalHost:1") == "localhost"
    assert host_name("example.com.") == "example.com"
    assert host_name("[bad") is None
    assert parse_hosts(None) is None and parse_hosts("*") is None
    assert parse_hosts(" api.example.com, [::1] ,*.corp.example") == \
        ("api.example.com", "::1", "*.corp.example")
