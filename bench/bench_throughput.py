"""
Read throughput, CPU and memory of this client, sequential and concurrent, against Asana's own SDK.

Every client reads the same window from the same stand-in (``python -m
airflow_provider_asana_audit.testing``, in its own process, answering each request after
``--latency`` seconds, as a remote API would), each client in a fresh process of its own so that its
CPU time and peak RSS are its own:

* ``sdk``: Asana's official Python SDK (``asana==5.4.0``), ``AuditLogAPIApi.get_audit_log_events``
  with ``item_limit`` set to the number of events (it never stops by itself);
* ``c=1``, ``c=4``, ... : ``AsanaAuditLogClient.iter_events(query, concurrency=N)``.

Each read is checked: the number of events, and a digest of their gids in order, against the
events the stand-in generated. CPU is the reading process's user+system time during the read
(imports excluded), per 100,000 events; it includes a sha256 of every gid (the check). Peak RSS is
the process's, imports included (Airflow's for this client); "RSS growth" is how much it grew
during the read.

Three tables:

1. throughput at ``--latency`` (default 50 ms) for ``--events`` (default 50,000);
2. memory at ``--memory-sizes`` (default 100,000 and 1,000,000 events; no latency, for speed);
3. under a rate limit: the stand-in allows ``--rl-rpm`` (600) requests a minute (a token bucket,
   429 with Retry-After beyond it) at ``--rl-latency`` (100 ms); the client's own limiter is set a
   little under it (``--rl-client-rpm``, 590). 600 requests of 100 events a minute is 1,000 events/s.

Asana's SDK runs in a virtualenv of its own (``--sdk-python``, default ``.venv/bench``), made on
first use with ``.venv/tools/bin/uv`` (see bench/README.md); it is never a dependency of the package.

    python bench/bench_throughput.py
    python bench/bench_throughput.py --events 20000 --skip-memory --skip-rate-limited   # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from common import BENCH_DIR, REPO_DIR, Standin, print_table, standin

SDK_REQUIREMENT = "asana==5.4.0"
_TRUTH_LIMIT = 200_000  # above this, the reads are checked against each other instead


def ensure_sdk_python(path: str) -> str:
    """The SDK virtualenv's interpreter; make the virtualenv if it does not exist yet."""
    if os.path.exists(path):
        return path
    venv = os.path.dirname(os.path.dirname(path))
    uv = os.path.join(REPO_DIR, ".venv", "tools", "bin", "uv")
    print(f"Making {venv} for Asana's SDK ({SDK_REQUIREMENT}) with {uv}", flush=True)
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, venv], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", path, SDK_REQUIREMENT], check=True)
    return path


def truth_digest(server: Standin) -> str | None:
    """sha256 of the gids, in the server's order, of the events the stand-in generated."""
    if server.events > _TRUTH_LIMIT:
        return None
    from airflow_provider_asana_audit.testing import generate_events

    digest = hashlib.sha256()
    for event in generate_events(seed=server.seed, start=server.start, end=server.end, count=server.events):
        digest.update(event["gid"].encode())
    return digest.hexdigest()


def run_client(
    server: Standin,
    client: str,
    *,
    sdk_python: str | None,
    requests_per_minute: int | None = None,
    count_requests: bool = False,
) -> dict[str, Any]:
    """Read the stand-in's whole window with one client, in a fresh process; return its figures."""
    spec = {
        "client": "sdk" if client == "sdk" else "ours",
        "concurrency": 1 if client == "sdk" else int(client.split("=")[1]),
        "base_url": server.base_url,
        "token": server.token,
        "workspace_gid": server.workspace_gid,
        "start_at": server.start.isoformat(),
        "end_at": server.end.isoformat(),
        "expected": server.events,
        "requests_per_minute": requests_per_minute,
        "count_requests": count_requests,
    }
    python = sdk_python if client == "sdk" else sys.executable
    assert python is not None
    done = subprocess.run(
        [python, os.path.join(BENCH_DIR, "throughput_child.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    events = result["events"]
    result.update(
        client=client,
        events_per_s=events / result["seconds"],
        cpu_per_100k=result["cpu"] / max(events, 1) * 100_000,
    )
    return result


def check(results: list[dict[str, Any]], server: Standin, truth: str | None) -> None:
    """Mark each result ``ok`` if it read every event once, in order."""
    reference = truth or next((r["digest"] for r in results if r["client"] == "c=1"), None)
    for result in results:
        digests, counts = result.get("digests", {result["digest"]}), result.get("counts", {result["events"]})
        exact = counts == {server.events} and (reference is None or digests == {reference})
        result["check"] = "ok" if exact else "MISMATCH"


def add_ratios(results: list[dict[str, Any]]) -> None:
    sdk = next((r for r in results if r["client"] == "sdk"), None)
    sequential = next((r for r in results if r["client"] == "c=1"), None)
    for result in results:
        if sdk is not None:
            result["speed/sdk"] = result["events_per_s"] / sdk["events_per_s"]
            result["cpu/sdk"] = result["cpu_per_100k"] / sdk["cpu_per_100k"]
        if sequential is not None:
            result["speed/c=1"] = result["events_per_s"] / sequential["events_per_s"]


THROUGHPUT_COLUMNS = [
    ("client", "{}"),
    ("events", "{:,}"),
    ("seconds", "{:.1f}"),
    ("events/s", "{:,.0f}"),
    ("CPU s/100k", "{:.2f}"),
    ("peak RSS MiB", "{:.0f}"),
    ("RSS growth MiB", "{:.1f}"),
    ("speed/sdk", "{:.2f}x"),
    ("cpu/sdk", "{:.2f}x"),
    ("speed/c=1", "{:.2f}x"),
    ("check", "{}"),
]


def as_row(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "client": result["client"],
        "events": result["events"],
        "seconds": result["seconds"],
        "events/s": result["events_per_s"],
        "CPU s/100k": result["cpu_per_100k"],
        "peak RSS MiB": result["rss_mib"],
        "RSS growth MiB": result["rss_growth_mib"],
        "speed/sdk": result.get("speed/sdk"),
        "cpu/sdk": result.get("cpu/sdk"),
        "speed/c=1": result.get("speed/c=1"),
        "check": result.get("check"),
    }


def median_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """
    One result from repeated runs of a client: the median of each figure.

    The machine is shared, so one run can be slowed down by anything; the median of a few runs is
    steadier than any one of them. A run that read anything wrong shows in ``check`` all the same.
    """
    result = dict(runs[len(runs) // 2])
    for key in ("seconds", "cpu", "rss_mib", "rss_growth_mib"):
        result[key] = statistics.median(run[key] for run in runs)
    result["events_per_s"] = result["events"] / result["seconds"]
    result["cpu_per_100k"] = result["cpu"] / max(result["events"], 1) * 100_000
    result["digests"] = {run["digest"] for run in runs}
    result["counts"] = {run["events"] for run in runs}
    return result


def throughput(args: argparse.Namespace, sdk_python: str | None) -> None:
    clients = (["sdk"] if sdk_python else []) + [f"c={n}" for n in args.concurrency]
    print(
        f"\n## Throughput: {args.events:,} events over {args.days:g} day(s), "
        f"stand-in latency {args.latency * 1000:.0f} ms/request, median of {args.repeat} run(s)\n",
        flush=True,
    )
    with standin(args.events, days=args.days, latency=args.latency) as server:
        truth = truth_digest(server)
        runs: dict[str, list[dict[str, Any]]] = {client: [] for client in clients}
        for _ in range(args.repeat):  # round after round, so that a slow spell hits every client
            for client in clients:
                runs[client].append(run_client(server, client, sdk_python=sdk_python))
        results = [median_of(runs[client]) for client in clients]
    check(results, server, truth)
    add_ratios(results)
    print_table(THROUGHPUT_COLUMNS, [as_row(r) for r in results])


def memory(args: argparse.Namespace, sdk_python: str | None) -> None:
    clients = (["sdk"] if sdk_python else []) + [f"c={n}" for n in args.memory_concurrency]
    print(
        f"\n## Memory: {' and '.join(f'{n:,}' for n in args.memory_sizes)} events, "
        f"stand-in latency {args.memory_latency * 1000:.0f} ms/request\n",
        flush=True,
    )
    rows = []
    for size in args.memory_sizes:
        with standin(size, days=args.days, latency=args.memory_latency) as server:
            truth = truth_digest(server)
            results = [run_client(server, client, sdk_python=sdk_python) for client in clients]
        check(results, server, truth)
        rows += [as_row(r) for r in results]
    columns = [c for c in THROUGHPUT_COLUMNS if c[0] not in ("speed/sdk", "cpu/sdk", "speed/c=1")]
    print_table(columns, rows)


def rate_limited(args: argparse.Namespace, sdk_python: str | None) -> None:
    clients = [f"c={n}" for n in args.rl_concurrency] + (["sdk"] if sdk_python and args.rl_sdk else [])
    allowed = args.rl_rpm * 100 / 60
    print(
        f"\n## Rate-limited: {args.rl_events:,} events; stand-in allows {args.rl_rpm} requests/minute "
        f"({allowed:,.0f} events/s), latency {args.rl_latency * 1000:.0f} ms; this client's limiter at "
        f"{args.rl_client_rpm}/minute\n",
        flush=True,
    )
    rows = []
    for client in clients:
        # A stand-in of its own for each client: each starts with a full bucket, as a fresh token would.
        with standin(
            args.rl_events, days=args.days, latency=args.rl_latency, requests_per_minute=args.rl_rpm
        ) as server:
            truth = truth_digest(server)
            result = run_client(
                server,
                client,
                sdk_python=sdk_python,
                requests_per_minute=None if client == "sdk" else args.rl_client_rpm,
                count_requests=True,
            )
        check([result], server, truth)
        requests = sum(result["statuses"].values())
        limited = result["statuses"].get("429", 0)
        rows.append(
            {
                "client": client,
                "events": result["events"],
                "seconds": result["seconds"],
                "events/s": result["events_per_s"],
                "% of allowed": 100 * result["events_per_s"] / allowed,
                "requests": requests,
                "429s": limited,
                "429 %": 100 * limited / max(requests, 1),
                "check": result["check"],
            }
        )
    print_table(
        [
            ("client", "{}"),
            ("events", "{:,}"),
            ("seconds", "{:.1f}"),
            ("events/s", "{:,.0f}"),
            ("% of allowed", "{:.1f}"),
            ("requests", "{:,}"),
            ("429s", "{:,}"),
            ("429 %", "{:.1f}"),
            ("check", "{}"),
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--days", type=float, default=1)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request (default 0.05)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeat", type=int, default=3, help="runs per client; medians are shown")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--memory-concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--memory-latency", type=float, default=0.0)
    parser.add_argument("--rl-events", type=int, default=30_000)
    parser.add_argument("--rl-rpm", type=int, default=600)
    parser.add_argument("--rl-latency", type=float, default=0.1)
    parser.add_argument("--rl-client-rpm", type=int, default=590)
    parser.add_argument("--rl-concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rl-sdk", action="store_true", help="also run the SDK under the rate limit")
    parser.add_argument("--sdk-python", default=os.path.join(REPO_DIR, ".venv", "bench", "bin", "python"))
    parser.add_argument("--no-sdk", action="store_true", help="leave Asana's SDK out")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-rate-limited", action="store_true")
    args = parser.parse_args()
    sdk_python = None if args.no_sdk else ensure_sdk_python(args.sdk_python)
    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    if not args.skip_throughput:
        throughput(args, sdk_python)
    if not args.skip_memory:
        memory(args, sdk_python)
    if not args.skip_rate_limited:
        rate_limited(args, sdk_python)


if __name__ == "__main__":
    main()
