"""
The archive check (``python -m airflow_provider_asana_audit.verify``) over archives of growing size.

Each archive is a default layout of daily export files written here, without Asana, in the export's exact
format (gzip level 6, no file name, mtime 0, compact JSON Lines in ``created_at`` order) with correct
manifests, ``--per-day`` events a day (realistic events from the stand-in's generator, each day with
its own gids). The check runs on each in a fresh process, as a user runs it; its peak RSS is that
process's own (``wait4``), its seconds and events/s are the check's own (imports excluded, from the
JSON report). The first row is the command on an empty base path: the imports alone.

Flat memory means the peak RSS does not grow with the number of files or events: files are streamed,
and gids go to a temporary SQLite database on disk (its size is shown too).

    python bench/bench_verify.py                       # 30 and 365 days of 1,000 events
    python bench/bench_verify.py --days 7 30 90 365 --per-day 200
    python bench/bench_verify.py --days 365 --per-day 5000
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import print_table

from airflow_provider_asana_audit.testing import DEFAULT_WORKSPACE_GID, generate_events

COLUMNS = [
    ("days", "{:,.0f}"),
    ("files", "{:,.0f}"),
    ("events", "{:,.0f}"),
    ("archive MiB", "{:,.1f}"),
    ("check s", "{:.2f}"),
    ("events/s", "{:,.0f}"),
    ("wall s", "{:.1f}"),
    ("peak RSS MiB", "{:,.1f}"),
    ("gid db MiB", "{:,.1f}"),
]
#: The archive's last day ends here (a fixed day: the archive is the same on every run).
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
EXPORT_DAG_ID = "bench_export"
_GID_BASE = 1_207_000_000_000_000


def write_archive(base: Path, *, days: int, per_day: int) -> tuple[int, int]:
    """
    A default layout of ``days`` daily files ending at :data:`END`; return (events, bytes).

    One day of generated events is the template: each day gets its events, moved to that day, with
    gids of its own, so that the archive is whole.
    """
    template = generate_events(seed=1, start=END - DAY, end=END, per_day=per_day)
    gid = _GID_BASE
    events = size = 0
    for number in range(days):
        start = END - (days - number) * DAY
        end = start + DAY
        lines = []
        for event in template:
            gid += 1
            moved = {**event, "gid": str(gid), "created_at": f"{start:%Y-%m-%d}{event['created_at'][10:]}"}
            lines.append(json.dumps(moved, ensure_ascii=False, separators=(",", ":")) + "\n")
        data = gzip.compress("".join(lines).encode("utf-8"), compresslevel=6, mtime=0)
        name = f"asana_audit_log_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.jsonl.gz"
        folder = base / f"workspace_gid={DEFAULT_WORKSPACE_GID}" / f"date={start:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        (folder / f"{name}.manifest.json").write_text(
            json.dumps(_manifest(folder / name, data, start, end, len(lines)), indent=2) + "\n"
        )
        events += len(lines)
        size += len(data)
    return events, size


def _manifest(path: Path, data: bytes, start: datetime, end: datetime, events: int) -> dict[str, Any]:
    """What the export operator writes beside a file (see docs/manifest.schema.json)."""
    interval = {"data_interval_start": _instant(start), "data_interval_end": _instant(end)}
    return {
        "events": events,
        "start_at": _instant(start),
        "end_at": _instant(end),
        "filters": {"event_type": None, "actor_type": None, "actor_gid": None, "resource_gid": None},
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "path": f"file://{path}",
        "format": "jsonl.gz",
        "exported_at": _instant(end + timedelta(minutes=30)),
        "package_version": "bench",
        "workspace_gid": DEFAULT_WORKSPACE_GID,
        "exported_by": {
            "dag_id": EXPORT_DAG_ID,
            "task_id": "export_audit_log",
            "run_id": f"scheduled__{start.isoformat()}",
            "map_index": -1,
            "try_number": 1,
            **interval,
        },
        "changes": [],
    }


def _instant(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def check(base: Path, scratch: Path) -> dict[str, Any]:
    """
    Run the command on ``base`` in a process of its own; its figures.

    ``wait4`` gives that one process's peak RSS (``RUSAGE_CHILDREN`` would give the largest of all the
    children so far). The gid database lives in the child's temporary directory, ``scratch``, which is
    watched for its largest size while the check runs.
    """
    report = scratch / "report.json"
    tmp = scratch / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_asana_audit.verify", str(base), "--json", str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    database = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        database = max(database, sum(path.stat().st_size for path in tmp.rglob("*") if path.is_file()))
        time.sleep(0.05)  # a figure, not a test: sampling the database's size
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    found = json.loads(report.read_text())
    files = found["files"]
    if files and not found["whole"]:
        raise SystemExit(f"the synthetic archive should be whole: {found['problem_counts']}")
    return {
        "files": files,
        "events": found["events"],
        "check s": found["seconds"],
        "events/s": found["events"] / found["seconds"] if found["events"] else None,
        "wall s": wall,
        # ru_maxrss is in KiB on Linux.
        "peak RSS MiB": usage.ru_maxrss / 1024,
        "gid db MiB": database / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, nargs="+", default=[30, 365], help="archive sizes in days")
    parser.add_argument("--per-day", type=int, default=1000, help="events a day (default 1,000)")
    parser.add_argument("--keep", action="store_true", help="keep the archives (their folder is printed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="asana-audit-bench-verify-"))
    os.environ.setdefault("AIRFLOW_HOME", str(root / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    print(f"{args.per_day:,} events a day; archives in {root}\n")
    rows = []
    try:
        empty = root / "empty"
        empty.mkdir()
        rows.append({"days": 0, "archive MiB": 0.0, **check(empty, Path(tempfile.mkdtemp(dir=root)))})
        for days in args.days:
            base = root / f"archive-{days}"
            _, size = write_archive(base, days=days, per_day=args.per_day)
            figures = check(base, Path(tempfile.mkdtemp(dir=root)))
            rows.append({"days": days, "archive MiB": size / 2**20, **figures})
            if not args.keep:
                shutil.rmtree(base)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_table(COLUMNS, rows)


if __name__ == "__main__":
    main()
