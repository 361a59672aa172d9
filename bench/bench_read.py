"""
Read throughput and memory of the client against the stand-in, at two window sizes.

The stand-in runs in a separate process, so only the client's own memory is measured here. Flat
memory means the peak of Python allocations does not grow with the number of events read. For the
comparison with Asana's SDK, CPU per event and concurrent reads, see ``bench_throughput.py``.

    python bench/bench_read.py                                  # 20,000 and 200,000 events
    python bench/bench_read.py --sizes 5000                     # quicker
    python bench/bench_read.py --concurrency 8 --latency 0.05   # concurrent, 50 ms a request
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
import tracemalloc
from typing import Any

from common import Standin, print_table, standin

from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.query import AuditLogQuery

COLUMNS = [
    ("events", "{:,.0f}"),
    ("pages", "{:,.0f}"),
    ("seconds", "{:.1f}"),
    ("events/s", "{:,.0f}"),
    ("CPU s/100k", "{:.2f}"),
    ("peak py KiB", "{:,.0f}"),
]


def read_all(server: Standin, concurrency: int) -> tuple[int, int]:
    client = AsanaAuditLogClient(
        token=server.token,
        workspace_gid=server.workspace_gid,
        base_url=server.base_url,
        progress_interval=3600,
    )
    count = pages = 0
    query = AuditLogQuery(start_at=server.start, end_at=server.end, page_size=100)
    for page in client.iter_pages(query, concurrency=concurrency):
        pages += 1
        count += len(page.events)
    client.close()
    return count, pages


def measure(server: Standin, concurrency: int) -> dict[str, Any]:
    """Read everything twice: once timed, once under tracemalloc (which slows allocation down)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    count, pages = read_all(server, concurrency)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tracemalloc.start()
    read_all(server, concurrency)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "events": count,
        "pages": pages,
        "seconds": elapsed,
        "events/s": count / elapsed,
        "CPU s/100k": cpu / max(count, 1) * 100_000,
        "peak py KiB": peak / 1024,
    }


def sizes_parser(doc: str) -> argparse.ArgumentParser:
    """The options every single-client benchmark takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--concurrency", type=int, default=1, help="requests at a time (default 1)")
    parser.add_argument("--latency", type=float, default=0.0, help="stand-in seconds per request")
    return parser


def main() -> None:
    logging.disable(logging.INFO)  # progress lines would interleave with the table
    args = sizes_parser(__doc__ or "").parse_args()
    print(f"concurrency {args.concurrency}, stand-in latency {args.latency * 1000:.0f} ms/request\n")
    rows = []
    for size in args.sizes:
        with standin(size, days=7, latency=args.latency) as server:
            rows.append(measure(server, args.concurrency))
    print_table(COLUMNS, rows)


if __name__ == "__main__":
    main()
