"""
One token, many task processes: how close a fleet comes to the token's ceiling, and how many of its
requests the stand-in refuses, with the budget shared through Redis and without it.

The stand-in has Asana's limits: ``--rpm`` (1,500) requests a minute as a token bucket, ``--max-in-flight``
(50) requests at a time, and ``--latency`` (200 ms) a request. It holds ``--per-day`` (20,000) events
on each of P days. P task processes, for P in ``--processes`` (1 2 4 8), each read one of those days
through ``AsanaAuditLogHook`` with ``concurrency=8``, as P export tasks of one token would. The
ceiling is 100 events a request at ``--rpm``: 2,500 events/s.

* ``redis``: the connection names a Redis (``budget_redis_conn_id``): one budget for the fleet.
* ``none``: no store: each process adapts to the 429s it gets (slow start, AIMD).

Each process starts its read when all are ready (Airflow is imported first), so the time is the
fleet's, from the signal to start to the end of the last read. ``exact`` compares every process's events with
the stand-in's ground truth of its day. The stand-in runs in this process (``FakeAsana``); Redis is
``redis-server`` on a free port, ended with its process group.

    python bench/bench_fleet.py                       # about 6 minutes
    python bench/bench_fleet.py --processes 4 --store redis
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from common import REPO_DIR, print_table

from airflow_provider_asana_audit.testing import FakeAsana

COLUMNS = [
    ("store", "{}"),
    ("P", "{}"),
    ("events", "{:,}"),
    ("exact", "{}"),
    ("seconds", "{:.1f}"),
    ("events/s", "{:,.0f}"),
    ("of ceiling", "{:.0%}"),
    ("requests", "{:,}"),
    ("429s", "{:,}"),
    ("refused", "{:.1%}"),
    ("waited s", "{:,.0f}"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    """A ``redis-server`` on a free port that keeps nothing on disk; its URL."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-redis-") as folder:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)


def child(args: argparse.Namespace) -> None:
    """One task process: read one day through the hook once the parent says go; print the outcome."""
    from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook

    hook = AsanaAuditLogHook()
    hook.get_conn()
    print("ready", flush=True)
    sys.stdin.readline()
    gids = hashlib.sha256()
    count = 0
    for event in hook.iter_events(start_at=args.start, end_at=args.end, concurrency=args.concurrency):
        gids.update(event["gid"].encode() + b"\n")
        count += 1
    ended = time.time()
    usage = hook.client.rate_limiter.usage()
    print(json.dumps({"events": count, "gids": gids.hexdigest(), "waited": usage.waited, "ended": ended}))


def measure(args: argparse.Namespace, processes: int, store: str) -> dict[str, Any]:
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    start = end - timedelta(days=processes)
    with (
        FakeAsana(
            token=f"bench-fleet-{store}-{processes}-{time.time_ns()}",
            seed=args.seed,
            event_count=args.per_day * processes,
            start=start,
            end=end,
            latency=args.latency,
            requests_per_minute=args.rpm,
            max_in_flight=args.max_in_flight,
        ) as fake,
        redis_server() if store == "redis" else _nothing() as redis_url,
    ):
        extra = {"workspace_gid": fake.workspace_gid, "requests_per_minute": args.rpm}
        if redis_url:
            extra["budget_redis_conn_id"] = "budget_store"
        connection = json.loads(fake.connection_json())
        connection["extra"] = json.dumps(extra)
        env = {
            **os.environ,
            "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT": json.dumps(connection),
            "AIRFLOW_CONN_BUDGET_STORE": redis_url or "",
            "PYTHONPATH": REPO_DIR,
        }
        days = [(start + timedelta(days=i), start + timedelta(days=i + 1)) for i in range(processes)]
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--start",
                    day_start.isoformat(),
                    "--end",
                    day_end.isoformat(),
                    "--concurrency",
                    str(args.concurrency),
                ],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for day_start, day_end in days
        ]
        try:
            for process in children:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError("a task process did not start")
            fake.reset_stats()
            started = time.time()
            for process in children:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            outcomes = [
                json.loads(process.communicate(timeout=1800)[0].strip().splitlines()[-1])
                for process in children
            ]
            # From "go" to the end of the last read, not to the processes' exit (Airflow's
            # interpreter takes a moment to tear down).
            seconds = max(outcome["ended"] for outcome in outcomes) - started
        finally:
            for process in children:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
        exact = all(
            outcome["gids"]
            == hashlib.sha256(
                b"".join(e["gid"].encode() + b"\n" for e in fake.ground_truth(*day))
            ).hexdigest()
            for outcome, day in zip(outcomes, days, strict=True)
        )
        stats = fake.stats
    events = sum(outcome["events"] for outcome in outcomes)
    refused = stats.by_status[429]
    return {
        "store": store,
        "P": processes,
        "events": events,
        "exact": exact,
        "seconds": seconds,
        "events/s": events / seconds,
        "of ceiling": events / seconds / (args.rpm / 60 * 100),
        "requests": stats.requests,
        "429s": refused,
        "refused": refused / max(stats.requests, 1),
        "waited s": sum(outcome["waited"] for outcome in outcomes),
    }


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--store", choices=["redis", "none"], nargs="+", default=["redis", "none"])
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--rpm", type=int, default=1500)
    parser.add_argument("--max-in-flight", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"{args.per_day:,} events a day, one day per task process, concurrency={args.concurrency}; "
        f"stand-in: {args.rpm} requests/minute, {args.max_in_flight} in flight, "
        f"{args.latency * 1000:.0f} ms a request; ceiling {args.rpm / 60 * 100:,.0f} events/s"
    )
    rows = []
    for store in args.store:
        for processes in args.processes:
            rows.append(measure(args, processes, store))
            print(f"  {store} P={processes} done", flush=True)
    print_table(COLUMNS, rows)


if __name__ == "__main__":
    main()
