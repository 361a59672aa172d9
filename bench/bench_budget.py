"""
A read under a tight token budget: how close to the time the budget allows, and how many requests
the stand-in refuses, at ``concurrency`` 1, 4 and 8.

The stand-in allows ``--rpm`` (120) requests a minute in bursts of ``--burst`` (2), the budget a token
shared with another consumer leaves a task (issue 19). It holds ``--events`` (30,000) events over
``--days`` (3) days, answers each request after ``--latency`` (50 ms), and the client reads the last
day. By default the client is told nothing of the budget and learns it from the 429s
(``--client-rpm N`` configures ``requests_per_minute`` instead).

Unlike the other benchmarks, the stand-in runs in this process (``FakeAsana``): the figures here
are the stand-in's own counts (requests, 429s) and its ground truth (is the read exact), and the
time is bound by the budget (2 requests a second), not by CPU. Each case has a token of its own,
so that no case inherits the rate the previous one learnt.

Columns: ``requests`` and ``429s`` as the stand-in counted them; ``budget s``, the seconds the
budget needs to let through the requests that were answered, ``(answered - burst) / rate``;
``ratio``, the read's seconds over that.

    python bench/bench_budget.py                           # about 3 minutes
    python bench/bench_budget.py --events 6000 --concurrency 8
    python bench/bench_budget.py --client-rpm 120          # the budget configured, not learnt
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from common import print_table

from airflow_provider_asana_audit.budget import RateLimiter
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.testing import FakeAsana

COLUMNS = [
    ("concurrency", "{}"),
    ("events", "{:,}"),
    ("exact", "{}"),
    ("requests", "{:,}"),
    ("429s", "{:,}"),
    ("refused", "{:.1%}"),
    ("seconds", "{:.1f}"),
    ("budget s", "{:.1f}"),
    ("ratio", "{:.2f}"),
]


def measure(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=args.days)
    read_from = end - timedelta(days=1)
    with FakeAsana(
        token=f"bench-budget-c{concurrency}-{time.time_ns()}",
        seed=args.seed,
        event_count=args.events,
        start=start,
        end=end,
        latency=args.latency,
        requests_per_minute=args.rpm,
        burst=args.burst,
    ) as fake:
        client = AsanaAuditLogClient(
            token=fake.token,
            workspace_gid=fake.workspace_gid,
            base_url=fake.base_url,
            rate_limiter=None if args.client_rpm is None else RateLimiter(args.client_rpm),
            progress_interval=3600,
        )
        query = AuditLogQuery(start_at=read_from, end_at=end, page_size=100)
        started = time.perf_counter()
        got = [event["gid"] for event in client.iter_events(query, concurrency=concurrency)]
        seconds = time.perf_counter() - started
        client.close()
        truth = [event["gid"] for event in fake.ground_truth(read_from, end)]
        stats = fake.stats
    refused = stats.by_status[429]
    budget = max(0, stats.requests - refused - args.burst) / (args.rpm / 60)
    return {
        "concurrency": concurrency,
        "events": len(got),
        "exact": got == truth,
        "requests": stats.requests,
        "429s": refused,
        "refused": refused / stats.requests,
        "seconds": seconds,
        "budget s": budget,
        "ratio": seconds / budget if budget else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rpm", type=int, default=120, help="the stand-in's requests a minute")
    parser.add_argument("--burst", type=int, default=2, help="the stand-in's bucket size")
    parser.add_argument("--client-rpm", type=float, default=None, help="the client's requests_per_minute")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    print(
        f"{args.events:,} events over {args.days:g} days, the last day read; stand-in: {args.rpm} "
        f"requests/minute in bursts of {args.burst}, {args.latency * 1000:.0f} ms a request; client: "
        + ("learns the budget" if args.client_rpm is None else f"requests_per_minute={args.client_rpm:g}")
    )
    rows = []
    for concurrency in args.concurrency:
        rows.append(measure(args, concurrency))
        print(f"  c={concurrency} done", flush=True)
    print_table(COLUMNS, rows)


if __name__ == "__main__":
    main()
