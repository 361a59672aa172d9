"""
Export throughput and memory of AsanaAuditLogExportOperator against the stand-in, at two sizes.

The operator runs outside a DAG run (its ``execute`` with the stand-in's window as the data
interval), after one warm-up export, writing a gzip JSON Lines file to a temporary folder; the
stand-in runs in its own process. Flat memory means the peak of Python allocations does not grow
with the number of events exported. CPU includes the operator's JSON encoding and gzip.

    python bench/bench_export.py                                  # 20,000 and 200,000 events
    python bench/bench_export.py --sizes 5000                     # quicker
    python bench/bench_export.py --concurrency 8 --latency 0.05   # concurrent, 50 ms a request
"""

from __future__ import annotations

import json
import logging
import os
import resource
import tempfile
import time
import tracemalloc
from datetime import timedelta
from typing import Any

from bench_read import COLUMNS, sizes_parser
from common import Standin, print_table, standin


def export(server: Standin, folder: str, concurrency: int) -> tuple[dict[str, Any], float, float]:
    """One export of the stand-in's window; (the operator's summary, seconds, CPU seconds)."""
    from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator

    operator = AsanaAuditLogExportOperator(
        task_id="bench",
        destination=f"{folder}/export.jsonl.gz",
        settle_period=timedelta(0),
        concurrency=concurrency,
    )
    context = {"data_interval_start": server.start, "data_interval_end": server.end}
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    summary = operator.execute(context)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return summary, seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(server: Standin, concurrency: int) -> dict[str, Any]:
    """Export twice: once timed, once under tracemalloc (which slows allocation down)."""
    os.environ["AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT"] = json.dumps(server.connection)
    with tempfile.TemporaryDirectory() as folder:
        export(server, folder, concurrency)  # warm-up: first imports and connection resolution
        summary, seconds, cpu = export(server, folder, concurrency)
        size = os.path.getsize(summary["path"])
        tracemalloc.start()
        export(server, folder, concurrency)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    events = summary["events"]
    return {
        "events": events,
        "pages": summary["pages"],
        "seconds": seconds,
        "events/s": events / seconds,
        "CPU s/100k": cpu / max(events, 1) * 100_000,
        "peak py KiB": peak / 1024,
        "file KiB": size / 1024,
        "check": "ok" if events == server.events else f"MISMATCH ({server.events} expected)",
    }


def main() -> None:
    logging.disable(logging.INFO)  # the operator's progress lines would interleave with the table
    args = sizes_parser(__doc__ or "").parse_args()
    print(f"concurrency {args.concurrency}, stand-in latency {args.latency * 1000:.0f} ms/request\n")
    rows = []
    for size in args.sizes:
        with standin(size, days=1, latency=args.latency) as server:
            rows.append(measure(server, args.concurrency))
    print_table([*COLUMNS, ("file KiB", "{:,.0f}"), ("check", "{}")], rows)


if __name__ == "__main__":
    main()
