"""Cluster: `treadle worker` processes on PostgreSQL, scale-out, latency and fail-over.

Real ``python -m treadle worker`` subprocesses on a scratch PostgreSQL database
(``<pg-url db>_cluster``) serve the graphs of ``bench/cluster_graphs.py``; the
benchmark process is the caller (``treadle.cluster.client.submit`` / ``wait``).

1. CPU-bound fan-out: one distributed run, ``Send`` x 40 branches of 0.25 s of
   pure-Python CPU each (``work`` placed remote), on 1 then 2 worker processes
   (``--task-slots 4``); wall time as the caller sees it, median of the
   repetitions. Ideal: 10 CPU-seconds / processes. Target speed-up >= 1.8x.
2. Remote node-task round trip, on 1 worker: a chain of 20 trivial nodes placed
   remote vs the same chain placed local; every body stamps ``time.time()`` at
   start and end, so the gap between consecutive bodies is known per step. Round
   trip = remote gap - local gap (p50 and p90 of each). Target p50 <= 5 ms.
3. kill -9 fail-over: 2 workers with the default lease TTL (10 s), a 10-step chain of
   0.3 s steps; after 2 steps its worker is SIGKILLed (then replaced); time to the run
   being claimed again and to the next checkpoint committed by the other worker,
   median and p90 over 7 kills (3 with --quick), and their ratio to the TTL (the
   dead worker's session lock is gone at once, so a sweep re-queues the run without
   waiting for the lease). Target: median <= 1.5 s. Also the cost of one sweep (with
   the session check) on the database, the query every worker makes every 0.5 s.
4. SIGTERM hand-off: the same with 0.1 s steps and SIGTERM (drain). Target <= 1 s
   from the signal to the next checkpoint committed by the other worker.
5. Runs/s: N runs of a 10-node chain (no sleep) on distinct threads, all queued at
   once, on 1 then 2 workers (``--concurrency 16`` each), from the first run's
   ``created_at`` to the last ``ended_at`` (database clock); reference: the same
   N runs executed in this process (local runtime, treadle on the same database)
   from a pool of 16 threads.

    PYTHONPATH=src python -m bench.cluster [--quick]
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import traceback
from collections import Counter
from typing import Any

from bench._common import (
    TreadleLoader,
    close_quietly,
    fresh_pg_database,
    parse_args,
    pg_server_info,
    pg_url_variant,
    progress,
    scratch_dir,
)
from bench._report import Report
from bench._workers import Fleet
from bench.cluster_graphs import CHAIN_STEPS, GRAPHS, RT_NODES
from bench.cluster_measures import (
    commit_latency,
    failover,
    fanout_once,
    local_runs_per_second,
    pct,
    round_trip,
    run_distributed,
    runs_per_second,
    sweep_cost,
)

COLUMNS = ["measure", "setup", "n", "median", "p90 / max", "unit", "ideal / bound"]
TASK_SLOTS = 4
CONCURRENCY = 16
FAIL_TTL = 10.0  # lease TTL of the fail-over cases: the default
KILL_TARGET = 1.5  # kill -9 -> next checkpoint, median
KILL_STEP = 0.3
TERM_STEP = 0.1
ROUND_TRIP_TARGET_MS = 5.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    quick = args.quick
    n_fan, cpu = (20, 0.2) if quick else (40, 0.25)
    fan_reps = 1 if quick else 3
    rt_runs = 3 if quick else 10
    n_runs = 60 if quick else 200
    fail_reps = 1 if quick else 3
    kill_reps = 3 if quick else 7
    t_begin = time.perf_counter()

    report = Report(
        bench="cluster",
        title="cluster: treadle worker processes on PostgreSQL (runtime='distributed')",
        columns=COLUMNS,
        quick=quick,
        params={
            "fanout_branches": n_fan, "fanout_cpu_s": cpu, "fanout_reps": fan_reps,
            "task_slots": TASK_SLOTS, "concurrency": CONCURRENCY, "rt_nodes": RT_NODES,
            "rt_runs": rt_runs, "runs": n_runs, "chain_steps": CHAIN_STEPS,
            "fail_ttl": FAIL_TTL, "kill_step_s": KILL_STEP, "term_step_s": TERM_STEP, "fail_reps": fail_reps,
            "kill_reps": kill_reps,
        },
    )
    treadle = TreadleLoader(skip=args.skip_treadle)
    if not treadle.available:
        report.notes.append(f"nothing measured: {treadle.reason}")
        report.finish(args.no_json)
        return 0

    import treadle as tr
    from bench import cluster_graphs as cg
    from treadle.cluster import client

    url = pg_url_variant(args.pg_url, "_cluster")
    fresh_pg_database(url)
    report.env["postgres"] = pg_server_info(url)
    graphs: dict[str, Any] = {}
    base_args = ["--concurrency", str(CONCURRENCY), "--task-slots", str(TASK_SLOTS)]
    fail_args = [*base_args, "--lease-ttl", f"{FAIL_TTL:g}"]
    res: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def attempt(key: str, fn: Any) -> Any:
        res.pop(key, None)
        try:
            res[key] = fn()
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            errors[key] = f"error: {type(exc).__name__}: {exc}"
        return res.get(key)

    with scratch_dir("treadle-bench-cluster-") as tmp:
        fleet = Fleet(url, tmp)
        try:
            for name in GRAPHS:
                graphs[name] = tr.compile(getattr(cg, GRAPHS[name]), store=url, graph_id=name)
            local_chain = tr.compile(cg.chain, store=url)
            graphs["_local"] = local_chain

            # 5 (reference first, with no worker running): local runs/s ------------------
            progress(f"runs/s: local in-process reference, {n_runs} runs on 16 threads")
            attempt("local", lambda: local_runs_per_second(local_chain, n_runs, 16))

            fan1: list[float] = []
            fan2: list[float] = []
            pids2: Counter = Counter()
            reexec = [0]  # remote fan-out tasks that ran more than once
            kills: list[dict[str, Any]] = []
            terms: list[dict[str, Any]] = []

            def one_worker() -> None:
                (a,) = fleet.start_ready(["a"], base_args)
                progress("warm-up on 1 worker")
                fanout_once(client, graphs["fanout"], 4, 0.01)
                run_distributed(client, graphs["rt_remote"], {"ts": []})
                run_distributed(client, graphs["chain"], {"x": 0, "sleep": 0.0})
                for r in range(fan_reps):
                    progress(f"CPU fan-out {n_fan} x {cpu:g} s on 1 worker, run {r + 1}/{fan_reps}")
                    if attempt("fan1", lambda: fanout_once(client, graphs["fanout"], n_fan, cpu)):
                        fan1.append(res["fan1"][0])
                        reexec[0] += res["fan1"][2]
                progress(f"round trip: {rt_runs} x ({RT_NODES} remote nodes, {RT_NODES} local nodes) on 1 worker")
                attempt("commit", lambda: commit_latency(url, 100))
                attempt("rt", lambda: round_trip(client, graphs["rt_remote"], graphs["rt_local"], rt_runs))
                progress(f"runs/s: {n_runs} chain runs on 1 worker")
                attempt("rps1", lambda: runs_per_second(client, graphs["chain"], n_runs))

            def two_workers() -> None:
                if not any(w.alive() for w in fleet.all):
                    fleet.start_ready(["a2"], base_args)
                fleet.start_ready(["b"], base_args)
                progress("warm-up on 2 workers")
                fanout_once(client, graphs["fanout"], 16, 0.01)
                for r in range(fan_reps):
                    progress(f"CPU fan-out {n_fan} x {cpu:g} s on 2 workers, run {r + 1}/{fan_reps}")
                    if attempt("fan2", lambda: fanout_once(client, graphs["fanout"], n_fan, cpu)):
                        fan2.append(res["fan2"][0])
                        pids2.clear()
                        pids2.update(res["fan2"][1])
                        reexec[0] += res["fan2"][2]
                progress(f"runs/s: {n_runs} chain runs on 2 workers")
                attempt("rps2", lambda: runs_per_second(client, graphs["chain"], n_runs))

            def fail_over() -> None:
                fleet.start_ready(["c", "d"], fail_args)
                for r in range(kill_reps):
                    progress(f"kill -9 of the run's worker after 2 of {CHAIN_STEPS} x {KILL_STEP:g} s steps "
                             f"(TTL {FAIL_TTL:g} s), {r + 1}/{kill_reps}")
                    got = attempt("kill", lambda: failover(client, graphs["chain"], fleet, signal.SIGKILL,
                                                           KILL_STEP, 2))
                    if not got:
                        break
                    kills.append(got)
                    fleet.start_ready([f"k{r + 1}"], fail_args)
                attempt("sweep", lambda: sweep_cost(graphs["chain"].backend, 200))
                for r in range(fail_reps):
                    progress(f"SIGTERM of the run's worker after 2 of {CHAIN_STEPS} x {TERM_STEP:g} s steps, "
                             f"{r + 1}/{fail_reps}")
                    got = attempt("term", lambda: failover(client, graphs["chain"], fleet, signal.SIGTERM,
                                                           TERM_STEP, 2))
                    if not got:
                        break
                    terms.append(got)
                    if r < fail_reps - 1:
                        fleet.start_ready([f"t{r + 1}"], fail_args)

            attempt("one worker", one_worker)
            attempt("two workers", two_workers)
            throughput_workers = list(fleet.all)
            trouble = fleet.lease_trouble(throughput_workers)
            if trouble:
                report.notes.append(
                    f"worker log lines during the throughput cases: {dict(trouble)}; remote tasks re-executed: "
                    f"{reexec[0]}, runs re-executed: {res.get('rps1', {}).get('retried', 0)} + "
                    f"{res.get('rps2', {}).get('retried', 0)} ('lease lost' without re-executions is the "
                    "heartbeat race of a task or run that finished during the heartbeat)")
            for w in throughput_workers:
                w.close()
            attempt("fail-over", fail_over)
        finally:
            fleet.close()
            for g in graphs.values():
                close_quietly(g)

    # ------------------------------------------------------------------------ report
    ideal1, ideal2 = n_fan * cpu, n_fan * cpu / 2

    def fan_row(key: str, setup: str, times: list[float], ideal: float) -> float | None:
        if not times:
            report.add(key=key, measure="fan-out wall", setup=setup, error=errors.get(key, "not measured"))
            return None
        m = statistics.median(times)
        report.add(key=key, measure="fan-out wall", setup=setup, n=f"{n_fan} x {cpu:g} s", median=m,
                   unit="s", times=[round(t, 3) for t in times], **{"p90 / max": max(times),
                                                                    "ideal / bound": ideal})
        return m

    m1 = fan_row("fan1", f"1 worker x{TASK_SLOTS} slots", fan1, ideal1)
    m2 = fan_row("fan2", f"2 workers x{TASK_SLOTS} slots", fan2, ideal2)

    rt_p50 = None
    rt = res.get("rt")
    if rt:
        gl, gr = rt["gaps"]["local"], rt["gaps"]["remote"]
        for kind, gaps in (("local", gl), ("remote", gr)):
            report.add(key=f"gap_{kind}", measure=f"gap, {kind} nodes", setup="1 worker",
                       n=len(gaps), median=pct(gaps, 0.5), unit="ms", **{"p90 / max": pct(gaps, 0.9)})
        rt_p50 = pct(gr, 0.5) - pct(gl, 0.5)
        report.add(key="rt", measure="round trip (gap diff)", setup="1 worker", n=len(gr),
                   median=rt_p50, unit="ms", **{"p90 / max": pct(gr, 0.9) - pct(gl, 0.9),
                                                "ideal / bound": f"<= {ROUND_TRIP_TARGET_MS:g} ms"})
        per_node = (statistics.median(rt["walls"]["remote"]) - statistics.median(rt["walls"]["local"])) / RT_NODES
        report.add(key="rt_wall", measure="  same, run walls / node", setup="1 worker",
                   n=len(rt["walls"]["remote"]), median=per_node * 1000, unit="ms")
        if rt["db"]:
            report.add(key="rt_db", measure="  task created->ended - body", setup="DB clock",
                       n=len(rt["db"]), median=pct(rt["db"], 0.5), unit="ms",
                       **{"p90 / max": pct(rt["db"], 0.9)})
            report.add(key="rt_out", measure="  task created -> body start", setup="DB clock",
                       n=len(rt["outbound"]), median=pct(rt["outbound"], 0.5), unit="ms",
                       **{"p90 / max": pct(rt["outbound"], 0.9)})
    else:
        report.add(key="rt", measure="round trip (gap diff)", error=errors.get("rt", "not measured"))
    commits = res.get("commit")
    if commits:
        report.add(key="commit", measure="  PG 1-row INSERT + COMMIT", setup="1 connection", n=len(commits),
                   median=pct(commits, 0.5), unit="ms", **{"p90 / max": pct(commits, 0.9)})

    def fail_rows(key: str, label: str, setup: str, got: list[dict[str, Any]], bound: float) -> float | None:
        if not got:
            report.add(key=key, measure=f"{label} -> next checkpoint", setup=setup,
                       error=errors.get(key, "not measured"))
            return None
        claims = [g["claim"] for g in got]
        ckpts = [g["ckpt"] for g in got]
        report.add(key=f"{key}_claim", measure=f"{label} -> claimed again", setup=setup, n=len(got),
                   median=statistics.median(claims), unit="s", **{"p90 / max": max(claims)},
                   times=[round(c, 3) for c in claims])
        report.add(key=f"{key}_ckpt", measure=f"{label} -> next checkpoint", setup=setup, n=len(got),
                   median=statistics.median(ckpts), unit="s",
                   **{"p90 / max": max(ckpts), "ideal / bound": f"<= {bound:g} s"},
                   times=[round(c, 3) for c in ckpts], attempts=[g["attempt"] for g in got])
        return max(ckpts)

    fail_rows("kill", "kill -9", f"TTL {FAIL_TTL:g} s, {KILL_STEP:g} s steps", kills, KILL_TARGET)
    kill_ckpts = [g["ckpt"] for g in kills]
    kill_median = statistics.median(kill_ckpts) if kills else None
    kill_p90 = pct(kill_ckpts, 0.9) if kills else None
    if kills:
        report.add(key="kill_p90", measure="  same, p90", setup=f"{len(kills)} kills",
                   n=len(kills), median=kill_p90, unit="s")
    sweeps = res.get("sweep")
    if sweeps:
        report.add(key="sweep", measure="  one sweep (session check)", setup="2 workers alive",
                   n=len(sweeps), median=pct(sweeps, 0.5), unit="ms", **{"p90 / max": pct(sweeps, 0.9)})
    term_max = fail_rows("term", "SIGTERM", f"{TERM_STEP:g} s steps", terms, 1.0)

    rates: dict[str, float | None] = {}
    for key, setup in (("rps1", f"1 worker x{CONCURRENCY} runs"),
                       ("rps2", f"2 workers x{CONCURRENCY} runs"),
                       ("local", "local, 16 threads")):
        got = res.get(key)
        rates[key] = got["rate"] if got else None
        if got:
            report.add(key=key, measure=f"runs/s, {CHAIN_STEPS}-step chain", setup=setup, n=n_runs,
                       median=got["rate"], unit="runs/s", span_s=round(got["span"], 3),
                       submit_s=round(got.get("submit", 0.0), 3))
        else:
            report.add(key=key, measure=f"runs/s, {CHAIN_STEPS}-step chain", setup=setup,
                       error=errors.get(key, "not measured"))

    report.ratio("CPU fan-out speed-up, 1 -> 2 workers", m1, m2, ">= 1.8")
    report.ratio("CPU fan-out, 2 workers: ideal / measured", ideal2, m2)
    report.ratio(f"remote round trip p50 / {ROUND_TRIP_TARGET_MS:g} ms", rt_p50, ROUND_TRIP_TARGET_MS, "<= 1")
    report.ratio(f"kill -9 -> next checkpoint (median) / {KILL_TARGET:g} s target", kill_median,
                 KILL_TARGET, "<= 1")
    report.ratio(f"kill -9 -> next checkpoint (median) / lease TTL {FAIL_TTL:g} s", kill_median, FAIL_TTL,
                 "<= 0.15")
    report.ratio(f"kill -9 -> next checkpoint (p90) / lease TTL {FAIL_TTL:g} s", kill_p90, FAIL_TTL)
    report.ratio("SIGTERM -> next checkpoint on the other worker (max) / 1 s", term_max, 1.0, "<= 1")
    report.ratio("round trip p50 / PG commit p50 (3 commits on its path)", rt_p50,
                 pct(commits, 0.5) if commits else None)
    report.ratio("runs/s: 2 workers / 1 worker", rates["rps2"], rates["rps1"])
    report.ratio("runs/s: 1 worker / local in-process", rates["rps1"], rates["local"])
    report.ratio("runs/s: 2 workers / local in-process", rates["rps2"], rates["local"])

    report.notes += [
        f"CPU fan-out: one distributed run, Send x {n_fan}, each branch burns {cpu:g} s of thread CPU in pure "
        f"Python on a worker's thread pool (GIL: one core per worker process); ideal = {n_fan * cpu:g} CPU-s / "
        f"processes; wall = caller's submit -> wait; median of {fan_reps}; branches per pid on 2 workers: "
        f"{sorted(pids2.values()) if fan2 else 'n/a'}",
        f"round trip: each chain body stamps time.time() at start/end; gap = next body start - previous "
        f"body end (includes LangGraph's step, the checkpoint commit and, for remote nodes, submit_task, "
        f"the claim, finish_task and the orchestrator's read of the result); round trip = remote gap - local "
        f"gap at the same percentile; {rt_runs} runs of each {RT_NODES}-node chain, interleaved; 'task row' "
        f"rows use the task's created_at/ended_at (PostgreSQL clock_timestamp, same host clock); a remote task "
        f"commits 3 times on its path (submit_task, claim_tasks, finish_task), hence the PG commit row",
        f"fail-over: the victim is the worker named in the run's lease; 'claimed again' = the run's epoch "
        f"rises; 'next checkpoint' = first checkpoint with a higher step after that claim (the other worker "
        f"re-runs the step in flight: kill -9 includes one {KILL_STEP:g} s step, SIGTERM the victim's in-flight "
        f"remainder plus one {TERM_STEP:g} s step); polled every ~5 ms; lease TTL {FAIL_TTL:g} s (heartbeat "
        f"TTL/3); a kill -9 ends the victim's PostgreSQL session, which releases its session lock, and the "
        f"other worker's next sweep (every ~0.5 s, TREADLE_SWEEP_INTERVAL) re-queues the run; median and "
        f"max of the repetitions ({kill_reps} kills, {fail_reps} SIGTERMs)",
        f"runs/s: {n_runs} runs queued one after another from this process (distinct threads; the workers start "
        f"as they arrive), span = first created_at -> last ended_at (database clock); durability='sync' "
        f"everywhere; the local reference runs the same graph in this process (16-thread pool) before any "
        f"worker starts; {os.cpu_count()} cores are shared by PostgreSQL, the workers and this caller, so "
        f"a second worker process adds little runs/s once they are busy",
    ]
    for got in terms:
        if got["rc"] != 0 or not got["handed_back"]:
            report.notes.append(f"SIGTERM: worker {got['victim'].label} exited {got['rc']}, "
                                f"'handed back' logged: {got['handed_back']}")
    for key, why in errors.items():
        report.notes.append(f"{key}: {why}")
    report.env["elapsed_s"] = round(time.perf_counter() - t_begin, 1)
    report.notes.append(f"benchmark took {time.perf_counter() - t_begin:.0f} s including worker start-ups")
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
