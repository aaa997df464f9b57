"""The web console in a real browser (Debian's chromium) on a real `treadle dev`.

The graph (tests/e2e/console_graphs/approval.py): draft (streams tokens and a custom
event) -> checks (a subgraph) -> review (interrupts for approval) -> publish. The nodes
named in CONSOLE_GATED wait for a file in CONSOLE_GATE_DIR, so the page can be looked at
while they run. Screenshots go to the artefacts folder (tests/e2e/console/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from console_pages import WAIT, live_status, node, server_with_gates
from processes import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

def test_start_stream_interrupt_approve_timeline(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, gates = server_with_gates(start_server, tmp_path, "draft", "publish")
    page.goto(f"{server.url}/console")  # redirected to /console/
    assert page.url.endswith("/console/")
    page.click('.side-list a:text-is("approval")')
    page.wait_for_url(re.compile("#/graphs/"), timeout=WAIT)
    # the graph, drawn from get_graph (xray): the subgraph's node inside its cluster
    for name in ("draft", "review", "publish", "checks:spelling"):
        node(page, name).wait_for(timeout=WAIT)
    assert page.locator('[data-testid=graph] g.tg-cluster[data-cluster="checks"]').count() == 1
    assert page.locator("[data-testid=graph] path.tg-edge.tg-conditional").count() >= 1
    page.get_by_text("Input schema").click()
    shot("graph")

    # a run from the form built from the input schema
    page.fill("#field-topic", "otters")
    page.click("button[data-action=start-run]")
    page.wait_for_url(re.compile(r"#/threads/[0-9a-f-]{36}$"), timeout=WAIT)
    thread_id = page.url.rsplit("/", 1)[1]
    live = page.locator("[data-testid=live]")
    # draft is running (its gate is shut): highlighted, its custom event already shown
    page.wait_for_selector('[data-testid=graph] g.tg-node.tg-running[data-node="draft"]',
                           timeout=WAIT)
    live.locator(".custom").get_by_text('"drafting"').wait_for(timeout=WAIT)
    assert node(page, "review").get_attribute("class") is not None
    assert "tg-running" not in (node(page, "review").get_attribute("class") or "")
    shot("running")

    (gates / "draft").touch()
    live_status(page, "interrupted")
    tokens = live.locator(".messages .message .text")
    assert tokens.first.inner_text() == "Five facts about otters you did not know"
    assert live.locator(".updates li[data-node=draft]").count() == 1
    assert page.locator("[data-testid=graph] g.tg-node.tg-running").count() == 0
    page.wait_for_selector('[data-testid=graph] g.tg-node.tg-interrupted[data-node="review"]',
                           timeout=WAIT)  # where it waits, marked once the run stopped
    card = page.locator("[data-testid=interrupts] .interrupt")
    card.get_by_text("Publish this draft?").wait_for(timeout=WAIT)
    full = shot("interrupted")
    page.evaluate("window.scrollTo(0, 0)")  # the README's picture: what a laptop shows
    page.screenshot(path=full.with_name(full.stem + "-viewport.png"))

    # the approvals page lists it; approve from there
    page.click("nav.top a[data-section=inbox]")
    item = page.locator(f'.inbox-item[data-thread="{thread_id}"]')
    item.wait_for(timeout=WAIT)
    shot("approvals")
    item.locator("button[data-action=approve]").click()
    page.wait_for_url(re.compile(f"#/threads/{thread_id}$"), timeout=WAIT)
    page.wait_for_selector('[data-testid=graph] g.tg-node.tg-running[data-node="publish"]',
                           timeout=WAIT)
    (gates / "publish").touch()
    live_status(page, "success")
    page.locator("h2 .badge.status-idle").wait_for(timeout=WAIT)
    assert page.locator("[data-testid=interrupts] .interrupt").count() == 0

    # the timeline: every checkpoint, what made it and its diff
    history = httpx.post(f"{server.url}/threads/{thread_id}/history", json={"limit": 100}).json()
    entries = page.locator("[data-testid=timeline] li.checkpoint")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=timeline] li.checkpoint').length === n",
        arg=len(history), timeout=WAIT)
    ids = [entries.nth(i).get_attribute("data-checkpoint") for i in range(entries.count())]
    assert ids == [s["checkpoint"]["checkpoint_id"] for s in history]
    newest = entries.nth(0)
    assert newest.locator(".made-by .task").all_inner_texts() == ["publish"]
    added = newest.locator("table.diff tr.added")
    assert "messages[1]" in added.locator("td.path").all_inner_texts()
    assert "published (approved)" in added.locator("td.after").inner_text()
    reviewed = entries.filter(has=page.locator('.made-by .task[data-task="review"]'))
    assert reviewed.count() == 1
    decision = reviewed.locator("table.diff tr.added", has_text="decision")
    assert '"approved"' in decision.locator("td.after").inner_text()
    reviewed.scroll_into_view_if_needed()
    shot("timeline")

    # the threads page: filters by status
    page.goto(f"{server.url}/console/#/threads?status=idle")
    page.locator(f'tr[data-thread="{thread_id}"]').wait_for(timeout=WAIT)
    page.goto(f"{server.url}/console/#/threads?status=interrupted")
    page.get_by_text("No thread matches.").wait_for(timeout=WAIT)
    shot("threads")
