"""Helpers of the web console's browser tests (tests/e2e/console): a `treadle dev` on the
console's test graphs with gates, and the page's parts by their test ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processes import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["GRAPHS", "WAIT", "live_status", "node", "server_with_gates"]

GRAPHS = Path(__file__).resolve().parent / "e2e" / "console_graphs" / "langgraph.json"
WAIT = 30_000  # ms: the longest any one expectation may take


def server_with_gates(start_server: Callable[..., ServerProcess], tmp_path: Path,
                      *gated: str, args: list[str] | None = None,
                      env: dict[str, str] | None = None,
                      store: str | None = None) -> tuple[ServerProcess, Path]:
    """`treadle dev` on tests/e2e/console_graphs; the nodes named in ``gated`` wait for a
    file of their name in the folder returned."""
    gates = tmp_path / "gates"
    gates.mkdir(exist_ok=True)
    server = start_server("dev", config=GRAPHS, args=args, store=store, env={
        "CONSOLE_GATE_DIR": str(gates), "CONSOLE_GATED": ",".join(gated), **(env or {})})
    return server, gates


def node(page: Page, name: str) -> Any:
    return page.locator(f'[data-testid=graph] g.tg-node[data-node="{name}"]')


def live_status(page: Page, status: str) -> None:
    page.wait_for_selector(f'[data-testid=live][data-status="{status}"]', timeout=WAIT)
