"""
Export throughput and memory of AsanaAuditLogExportOperator against the stand-in, at two sizes.

The operator runs outside a DAG run (its ``execute`` with a data interval in the context), after one
warm-up export, writing a gzip JSON Lines file to a temporary folder; the stand-in runs in its own
process. Flat memory means
the peak of Python allocations does not grow with the number of events exported.

    python bench/bench_export.py                 # 20,000 and 200,000 events in one interval
    python bench/bench_export.py --sizes 5000    # quicker
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from typing import Any

from bench_read import run_cli, start_standin


def export(folder: str) -> tuple[dict[str, Any], float]:
    from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator

    now = datetime.now(timezone.utc)
    operator = AsanaAuditLogExportOperator(
        task_id="bench", destination=f"{folder}/export.jsonl.gz", settle_period=timedelta(0)
    )
    started = time.perf_counter()
    summary = operator.execute(
        {"data_interval_start": now - timedelta(days=2), "data_interval_end": now}  # type: ignore[arg-type]
    )
    return summary, time.perf_counter() - started


def measure(events: int) -> dict[str, float]:
    """Export twice: once timed, once under tracemalloc (which slows allocation down)."""
    process, conn = start_standin(events, days=1)
    os.environ["AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT"] = json.dumps(conn)
    try:
        with tempfile.TemporaryDirectory() as folder:
            export(folder)  # warm-up: first imports and connection resolution are not the export's cost
            summary, elapsed = export(folder)
            size = os.path.getsize(summary["path"])
            tracemalloc.start()
            export(folder)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return {
            "events": summary["events"],
            "pages": summary["pages"],
            "seconds": elapsed,
            "events_per_s": summary["events"] / elapsed,
            "peak_python_kib": peak / 1024,
            "file_kib": size / 1024,
        }
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    logging.disable(logging.INFO)  # the operator's progress lines would interleave with the table
    run_cli(__doc__ or "", measure, ("file KiB", "file_kib"))


if __name__ == "__main__":
    main()
