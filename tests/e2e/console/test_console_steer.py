"""Steering from the console in a real browser: joining a run started elsewhere and
cancelling it, the approver role rule, a thread with thousands of checkpoints, and the
operations page."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from console_pages import GRAPHS, WAIT, node, server_with_gates
from processes import ServerProcess
from treadle.store import open_store

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_join_a_run_started_elsewhere_and_cancel_it(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, gates = server_with_gates(start_server, tmp_path, "draft")
    sdk = get_sync_client(url=server.url, api_key=None)
    thread = sdk.threads.create()
    run = sdk.runs.create(thread["thread_id"], "approval", input={"topic": "cats"},
                          stream_mode=["values", "updates"])
    try:
        page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
        # joined on its own: the run's id, its running node, from a stream without "tasks"
        live = page.locator("[data-testid=live]")
        live.locator(".run-id", has_text=run["run_id"]).wait_for(timeout=WAIT)
        page.wait_for_selector('[data-testid=graph] g.tg-node.tg-running[data-node="draft"]',
                               timeout=WAIT)
        shot("joined")
        # watching it again replaces the panel: the first one's stream stops quietly
        page.locator(f'tr[data-run="{run["run_id"]}"] button[data-action=watch]').click()
        page.wait_for_selector('[data-testid=graph] g.tg-node.tg-running[data-node="draft"]',
                               timeout=WAIT)
        assert page.locator("[data-testid=live]").count() == 1
        page.wait_for_timeout(1500)  # time for a stopped panel to (wrongly) clean up after itself
        assert "tg-running" in (node(page, "draft").get_attribute("class") or "")
        live.locator("button[data-action=cancel]").click()
        page.wait_for_selector("[data-testid=live][data-status]", timeout=WAIT)
        status = live.get_attribute("data-status")
        assert status == sdk.runs.get(thread["thread_id"], run["run_id"])["status"]
        assert status not in ("success", "running", "pending"), status
        assert page.locator("[data-testid=graph] g.tg-node.tg-running").count() == 0
        shot("cancelled")
    finally:
        (gates / "draft").touch()  # the abandoned node body ends


def _key(store_url: str, role: str, tenant: str = "acme") -> str:
    store = open_store(store_url)
    try:
        return store.create_api_key(tenant, role, f"console {role}")[1]
    finally:
        store.close()


def _use(page: Page, key: str) -> None:
    page.click("#credential-open")
    page.select_option("#credential select[name=header]", "X-Api-Key")
    page.fill("#credential input[name=value]", key)
    page.click("#credential button[value=save]")
    page.locator("#credential-state", has_text="API key set").wait_for(timeout=WAIT)


@pytest.mark.allow_js_errors  # the browser logs the refused calls (401, 403) as errors
def test_a_runner_cannot_approve_an_approver_can(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'auth.db'}"
    server, _ = server_with_gates(start_server, tmp_path, store=store,
                                  args=["--auth", "builtin", "--operator-tenants", "ops"])
    runner, approver = _key(store, "runner"), _key(store, "approver")
    page.goto(f"{server.url}/console/")
    page.get_by_text("set a credential").first.wait_for(timeout=WAIT)  # 401, and what to do
    _use(page, runner)
    page.goto(f"{server.url}/console/#/graphs/approval")
    page.fill("#field-topic", "dogs")
    page.click("button[data-action=start-run]")
    page.wait_for_selector('[data-testid=live][data-status="interrupted"]', timeout=WAIT)
    thread_id = page.url.rsplit("/", 1)[1]
    card = page.locator("[data-testid=interrupts] .interrupt")
    card.locator("button[data-action=approve]").click()
    card.locator(".error", has_text="403").wait_for(timeout=WAIT)
    assert "needs the approver role" in card.inner_text()
    shot("runner-refused")
    state = httpx.get(f"{server.url}/threads/{thread_id}/state", headers={"x-api-key": runner})
    assert state.json()["next"] == ["review"]  # still waiting
    _use(page, approver)
    page.goto(f"{server.url}/console/#/inbox")
    item = page.locator(f'.inbox-item[data-thread="{thread_id}"]')
    item.locator("button[data-action=approve]").click()
    page.wait_for_selector('[data-testid=live][data-status="success"]', timeout=WAIT)
    shot("approver-approved")
    values = httpx.get(f"{server.url}/threads/{thread_id}/state",
                       headers={"x-api-key": approver}).json()["values"]
    assert values["decision"] == "approved"

    # the cluster-wide operations page: not for a tenant's approver, for an operators' admin
    page.goto(f"{server.url}/console/#/operations")
    page.locator("[data-testid=operations] .error", has_text="403").wait_for(timeout=WAIT)
    _use(page, _key(store, "admin", tenant="ops"))
    page.goto(f"{server.url}/console/#/operations")
    page.locator("[data-testid=workers] tbody tr").first.wait_for(timeout=WAIT)
    shot("operator")


def test_a_thread_of_thousands_of_checkpoints_pages_its_history(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    sdk = get_sync_client(url=server.url, api_key=None)
    thread = sdk.threads.create()
    sdk.runs.wait(thread["thread_id"], "counter", input={"goal": 2500},
                  config={"recursion_limit": 3000})
    page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
    entries = page.locator("[data-testid=timeline] li.checkpoint")
    entries.first.wait_for(timeout=WAIT)
    assert entries.count() == 20  # one page, not 2,500
    assert entries.first.get_attribute("data-step") == "2500"
    page.click("button[data-action=older]")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=timeline] li.checkpoint').length === 40",
        timeout=WAIT)
    steps = [int(entries.nth(i).get_attribute("data-step") or -9) for i in range(40)]
    assert steps == list(range(2500, 2460, -1))  # newest first, none skipped, none twice
    # each step's diff: count went up by one
    assert entries.nth(25).locator("table.diff tr.changed td.after").inner_text().strip() == "2475"
    shot("long-history")


def test_operations_page(page: Page, shot: Callable[[str], Path],
                         start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    sdk = get_sync_client(url=server.url, api_key=None)
    for goal in (1, 2):
        sdk.runs.wait(None, "counter", input={"goal": goal})
    page.goto(f"{server.url}/console/#/operations")
    ops = page.locator("[data-testid=operations]")
    ops.locator('[data-testid=runs-by-status] tr[data-status="success"] td.num',
                has_text="2").wait_for(timeout=WAIT)
    assert ops.locator('[data-stat="pending"] .value').inner_text() == "0"
    assert ops.locator("[data-testid=workers] tbody tr").count() == 1  # dev's own worker
    shot("operations")


def values_of(sdk: Any, thread_id: str) -> dict[str, Any]:
    values = sdk.threads.get_state(thread_id)["values"]
    assert isinstance(values, dict)
    return values


def test_two_pending_interrupts_each_resumed_by_its_card(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    sdk = get_sync_client(url=server.url, api_key=None)
    thread = sdk.threads.create()
    sdk.runs.wait(thread["thread_id"], "pair", input={})
    page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
    cards = page.locator("[data-testid=interrupts] .interrupt")
    cards.nth(1).wait_for(timeout=WAIT)
    assert cards.count() == 2
    shot("two-pending")
    left = cards.filter(has_text='"left"')
    left.locator("button[data-action=approve]").click()
    page.wait_for_selector('[data-testid=live][data-status="interrupted"]', timeout=WAIT)
    state = values_of(sdk, thread["thread_id"])
    assert state.get("left") is True and "right" not in state
    right = page.locator("[data-testid=interrupts] .interrupt", has_text='"right"')
    right.locator("summary", has_text="Resume value").click()
    right.locator("textarea[name=resume]").fill('{"ship": "it"}')
    right.locator("button[data-action=resume]").click()
    page.wait_for_selector('[data-testid=live][data-status="success"]', timeout=WAIT)
    assert values_of(sdk, thread["thread_id"]) == {"left": True, "right": {"ship": "it"}}
    assert page.locator("[data-testid=interrupts] .interrupt").count() == 0


def test_edit_the_state_then_approve_and_names_stay_text(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    sdk = get_sync_client(url=server.url, api_key=None)
    markup = "<img src=x onerror=window.__pwned=1>"
    thread = sdk.threads.create(metadata={"note": markup})
    sdk.runs.wait(thread["thread_id"], "approval", input={"topic": markup})
    page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
    card = page.locator("[data-testid=interrupts] .interrupt")
    card.locator("button[data-action=edit-state]").click()
    box = card.locator("textarea[name=state]")
    box.wait_for(timeout=WAIT)
    edited = {**values_of(sdk, thread["thread_id"]), "draft": "A better draft"}
    box.fill(json.dumps(edited))
    card.locator("button[data-action=save-state]").click()
    card.locator(".ok", has_text="State saved").wait_for(timeout=WAIT)
    card.locator("button[data-action=approve]").click()
    page.wait_for_selector('[data-testid=live][data-status="success"]', timeout=WAIT)
    values = values_of(sdk, thread["thread_id"])
    assert values["draft"] == "A better draft" and values["decision"] == "approved"
    # the markup in the metadata, the input and the state was shown as text on every page
    page.goto(f"{server.url}/console/#/threads")
    page.locator(f'tr[data-thread="{thread["thread_id"]}"]').wait_for(timeout=WAIT)
    page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
    page.locator("[data-testid=timeline] li.checkpoint").first.wait_for(timeout=WAIT)
    assert page.locator("pre", has_text=markup).count() >= 2  # the state, the history
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_fork_and_replay_from_the_timeline(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    sdk = get_sync_client(url=server.url, api_key=None)
    thread = sdk.threads.create()
    sdk.runs.wait(thread["thread_id"], "approval", input={"topic": "bees"})
    sdk.runs.wait(thread["thread_id"], "approval", command={"resume": False})  # rejected
    page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
    waiting = page.locator("[data-testid=timeline] li.checkpoint", has_text="next: review")
    waiting.first.wait_for(timeout=WAIT)
    before = len(sdk.threads.get_history(thread["thread_id"], limit=100))

    # fork: edit that checkpoint's draft, write it as a branch, run from it
    waiting.first.locator("button[data-action=fork]").click()
    box = waiting.first.locator("textarea[name=fork-values]")
    values = json.loads(box.input_value())
    box.fill(json.dumps({**values, "draft": "A forked draft"}))
    waiting.first.locator("button[data-action=fork-run]").click()
    page.wait_for_selector('[data-testid=live][data-status="interrupted"]', timeout=WAIT)
    state = sdk.threads.get_state(thread["thread_id"])
    assert state["next"] == ["review"]
    assert values_of(sdk, thread["thread_id"])["draft"] == "A forked draft"
    shot("forked")

    # replay from the first checkpoint: the whole graph again, from the input
    page.locator("[data-testid=timeline] li.checkpoint[data-step='-1'] "
                 "button[data-action=replay]").first.click()
    page.wait_for_selector('[data-testid=live][data-status="interrupted"]', timeout=WAIT)
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=timeline] li.checkpoint').length > n",
        arg=before + 1, timeout=WAIT)
    assert values_of(sdk, thread["thread_id"])["draft"].startswith("Five facts about bees")
    runs = sdk.runs.list(thread["thread_id"])
    assert len(runs) == 4  # the two above, the fork's run and the replay


def test_a_failover_shows_on_the_operations_page(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., Any], tmp_path: Path) -> None:
    """A worker killed (-9) mid-run: its run is taken back and finished by another; the
    Operations page lists the failover."""
    store = f"sqlite:///{tmp_path / 'failover.db'}"
    gates = tmp_path / "gates"
    gates.mkdir()
    env = {"CONSOLE_GATE_DIR": str(gates), "CONSOLE_GATED": "draft", "TREADLE_LEASE_TTL": "2"}
    server = start_server("serve", store=store, args=["--workers", "0"], env=env,
                          config=GRAPHS)
    doomed = start_worker(store, args=["--config", str(GRAPHS)], env=env)
    sdk = get_sync_client(url=server.url, api_key=None)
    thread = sdk.threads.create()
    run = sdk.runs.create(thread["thread_id"], "approval", input={"topic": "moles"})
    page.goto(f"{server.url}/console/#/threads/{thread['thread_id']}")
    page.wait_for_selector('[data-testid=graph] g.tg-node.tg-running[data-node="draft"]',
                           timeout=WAIT)
    doomed.signal(signal.SIGKILL)
    start_worker(store, args=["--config", str(GRAPHS)], env=env)
    (gates / "draft").touch()
    page.goto(f"{server.url}/console/#/operations")
    row = page.locator("[data-testid=failovers] tbody tr", has_text=run["run_id"][:8])
    row.wait_for(timeout=60_000)
    assert row.locator("td.num").inner_text() == "1"  # lost once
    shot("failover")
    done = sdk.runs.join(thread["thread_id"], run["run_id"])
    assert isinstance(done, dict) and done.get("draft", "").startswith("Five facts about moles")


def test_a_failing_node_shows_its_error(
        page: Page, shot: Callable[[str], Path], start_server: Callable[..., ServerProcess],
        tmp_path: Path) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    page.goto(f"{server.url}/console/#/graphs/failing")
    page.fill("#field-url", "https://api.example")
    page.click("button[data-action=start-run]")
    page.wait_for_selector('[data-testid=live][data-status="error"]', timeout=WAIT)
    live = page.locator("[data-testid=live]")
    assert "upstream said no to https://api.example" in live.locator(".problems").inner_text()
    page.wait_for_selector('[data-testid=graph] g.tg-node.tg-error[data-node="fetch"]',
                           timeout=WAIT)
    failed = page.locator('[data-testid=timeline] .failed-from .task[data-task="fetch"]')
    failed.wait_for(timeout=WAIT)
    assert "upstream said no" in failed.inner_text()
    shot("failed")


@pytest.mark.parametrize("action, decision", [
    ("approve", {"type": "approve"}), ("reject", {"type": "reject", "message": "rejected"})])
def test_hitl_middleware_requests_get_decisions(
        page: Page, start_server: Callable[..., ServerProcess], tmp_path: Path, action: str,
        decision: dict[str, str]) -> None:
    server, _ = server_with_gates(start_server, tmp_path)
    sdk = get_sync_client(url=server.url, api_key=None)
    thread = sdk.threads.create()
    sdk.runs.wait(thread["thread_id"], "review", input={"to": "ada@example.com"})
    page.goto(f"{server.url}/console/#/inbox")
    item = page.locator(f'.inbox-item[data-thread="{thread["thread_id"]}"]')
    item.locator(f"button[data-action={action}]").click()
    page.wait_for_selector('[data-testid=live][data-status="success"]', timeout=WAIT)
    assert values_of(sdk, thread["thread_id"])["decisions"] == [decision, decision]
