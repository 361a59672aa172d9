"""
Clients of the stand-in as the tests make them: retry policies that do not slow a test down, a day
of the stand-in's events, now to the millisecond, and the plain client.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow_provider_asana_audit.client import AsanaAuditLogClient, RateLimiter, RetryPolicy
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.exports import midnight

__all__ = ["FAST_RETRY", "FAST_RETRY_ARGS", "PERSISTENT_RETRY", "T0", "make_client", "now_ms"]

#: :data:`FAST_RETRY` as keyword arguments, the way a DAG passes an operator's ``request_retry``.
FAST_RETRY_ARGS: dict[str, Any] = {
    "max_attempts": 3,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "max_elapsed": 30,
}
#: Retries fast: a transient fault is retried at once, one that outlasts 3 attempts fails quickly.
FAST_RETRY = RetryPolicy(**FAST_RETRY_ARGS)
#: Retries fast and outlasts up to 5 faults in a row: for reads that must succeed through them.
PERSISTENT_RETRY = RetryPolicy(max_attempts=6, max_elapsed=30, backoff_base=0.01, backoff_max=0.05)
#: Midnight three days ago: inside the stand-in's default week of events and Asana's retention.
T0 = midnight(3)


def now_ms() -> datetime:
    """Now, truncated to the millisecond as Asana's ``created_at`` (an event created now is not before it)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def make_client(fake: FakeAsana, base_url: str | None = None, **kwargs: Any) -> AsanaAuditLogClient:
    """
    A plain client of ``fake`` that retries with :data:`PERSISTENT_RETRY`.

    :param base_url: where to send the requests instead of ``fake.base_url`` (a relay in front of it).
    :param kwargs: more arguments of the client, or others than ``fake``'s (``token``, ``retry``...).
    """
    options: dict[str, Any] = {
        # A limiter of its own that learns from 429s, with no ceiling: the stand-in is local, and the
        # tests that measure pacing give their own (the client's default is Asana's 1,500 a minute).
        "rate_limiter": RateLimiter(None),
        "token": fake.token,
        "workspace_gid": fake.workspace_gid,
        "base_url": base_url or fake.base_url,
        "retry": PERSISTENT_RETRY,
        **kwargs,
    }
    return AsanaAuditLogClient(**options)
