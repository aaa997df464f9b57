"""Benchmark reports: tables, ratios against targets, and JSON lines in bench/results/."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Ratio", "Report", "host_info"]

from bench._common import BENCH_DIR, RESULTS_DIR, ForeignCpu, load_average

# ------------------------------------------------------------------- reporting


@dataclass
class Ratio:
    name: str
    value: float | None  # None when a side is unavailable
    target: str | None = None  # e.g. ">= 2.5" or "<= 1.5"

    @property
    def met(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        op, num = self.target.split()
        return self.value >= float(num) if op == ">=" else self.value <= float(num)


@dataclass
class Report:
    """Collects one benchmark's figures, prints them and writes a JSON line."""

    bench: str
    title: str
    columns: list[str]
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def ratio(self, name: str, num: float | None, den: float | None, target: str | None = None) -> Ratio:
        value = None if not num or not den else num / den
        r = Ratio(name, value, target)
        self.ratios.append(r)
        return r

    # -- output
    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=None if sys.stdout.isatty() else 120)
        t = Table(title=self.title, title_justify="left")
        for c in self.columns:
            vals = [row.get(c) for row in self.rows if row.get(c) is not None]
            textual = c == self.columns[0] or (bool(vals) and all(isinstance(v, str) for v in vals))
            t.add_column(c, justify="left" if textual else "right")
        for row in self.rows:
            t.add_row(*[_fmt(row.get(c)) for c in self.columns])
        console.print(t)
        if self.ratios:
            rt = Table(title="Ratios", title_justify="left")
            rt.add_column("ratio")
            rt.add_column("value", justify="right")
            rt.add_column("target", justify="right")
            rt.add_column("", justify="left")
            for r in self.ratios:
                verdict = {True: "[green]met[/]", False: "[red]MISS[/]", None: ""}[r.met]
                if r.value is None:
                    verdict = "[yellow]n/a[/]"
                rt.add_row(r.name, "n/a" if r.value is None else f"{r.value:.2f}x", r.target or "", verdict)
            console.print(rt)
        for n in self.notes:
            console.print(f"  [dim]- {n}[/]", highlight=False)
        console.print()

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.bench}.jsonl"
        record = {
            "bench": self.bench,
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "quick": self.quick,
            "host": host_info(),
            "env": self.env,
            "params": self.params,
            "rows": self.rows,
            "ratios": [{"name": r.name, "value": r.value, "target": r.target, "met": r.met} for r in self.ratios],
            "notes": self.notes,
        }
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
        return path

    def __post_init__(self) -> None:
        self.env["loadavg_start"] = load_average()
        self._foreign = ForeignCpu()

    def finish(self, no_json: bool) -> None:
        self.env["loadavg_end"] = load_average()
        other = self._foreign.cores()
        self.env["foreign_cpu_cores"] = other
        if other is not None:
            busy = other > 0.25
            self.notes.append(
                f"other work on this machine used {other:.2f} of {os.cpu_count()} cores on average during this benchmark"
                + (" - BUSY: absolute figures are depressed; systems were interleaved, compare ratios" if busy else "")
            )
        self.notes = list(dict.fromkeys(self.notes))
        sys.stderr.flush()
        self.print()
        if not no_json:
            path = self.write()
            print(f"results appended to {path.relative_to(BENCH_DIR.parent)}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_rev() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        rev = out.stdout.strip()
        if not rev:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        return None


def host_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git": _git_rev(),
        "versions": {
            d: _version(d)
            for d in (
                "treadle",
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-checkpoint-postgres",
                "langgraph-checkpoint-sqlite",
                "psycopg",
            )
        },
    }
