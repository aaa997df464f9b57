"""Run ``treadle`` (e.g. ``worker ...``) with an in-memory span exporter; on exit, write
the process's finished spans as JSON lines to the file named first.

    python tests/tracing_worker.py SPANS.jsonl worker --store URL REF...
"""

from __future__ import annotations

import json
import sys

from spans import memory_exporter, span_json


def main() -> int:
    out, args = sys.argv[1], sys.argv[2:]
    exporter = memory_exporter("treadle-worker")  # installed first: treadle uses it
    from treadle.cli import run_cli

    try:
        return run_cli(args)
    finally:
        with open(out, "w") as fh:
            for span in exporter.get_finished_spans():
                fh.write(json.dumps(span_json(span), default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
