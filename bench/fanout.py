"""Send fan-out wall time: N branches of 100 ms I/O, reduced into a list.

Graph: START -> plan; ``plan``'s conditional edge returns
``[Send("work", {"i": i}) for i in range(N)]``; ``work`` waits 100 ms and
returns ``{"results": [i]}`` (reducer ``operator.add``); then ``collect``.
Cases: 1,000 async branches (``await asyncio.sleep(0.1)``, ``ainvoke``) and
200 sync branches (``time.sleep(0.1)``, ``invoke``). The ideal is ~0.1 s.

References: LangGraph's own executor in memory, ``builder.compile()`` and
``builder.compile(checkpointer=InMemorySaver())``; for the sync case also
``compile()`` run with ``max_concurrency=N`` (LangGraph's default thread pool
is ``min(32, cpus + 4)`` threads, 6 on a 2-core box). treadle runs durable on
SQLite with ``durability="sync"``. Each figure is the median of several runs
(systems take turns, so other load on the machine spreads over all of them),
after an untimed warm-up run with 10 branches.

    PYTHONPATH=src python -m bench.fanout [--quick]
"""

from __future__ import annotations

import asyncio
import operator
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from bench._common import (
    TreadleLoader,
    call_with_timeout,
    close_quietly,
    new_config,
    parse_args,
    progress,
    scratch_dir,
    sqlite_url,
)
from bench._report import Report

IO_SECONDS = 0.1
TIMEOUT = 60.0
COLUMNS = ["case", "system", "N", "median s", "min s", "runs", "x ideal"]


class FanState(TypedDict, total=False):
    n: int
    results: Annotated[list[int], operator.add]
    count: int


def plan(state: FanState) -> dict[str, Any]:
    return {"count": 0}


def route(state: FanState):
    from langgraph.types import Send

    return [Send("work", {"i": i}) for i in range(state["n"])]


async def work_async(arg: dict[str, int]) -> dict[str, list[int]]:
    await asyncio.sleep(IO_SECONDS)
    return {"results": [arg["i"]]}


def work_sync(arg: dict[str, int]) -> dict[str, list[int]]:
    time.sleep(IO_SECONDS)
    return {"results": [arg["i"]]}


def collect(state: FanState) -> dict[str, int]:
    return {"count": len(state["results"])}


def build_fanout(is_async: bool):
    from langgraph.graph import END, START, StateGraph

    b = StateGraph(FanState)
    b.add_node("plan", plan)
    b.add_node("work", work_async if is_async else work_sync)
    b.add_node("collect", collect)
    b.add_edge(START, "plan")
    b.add_conditional_edges("plan", route, ["work"])
    b.add_edge("work", "collect")
    b.add_edge("collect", END)
    return b


def check(out: Any, n: int) -> None:
    results = out.get("results") if isinstance(out, dict) else None
    if results is None or len(results) != n or sorted(results) != list(range(n)) or out.get("count") != n:
        got = len(results) if results is not None else out
        raise AssertionError(f"expected {n} results, got {got}")


def rotations(n: int, repeats: int):
    """Repeat r visits the systems starting at index r % n (interleaved repeats)."""
    for r in range(repeats):
        yield [(r + i) % n for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_async, n_sync = (200, 50) if args.quick else (1000, 200)
    repeats = 1 if args.quick else 3
    treadle = TreadleLoader(skip=args.skip_treadle)
    from langgraph.checkpoint.memory import InMemorySaver

    report = Report(
        bench="fanout",
        title=f"fanout: N x Send -> work (100 ms I/O) -> collect; median of {repeats} interleaved run(s)",
        columns=COLUMNS,
        quick=args.quick,
        params={"n_async": n_async, "n_sync": n_sync, "io_seconds": IO_SECONDS, "repeats": repeats},
    )
    med: dict[str, float | None] = {}

    def record(key: str, case: str, system: str, n: int, times: list[float]) -> None:
        m = statistics.median(times)
        med[key] = m
        report.add(
            key=key,
            case=case,
            system=system,
            N=n,
            runs=len(times),
            times=[round(t, 4) for t in times],
            **{"median s": m, "min s": min(times), "x ideal": m / IO_SECONDS},
        )

    def failed(key: str, case: str, system: str, n: int, why: str) -> None:
        med[key] = None
        report.add(key=key, case=case, system=system, N=n, error=why, **{"x ideal": "unavailable"})
        report.notes.append(f"{case} / {system}: {why}")

    def finish_row(key: str, case: str, system: str, n: int, times: list[float], error: str | None) -> None:
        if error or not times:
            failed(key, case, system, n, error or "not measured")
        else:
            record(key, case, system, n, times)

    # ---------------------------------------------------------------- async
    case = f"async x{n_async}"
    ab = build_fanout(is_async=True)

    async def async_case(tmp) -> None:
        g0 = ab.compile()
        g1 = ab.compile(checkpointer=InMemorySaver())
        systems: list[tuple[str, str, Callable[[int, dict], Awaitable[Any]]]] = [
            ("async_lg", "LangGraph in-memory, compile()", lambda n, c: g0.ainvoke({"n": n}, c)),
            ("async_lg_mem", "LangGraph InMemorySaver", lambda n, c: g1.ainvoke({"n": n}, c, durability="sync")),
            ("async_lg_wide", f"LangGraph in-memory, max_concurrency={n_async}",
             lambda n, c: g0.ainvoke({"n": n}, {**c, "max_concurrency": n_async})),
        ]
        tg = None
        if treadle.available:
            try:
                tg = treadle.compile(ab, sqlite_url(tmp / "treadle-async.db"))
                systems.append(
                    ("async_treadle", "treadle SQLite (durable)",
                     lambda n, c: tg.ainvoke({"n": n}, c, durability="sync"))
                )
                systems.append(
                    ("async_treadle_wide", f"treadle SQLite (durable), max_workers={n_async}",
                     lambda n, c: tg.ainvoke({"n": n}, {**c, "max_workers": n_async}, durability="sync"))
                )
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                failed("async_treadle", case, "treadle SQLite (durable)", n_async, f"error: {type(exc).__name__}: {exc}")
        else:
            failed("async_treadle", case, "treadle SQLite (durable)", n_async, treadle.reason or "unavailable")
        times: dict[str, list[float]] = {k: [] for k, _, _ in systems}
        errors: dict[str, str] = {}
        try:
            for key, _, fn in systems:  # warm-up, untimed
                progress(f"{case}: warm-up {key}")
                try:
                    check(await asyncio.wait_for(fn(10, new_config()), TIMEOUT), 10)
                except Exception as exc:  # noqa: BLE001
                    traceback.print_exc()
                    errors[key] = f"error: {type(exc).__name__}: {exc}"
            for r, order in enumerate(rotations(len(systems), repeats)):
                for i in order:
                    key, _, fn = systems[i]
                    if key in errors:
                        continue
                    progress(f"{case}: run {r + 1}/{repeats} {key}")
                    t0 = time.perf_counter()
                    try:
                        out = await asyncio.wait_for(fn(n_async, new_config()), TIMEOUT)
                        times[key].append(time.perf_counter() - t0)
                        check(out, n_async)
                    except Exception as exc:  # noqa: BLE001
                        traceback.print_exc()
                        errors[key] = f"error: {type(exc).__name__}: {exc}"
        finally:
            close_quietly(tg)
        for key, label, _ in systems:
            finish_row(key, case, label, n_async, times[key], errors.get(key))

    # ----------------------------------------------------------------- sync
    scase = f"sync x{n_sync}"
    sb = build_fanout(is_async=False)

    def sync_case(tmp) -> None:
        g0 = sb.compile()
        g1 = sb.compile(checkpointer=InMemorySaver())
        systems: list[tuple[str, str, Callable[[int, dict], Any]]] = [
            ("sync_lg", "LangGraph in-memory, compile()", lambda n, c: g0.invoke({"n": n}, c)),
            ("sync_lg_wide", f"LangGraph in-memory, max_concurrency={n_sync}",
             lambda n, c: g0.invoke({"n": n}, {**c, "max_concurrency": n_sync})),
            ("sync_lg_mem", "LangGraph InMemorySaver", lambda n, c: g1.invoke({"n": n}, c, durability="sync")),
        ]
        tg = None
        if treadle.available:
            try:
                tg = treadle.compile(sb, sqlite_url(tmp / "treadle-sync.db"))
                systems.append(
                    ("sync_treadle", "treadle SQLite (durable)", lambda n, c: tg.invoke({"n": n}, c, durability="sync"))
                )
                systems.append(
                    ("sync_treadle_wide", f"treadle SQLite (durable), max_workers={n_sync}",
                     lambda n, c: tg.invoke({"n": n}, {**c, "max_workers": n_sync}, durability="sync"))
                )
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                failed("sync_treadle", scase, "treadle SQLite (durable)", n_sync, f"error: {type(exc).__name__}: {exc}")
        else:
            failed("sync_treadle", scase, "treadle SQLite (durable)", n_sync, treadle.reason or "unavailable")
        times: dict[str, list[float]] = {k: [] for k, _, _ in systems}
        errors: dict[str, str] = {}
        try:
            for key, _, fn in systems:  # warm-up, untimed
                progress(f"{scase}: warm-up {key}")
                try:
                    check(call_with_timeout(lambda fn=fn: fn(10, new_config()), TIMEOUT), 10)
                except Exception as exc:  # noqa: BLE001
                    traceback.print_exc()
                    errors[key] = f"error: {type(exc).__name__}: {exc}"
            for r, order in enumerate(rotations(len(systems), repeats)):
                for i in order:
                    key, _, fn = systems[i]
                    if key in errors:
                        continue
                    progress(f"{scase}: run {r + 1}/{repeats} {key}")
                    t0 = time.perf_counter()
                    try:
                        out = call_with_timeout(lambda fn=fn: fn(n_sync, new_config()), TIMEOUT)
                        times[key].append(time.perf_counter() - t0)
                        check(out, n_sync)
                    except Exception as exc:  # noqa: BLE001
                        traceback.print_exc()
                        errors[key] = f"error: {type(exc).__name__}: {exc}"
        finally:
            close_quietly(tg)
        for key, label, _ in systems:
            finish_row(key, scase, label, n_sync, times[key], errors.get(key))

    with scratch_dir() as tmp:
        asyncio.run(async_case(tmp))
        sync_case(tmp)
    order = ["async_lg", "async_lg_mem", "async_lg_wide", "async_treadle", "async_treadle_wide", "sync_lg", "sync_lg_wide", "sync_lg_mem", "sync_treadle",
             "sync_treadle_wide"]
    report.rows.sort(key=lambda row: order.index(row["key"]))

    def best(*keys: str) -> float | None:
        vals = [med[k] for k in keys if med.get(k)]
        return min(vals) if vals else None

    report.ratio(f"{case}: treadle / LangGraph compile()", med.get("async_treadle"), med.get("async_lg"), "<= 1.5")
    report.ratio(
        f"{case}: treadle / best LangGraph in-memory",
        med.get("async_treadle"),
        best("async_lg", "async_lg_mem"),
        "<= 1.5",
    )
    report.ratio(f"{scase}: treadle / LangGraph compile()", med.get("sync_treadle"), med.get("sync_lg"), "<= 1.5")
    report.ratio(
        f"{scase}: treadle / best LangGraph in-memory",
        med.get("sync_treadle"),
        best("sync_lg", "sync_lg_wide", "sync_lg_mem"),
        "<= 1.5",
    )
    report.ratio(
        f"{case}: treadle max_workers=N / LangGraph max_concurrency=N",
        med.get("async_treadle_wide"),
        med.get("async_lg_wide"),
        "<= 1.5",
    )
    report.ratio(
        f"{scase}: treadle max_workers=N / LangGraph max_concurrency=N",
        med.get("sync_treadle_wide"),
        med.get("sync_lg_wide"),
        "<= 1.5",
    )
    report.notes += [
        f"ideal wall time is one I/O wait, {IO_SECONDS:.1f} s; 'x ideal' = median / {IO_SECONDS:.1f} s",
        "every run is checked: N results, each index once, collect saw N",
        "LangGraph's sync executor defaults to a min(32, cpus+4)-thread pool; the max_concurrency row "
        "gives it one thread per branch",
        "best LangGraph in-memory = fastest of the LangGraph rows of that case",
    ]
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
