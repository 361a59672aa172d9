"""
One client's read of one window, in a process of its own, so that its CPU time and memory are its own.

Run by ``bench_throughput.py``; prints one JSON line of figures. It imports only the client it is
asked to run: Asana's SDK runs in a virtualenv that has nothing of this package or of Airflow.

    python bench/throughput_child.py '<json spec>'
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

Event = dict[str, Any]


def _ours(spec: dict[str, Any]) -> Callable[[], Iterator[Event]]:
    from airflow_provider_asana_audit.budget import RateLimiter, RetryPolicy
    from airflow_provider_asana_audit.client import AsanaAuditLogClient
    from airflow_provider_asana_audit.query import AuditLogQuery

    rpm = spec.get("requests_per_minute")
    client = AsanaAuditLogClient(
        token=spec["token"],
        workspace_gid=spec["workspace_gid"],
        base_url=spec["base_url"],
        progress_interval=3600,
        rate_limiter=RateLimiter(rpm) if rpm else None,
        retry=RetryPolicy(max_attempts=50, max_elapsed=3600),
    )
    query = AuditLogQuery(start_at=spec["start_at"], end_at=spec["end_at"])
    return lambda: client.iter_events(query, concurrency=spec["concurrency"])


def _sdk(spec: dict[str, Any]) -> Callable[[], Iterator[Event]]:
    import asana  # only in the benchmark's own virtualenv

    configuration = asana.Configuration()
    configuration.access_token = spec["token"]
    configuration.host = spec["base_url"]
    api = asana.AuditLogAPIApi(asana.ApiClient(configuration))
    opts = {"start_at": spec["start_at"], "end_at": spec["end_at"], "limit": 100}

    def read() -> Iterator[Event]:
        # The SDK follows next_page for ever (the stream contract); item_limit is what ends it.
        events: Iterator[Event] = api.get_audit_log_events(
            spec["workspace_gid"], dict(opts), item_limit=spec["expected"]
        )
        return events

    return read


def _count_requests() -> dict[str, int]:
    """Count every HTTP attempt, by status, where both clients make them: urllib3's connection pool."""
    from urllib3.connectionpool import HTTPConnectionPool

    counts: dict[str, int] = {}
    make_request = HTTPConnectionPool._make_request

    def counted(self: HTTPConnectionPool, *args: Any, **kwargs: Any) -> Any:
        response = make_request(self, *args, **kwargs)
        key = str(response.status)
        counts[key] = counts.get(key, 0) + 1
        return response

    HTTPConnectionPool._make_request = counted  # type: ignore[method-assign]
    return counts


def peak_rss_mib() -> float:
    """
    This process's peak resident set size, from ``VmHWM``.

    Not ``ru_maxrss``: Linux carries it over ``exec`` from the process that forked this one, so a
    child of a big parent would report the parent's size.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.disable(logging.CRITICAL)  # the SDK logs nothing; neither should the client measured
    read = _sdk(spec) if spec["client"] == "sdk" else _ours(spec)
    statuses = _count_requests() if spec.get("count_requests") else {}
    rss_before = peak_rss_mib()
    digest = hashlib.sha256()
    count = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for event in read():
        digest.update(event["gid"].encode())
        count += 1
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "events": count,
                "seconds": seconds,
                "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "system_cpu": after.ru_stime - before.ru_stime,
                "context_switches": (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw),
                "rss_mib": peak_rss_mib(),
                "rss_growth_mib": peak_rss_mib() - rss_before,
                "digest": digest.hexdigest(),
                "statuses": statuses,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
