"""pytest plugin for bench/sdk_suite.py: point the suite's hard-coded server URL at the
server under test.

Some modules of the suite (``test_remote_graph_v3.py``) use a module-level
``URL = "http://localhost:2024"`` instead of ``LANGGRAPH_INTEGRATION_URL``; their
fixtures read it when they run, so it is replaced in each collected module.
"""

from __future__ import annotations

import os

import pytest

_DEFAULT = "http://localhost:2024"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    url = os.environ.get("LANGGRAPH_INTEGRATION_URL")
    if not url:
        return
    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        if getattr(module, "URL", None) == _DEFAULT:
            module.URL = url
