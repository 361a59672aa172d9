"""
Run the Asana audit log stand-in in the foreground.

::

    python -m airflow_provider_asana_audit.testing --port 8765 --append-every 10
    # for throughput benchmarks: a million events, Asana's paid-plan limits, 50 ms a request
    python -m airflow_provider_asana_audit.testing --port 0 --events 1000000 --days 30 \\
        --requests-per-minute 1500 --max-in-flight 50 --latency 0.05

The first line printed is machine-readable (``ASANA_STANDIN_URL=http://127.0.0.1:8765/api/1.0``); the
next lines give the workspace gid and ready-to-paste Airflow connection set-ups. Ctrl-C or SIGTERM
stops the server cleanly (exit status 0). An invalid option value exits with status 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from types import FrameType

from airflow_provider_asana_audit.get_provider_info import CONN_TYPE
from airflow_provider_asana_audit.testing.data import DEFAULT_WORKSPACE_GID
from airflow_provider_asana_audit.testing.fake import DEFAULT_TOKEN, FakeAsana

__all__ = ["build_parser", "main", "setup_lines"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m airflow_provider_asana_audit.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_asana_audit.testing",
        description="Serve a local fake of Asana's audit log API (GET .../audit_log_events).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the generated events (default: %(default)s)"
    )
    parser.add_argument(
        "--days", type=float, default=7, help="days of events before now (default: %(default)s)"
    )
    parser.add_argument(
        "--events-per-day", type=int, default=200, help="average events per day (default: %(default)s)"
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        metavar="N",
        help="exactly N events over the --days before now (instead of --events-per-day)",
    )
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the accepted bearer token")
    parser.add_argument("--workspace-gid", default=DEFAULT_WORKSPACE_GID, help="the workspace's gid")
    parser.add_argument(
        "--offset-ttl", type=float, default=None, metavar="S", help="offsets expire after S seconds"
    )
    parser.add_argument(
        "--requests-per-minute",
        type=int,
        default=None,
        metavar="N",
        help="per-token rate limit, a token bucket (429 with Retry-After when empty)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=None,
        metavar="N",
        help="bucket size of --requests-per-minute (default: one second's worth)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        metavar="N",
        help="per-token cap on requests in flight at once (429 with Retry-After: 1 beyond it)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait SECONDS before answering each request to the events route (default: %(default)s)",
    )
    parser.add_argument(
        "--append-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="append one fresh event every SECONDS (for demoing sensors)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def setup_lines(fake: FakeAsana) -> list[str]:
    """What to print once the server listens: the URL line first, then the connection set-ups."""
    extra = json.dumps({"workspace_gid": fake.workspace_gid})
    add = [
        "airflow",
        "connections",
        "add",
        "asana_audit_log_default",
        "--conn-type",
        CONN_TYPE,
        "--conn-host",
        fake.base_url,
        "--conn-password",
        fake.token,
        "--conn-extra",
        extra,
    ]
    return [
        f"ASANA_STANDIN_URL={fake.base_url}",
        f"Fake Asana audit log API: {fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events",
        f"workspace gid: {fake.workspace_gid}",
        f"token: {fake.token}",
        "",
        "# Airflow connection, as an environment variable:",
        f"export AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT={shlex.quote(fake.connection_json())}",
        "# or with the Airflow CLI:",
        " ".join(shlex.quote(part) for part in add),
        "",
        "Press Ctrl-C to stop.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in until Ctrl-C or SIGTERM; return the exit status."""
    args = build_parser().parse_args(argv)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    try:
        fake = FakeAsana(
            workspace_gid=args.workspace_gid,
            token=args.token,
            seed=args.seed,
            start=end - timedelta(days=args.days),
            end=end,
            events_per_day=args.events_per_day,
            event_count=args.events,
            offset_ttl=args.offset_ttl,
            requests_per_minute=args.requests_per_minute,
            burst=args.burst,
            max_in_flight=args.max_in_flight,
            latency=args.latency,
            host=args.host,
            port=args.port,
            verbose=args.verbose,
        )
    except ValueError as exc:
        print(f"invalid option: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The events live as long as the server: spare every full collection meanwhile a walk through
    # them (about half a second per million events, a stall in the middle of a benchmark).
    gc.freeze()
    try:
        try:
            fake.start()
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
            return 2
        print("\n".join(setup_lines(fake)), flush=True)
        next_append = time.monotonic() + args.append_every if args.append_every else None
        while not stop.is_set():
            timeout = 0.5 if next_append is None else max(0.0, min(0.5, next_append - time.monotonic()))
            stop.wait(timeout)
            if next_append is not None and time.monotonic() >= next_append and not stop.is_set():
                (event,) = fake.append_events(1)
                print(f"appended {event['gid']} {event['created_at']} {event['event_type']}", flush=True)
                next_append += args.append_every
    finally:
        fake.stop()
        gc.unfreeze()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
