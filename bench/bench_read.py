"""
Read throughput and memory of the client against the stand-in, at two window sizes.

The stand-in runs in a separate process, so only the client's own memory is measured here. Flat
memory means the peak of Python allocations does not grow with the number of events read.

    python bench/bench_read.py                 # 20,000 and 200,000 events
    python bench/bench_read.py --sizes 5000    # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

from airflow_provider_asana_audit.client import AsanaAuditLogClient, AuditLogQuery


def start_standin(events: int, days: int = 7) -> tuple[subprocess.Popen[str], dict[str, object]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_asana_audit.testing",
            "--port",
            "0",
            "--days",
            str(days),
            "--events-per-day",
            str(events // days),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("export AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT="):
            conn = json.loads(line.split("=", 1)[1].strip().strip("'"))
            return process, conn
    raise RuntimeError("the stand-in did not print its connection")


def read_all(client: AsanaAuditLogClient) -> tuple[int, int]:
    count = pages = 0
    for page in client.iter_pages(AuditLogQuery(page_size=100)):
        pages += 1
        count += len(page.events)
    return count, pages


def measure(events: int) -> dict[str, float]:
    """Read everything twice: once timed, once under tracemalloc (which slows allocation down)."""
    process, conn = start_standin(events)
    try:
        client = AsanaAuditLogClient(
            token=str(conn["password"]),
            workspace_gid=str(conn["extra"]["workspace_gid"]),  # type: ignore[index]
            base_url=str(conn["host"]),
            progress_interval=3600,
        )
        started = time.perf_counter()
        count, pages = read_all(client)
        elapsed = time.perf_counter() - started
        tracemalloc.start()
        read_all(client)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {
            "events": count,
            "pages": pages,
            "seconds": elapsed,
            "events_per_s": count / elapsed,
            "peak_python_kib": peak / 1024,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_cli(doc: str, measure: Callable[[int], dict[str, float]], last: tuple[str, str]) -> None:
    """Parse ``--sizes``, measure each size, print a table; ``last``: (heading, key) of the last column."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    args = parser.parse_args()
    heading, key = last
    print(f"{'events':>9} {'pages':>6} {'seconds':>8} {'events/s':>9} {'peak py KiB':>12} {heading:>12}")
    for size in args.sizes:
        r = measure(size)
        print(
            f"{r['events']:>9.0f} {r['pages']:>6.0f} {r['seconds']:>8.1f} {r['events_per_s']:>9.0f} "
            f"{r['peak_python_kib']:>12.0f} {r[key]:>12.0f}"
        )


def main() -> None:
    run_cli(__doc__ or "", measure, ("max RSS MiB", "max_rss_mib"))


if __name__ == "__main__":
    main()
