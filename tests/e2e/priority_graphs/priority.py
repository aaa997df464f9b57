"""The thread's priority and fairness group come from its first run's metadata
(``priority``, ``tenant``); a run marked ``bad`` gets a priority the SDK refuses; a cron's
tick puts its thread in the group ``cron:<cron_id>`` at priority 3."""

from langgraph_sdk import Priority, PriorityContext, PrioritySettings

priority = Priority()


@priority.assign
async def assign(ctx: PriorityContext) -> PrioritySettings | None:
    if ctx.cron_id is not None:
        return {"priority": 3, "fairness_group": f"cron:{ctx.cron_id}"}
    if ctx.run_metadata.get("bad"):
        return {"priority": 9}
    if "tenant" not in ctx.run_metadata:
        return None
    return {"priority": ctx.run_metadata.get("priority", 0),
            "fairness_group": ctx.run_metadata["tenant"]}
