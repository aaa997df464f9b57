"""The HTTP API's end-of-run hooks, registered on a worker (not built into the cluster)."""

from types import SimpleNamespace
from typing import Any

from treadle.cluster.attempt import RunHooks
from treadle.cluster.spec import RunSpec
from treadle.server import run_hooks
from treadle.server.webhook_policy import WebhookPolicy


def _attempt(spec: RunSpec) -> Any:
    return SimpleNamespace(spec=spec, row=SimpleNamespace(thread_id="t1"), thread_update=None)


def test_a_worker_has_no_hooks_unless_given() -> None:
    assert RunHooks() == RunHooks(on_status=[], after_end=[])


def test_api_hooks() -> None:
    from treadle.server import run_audit

    hooks = run_hooks.api_hooks()
    assert hooks.on_status == [run_hooks.thread_record]
    assert hooks.after_end == [run_hooks.on_completion, run_hooks.Webhook(WebhookPolicy()),
                              run_audit.run_ended]
    assert hooks.on_start == [run_audit.run_started]
    policy = WebhookPolicy(allow_loopback=True)
    assert run_hooks.api_hooks(policy).after_end[1] == run_hooks.Webhook(policy)


def test_thread_record_only_for_api_threads() -> None:
    plain = _attempt(RunSpec())
    run_hooks.thread_record(plain, "idle", None, None)
    assert plain.thread_update is None
    api = _attempt(RunSpec(thread_record=True))
    state = SimpleNamespace(values={"n": 1}, tasks=[])
    run_hooks.thread_record(api, "error", state, "ValueError: boom")
    update = api.thread_update
    assert (update.thread_id, update.status, update.error) == ("t1", "error", "ValueError: boom")
    assert update.values == {"n": 1} and update.interrupts == {}
