"""The thread's priority and fairness group come from its first run's metadata
(``priority``, ``tenant``); a run marked ``bad`` gets a priority the SDK refuses."""

from langgraph_sdk import Priority, PriorityContext, PrioritySettings

priority = Priority()


@priority.assign
async def assign(ctx: PriorityContext) -> PrioritySettings | None:
    if ctx.run_metadata.get("bad"):
        return {"priority": 9}
    if "tenant" not in ctx.run_metadata:
        return None
    return {"priority": ctx.run_metadata.get("priority", 0),
            "fairness_group": ctx.run_metadata["tenant"]}
