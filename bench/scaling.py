"""scaling: runs/s of 1..N `treadle worker` replicas on PostgreSQL, against the database's commit budget.

The scaling model of docs/operations.md: a run of S durable steps costs C commits,
and the database can commit at most B times per second, so the cluster can never
go above B / C runs/s, however many worker replicas it has. This benchmark measures
all three figures in one run, on one fresh database:

* **B, the commit budget**: one-row INSERT + COMMIT loops (synchronous_commit as
  the server has it) from 1, 8 and 32 connections at once, 2 s each.
* **C, commits per run**: the database's own ``xact_commit`` counter
  (``pg_stat_database``) before and after a batch of runs, divided by the runs. It
  counts every transaction of every process on that database: the submits, the
  claims, the checkpoints, the heartbeats and the sweeps.
* **runs/s with 1, 2 and 3 worker replicas** (``treadle worker --concurrency 8``):
  the same batch of 10-step chain runs queued at once (bench.cluster's runs_per_second), timed on the database clock
  from the first submit to the last end. The reference is the 1-replica figure,
  and the bound B / C.

Two cores here: the replicas, the client and PostgreSQL share them, so the
replicas' ratio says how far more workers help *on this machine*; the bound says
where the database stops any cluster.
"""

from __future__ import annotations

import threading
import time

from bench._common import (
    commit_probe_setup,
    fresh_pg_database,
    parse_args,
    pg_server_info,
    pg_url_variant,
    process_cpu_seconds,
    progress,
    scratch_dir,
)
from bench._report import Report
from bench._workers import Fleet
from bench.cluster import runs_per_second
from bench.cluster_graphs import CHAIN_STEPS

COLUMNS = ["measure", "setup", "value", "unit", "vs reference"]
CONCURRENCY = 8


def commit_rate(url: str, connections: int, seconds: float) -> float:
    """Commits per second of ``connections`` clients each looping INSERT + COMMIT."""
    import psycopg

    commit_probe_setup(url)
    counts = [0] * connections
    stop = threading.Event()
    start = threading.Barrier(connections + 1)

    def loop(i: int) -> None:
        with psycopg.connect(url) as conn:
            start.wait()
            n = 0
            while not stop.is_set():
                conn.execute("INSERT INTO commit_probe VALUES (%s, %s, %s)", (i * 100_000_000 + n, i, b"x" * 128))
                conn.commit()
                n += 1
            counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def xact_commits(url: str) -> int:
    """The database's committed transactions so far (statistics are flushed about
    once a second, so the caller waits before reading)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    quick = args.quick
    n_runs = 60 if quick else 200
    replicas = (1, 2) if quick else (1, 2, 3)
    report = Report(
        bench="scaling",
        title="scaling: worker replicas on PostgreSQL vs the commit budget (10-step chain, durability=sync)",
        columns=COLUMNS, quick=quick,
        params={"runs": n_runs, "replicas": list(replicas), "concurrency": CONCURRENCY,
                "chain_steps": CHAIN_STEPS},
    )
    if args.skip_treadle:
        report.notes.append("nothing measured: --skip-treadle")
        report.finish(args.no_json)
        return 0

    import treadle as tr
    from bench import cluster_graphs as cg
    from treadle.cluster import client

    url = pg_url_variant(args.pg_url, "_scaling")
    fresh_pg_database(url)
    report.env["postgres"] = pg_server_info(url)

    budget: dict[int, float] = {}
    for conns in (1, 8, 32):
        progress(f"commit budget: INSERT + COMMIT from {conns} connection(s), 2 s")
        budget[conns] = commit_rate(url, conns, 2.0)
        report.add(measure="commit budget", setup=f"{conns} connection(s)", value=budget[conns],
                   unit="commits/s")
    best_budget = max(budget.values())

    g = tr.compile(cg.chain, store=url, graph_id="chain")
    rates: dict[int, float] = {}
    per_run: dict[int, float] = {}
    cpu_ms: dict[int, float] = {}
    with scratch_dir("treadle-bench-scaling-") as tmp:
        for n in replicas:
            fleet = Fleet(url, tmp)
            try:
                fleet.start_ready([f"r{n}-{i}" for i in range(n)],
                                  ["--concurrency", str(CONCURRENCY), "--task-slots", "0"])
                progress(f"{n} replica(s): warm-up")
                runs_per_second(client, g, 2 * n)
                time.sleep(1.2)  # statistics flush
                before = xact_commits(url)
                pids = [w.pid for w in fleet.all]
                cpu0 = (process_cpu_seconds(pids), process_cpu_seconds(name_prefix="postgres"))
                progress(f"{n} replica(s): {n_runs} chain runs queued at once")
                res = runs_per_second(client, g, n_runs)
                cpu1 = (process_cpu_seconds(pids), process_cpu_seconds(name_prefix="postgres"))
                time.sleep(1.2)
                after = xact_commits(url)
            finally:
                fleet.close()
            rates[n] = res["rate"]
            # Less the idle seconds' heartbeats and sweeps would be guessing: count all.
            per_run[n] = (after - before) / n_runs
            report.add(measure="runs/s", setup=f"{n} worker replica(s)", value=rates[n], unit="runs/s",
                       **{"vs reference": f"{rates[n] / rates[1]:.2f}x of 1 replica"})
            report.add(measure="commits per run", setup=f"{n} worker replica(s)", value=per_run[n],
                       unit="commits", **{"vs reference": f"{per_run[n] / CHAIN_STEPS:.2f} per step"})
            worker_ms = (cpu1[0] - cpu0[0]) * 1000 / n_runs
            pg_ms = (cpu1[1] - cpu0[1]) * 1000 / n_runs
            cpu_ms[n] = worker_ms + pg_ms
            report.add(measure="worker CPU per run", setup=f"{n} worker replica(s)", value=worker_ms,
                       unit="CPU ms", **{"vs reference": f"{1000 / worker_ms:.0f} runs/s per core"
                                          if worker_ms else "-"})
            report.add(measure="PostgreSQL CPU per run", setup=f"{n} worker replica(s)", value=pg_ms,
                       unit="CPU ms", **{"vs reference": f"{1000 / pg_ms:.0f} runs/s per core"
                                          if pg_ms else "-"})
    g.close()
    c = per_run[1]
    bound = best_budget / c
    report.add(measure="bound B / C", setup="best budget / commits per run (1 replica)", value=bound,
               unit="runs/s", **{"vs reference": f"{rates[max(replicas)] / bound:.2f}x reached"})
    import os

    cores = os.cpu_count() or 1
    cpu_bound = cores * 1000 / cpu_ms[1] if cpu_ms[1] else None
    if cpu_bound:
        report.add(measure="bound: this machine's CPU", setup=f"{cores} cores / (worker + PostgreSQL CPU ms "
                   "per run, 1 replica)", value=cpu_bound, unit="runs/s",
                   **{"vs reference": f"{max(rates.values()) / cpu_bound:.2f}x reached (best)"})
    for n in replicas[1:]:
        report.ratio(f"runs/s, {n} replicas / 1 replica", rates[n], rates[1])
    report.ratio(f"runs/s with {max(replicas)} replicas / bound B/C", rates[max(replicas)], bound)
    report.ratio("best runs/s / this machine's CPU bound", max(rates.values()), cpu_bound)
    report.notes.append(
        "commits per run count every transaction on the database while the batch ran, read-only "
        "ones included (claims that find nothing, heartbeats, sweeps), so they slightly overstate "
        "the commits that need an fsync")
    report.finish(args.no_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
