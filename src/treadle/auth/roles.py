"""The built-in auth's rules: what each role may do, and how a tenant is kept to its own.

Roles, each including the ones before it (:data:`~treadle.store.api_keys.ROLES`):

========  ==================================================================================
viewer    read and search threads (their state, history, runs, joins and streams),
          assistants, crons and store items
runner    + create threads, runs and crons; update, cancel and delete them; write and delete
          store items
approver  + resume an interrupt: a run whose ``command`` carries ``resume`` (or ``goto``,
          which would skip the gate), a state update of an interrupted thread
          (``TREADLE_REQUIRE_APPROVER_TO_RESUME``, default on; off: runners may)
admin     + create, update and delete assistants; the admin-only extensions (audit)
========  ==================================================================================

Tenancy: whatever a tenant creates carries ``metadata["tenant_id"] = T``, forced on create
and update (a patch cannot move it to another tenant), and every action returns the filter
``{"tenant_id": T}``, which the authorization machinery applies inside the store's queries:
another tenant's resource is not found. Assistants the server made from the deployment's
graphs (``metadata["created_by"] == "system"``) are readable by every tenant, and only
readable: no tenant may mark an assistant as the system's. Store namespaces are moved under
the tenant, ``(T, *namespace)``.

One handler covers every (resource, action); an action it does not know is refused below
admin (closed by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph_sdk.auth.types import AuthContext

from treadle.store.api_keys import ROLES
from treadle.store.base import Store

__all__ = ["REQUIRED", "Rules", "implied_roles", "role_level"]

_VIEWER, _RUNNER, _APPROVER, _ADMIN = ROLES

#: The role each (resource, action) needs. Anything else needs admin.
REQUIRED: Mapping[tuple[str, str], str] = {
    **{("threads", a): _VIEWER for a in ("read", "search")},
    **{("threads", a): _RUNNER for a in ("create", "update", "delete", "create_run")},
    **{("assistants", a): _VIEWER for a in ("read", "search")},
    **{("assistants", a): _ADMIN for a in ("create", "update", "delete")},
    **{("crons", a): _VIEWER for a in ("read", "search")},
    **{("crons", a): _RUNNER for a in ("create", "update", "delete")},
    **{("store", a): _VIEWER for a in ("get", "search", "list_namespaces")},
    **{("store", a): _RUNNER for a in ("put", "delete")},
}
_SYSTEM = {"created_by": "system"}
_TENANT = "tenant_id"


def implied_roles(role: str) -> list[str]:
    """``role`` and every role it includes, strongest first (a user's permissions)."""
    return list(reversed(ROLES[: ROLES.index(role) + 1]))


def role_level(permissions: Sequence[str]) -> int:
    """The strongest built-in role among ``permissions`` (its index in ROLES), or -1."""
    return max((ROLES.index(p) for p in permissions if p in ROLES), default=-1)


def _at_least(permissions: Sequence[str], role: str) -> bool:
    return role_level(permissions) >= ROLES.index(role)


def _force_tenant(value: Any, tenant: str, *, create: bool) -> None:
    """Set ``metadata["tenant_id"]`` (on create, adding a metadata dict; on update, in the
    metadata given, so a patch cannot move the resource), and drop a claim to be the
    system's."""
    if not isinstance(value, dict):
        return
    metadata = value.get("metadata")
    if not isinstance(metadata, dict):
        if not create:
            return
        metadata = value["metadata"] = {}
    metadata[_TENANT] = tenant
    if metadata.get("created_by") == "system":
        del metadata["created_by"]


def _command(value: Mapping[str, Any]) -> Mapping[str, Any]:
    kwargs = value.get("kwargs")
    command = (kwargs or {}).get("command") if isinstance(kwargs, Mapping) else None
    command = command if command is not None else value.get("command")
    return command if isinstance(command, Mapping) else {}


def resumes(value: Any) -> bool:
    """Whether a run create (``RunsCreate``) resumes an interrupt: its command carries a
    ``resume`` value, or a ``goto`` (which would jump past the gate)."""
    if not isinstance(value, Mapping):
        return False
    command = _command(value)
    return command.get("resume") is not None or bool(command.get("goto"))


def _is_state_update(value: Any) -> bool:
    """A ``threads.update`` that changes neither metadata nor a run (``action``): a state
    update (as LangGraph Platform passes it: the thread id alone)."""
    return isinstance(value, Mapping) and value.get("metadata") is None and \
        value.get("action") is None


class Rules:
    """The handler of every (resource, action), over ``store`` (read to tell whether a
    thread waits at an interrupt, and who owns a thread or assistant a run or cron names)."""

    def __init__(self, store: Store, *, require_approver_to_resume: bool = True) -> None:
        self.store = store
        self.require_approver_to_resume = require_approver_to_resume

    async def authorize(self, ctx: AuthContext, value: Any) -> Any:
        """None (allow), False (deny) or the filter for ``ctx``'s (resource, action)."""
        tenant = _tenant_of(ctx)
        permissions = list(ctx.permissions or ())
        resource, action = ctx.resource, ctx.action
        if tenant is None or not _at_least(permissions, REQUIRED.get((resource, action), _ADMIN)):
            return False
        own = {_TENANT: tenant}
        if resource == "store":
            _scope_namespace(value, tenant, action)
            return None
        if resource == "assistants":
            if action in ("create", "update"):
                _force_tenant(value, tenant, create=action == "create")
            return {"$or": [own, _SYSTEM]} if action in ("read", "search") else own
        if action in ("create", "update", "create_run"):
            _force_tenant(value, tenant, create=action != "update")
        if resource == "threads" and action == "create_run":
            if not await self._may_run(value, tenant, permissions, thread_filtered=True):
                return False
        elif resource == "threads" and action == "update":
            if self._approval_needed(permissions) and _is_state_update(value) and \
                    await self._interrupted(value):
                return False
        elif resource == "crons" and action == "create":
            if not await self._may_run(value, tenant, permissions, thread_filtered=False):
                return False
        return own

    def _approval_needed(self, permissions: Sequence[str]) -> bool:
        return self.require_approver_to_resume and not _at_least(permissions, _APPROVER)

    async def _may_run(self, value: Any, tenant: str, permissions: Sequence[str], *,
                       thread_filtered: bool) -> bool:
        """A run (or cron) may start: it resumes nothing or its caller may approve, and the
        assistant it names, when it exists, is the tenant's or the system's. A cron's
        thread too (``thread_filtered`` False): a run's thread is scoped by the filter this
        handler returns (another tenant's is not found), a cron's is not."""
        if not isinstance(value, Mapping):
            return True
        if self._approval_needed(permissions) and resumes(value):
            return False
        thread_id, assistant_id = value.get("thread_id"), value.get("assistant_id")
        if thread_id is not None and not thread_filtered:
            thread = await asyncio.to_thread(self.store.get_thread, str(thread_id))
            if thread is not None and thread.metadata.get(_TENANT) != tenant:
                return False
        if assistant_id is not None:
            found = await asyncio.to_thread(self.store.get_assistant, str(assistant_id))
            if found is not None and found.metadata.get(_TENANT) != tenant and \
                    found.metadata.get("created_by") != "system":
                return False
        return True

    async def _interrupted(self, value: Mapping[str, Any]) -> bool:
        thread_id = value.get("thread_id")
        if thread_id is None:
            return False
        thread = await asyncio.to_thread(self.store.get_thread, str(thread_id))
        return thread is not None and thread.status == "interrupted"


def _tenant_of(ctx: AuthContext) -> str | None:
    try:
        tenant = ctx.user[_TENANT]
    except (KeyError, TypeError):
        return None
    return tenant if isinstance(tenant, str) and tenant else None


def _scope_namespace(value: Any, tenant: str, action: str) -> None:
    """Move the operation's namespace under the tenant: ``(T, *namespace)``. Listing
    namespaces with no prefix lists the tenant's; a ``max_depth`` counts the tenant's
    label too, so it still cuts where the caller asked."""
    if not isinstance(value, dict):
        return
    namespace = value.get("namespace")
    value["namespace"] = (tenant, *(tuple(namespace) if namespace else ()))
    if action == "list_namespaces" and isinstance(value.get("max_depth"), int):
        value["max_depth"] += 1
