"""
A plain HTTP client for Asana's audit log endpoint.

It owns everything about talking to Asana: the session and its auth header, timeouts, retries that
honour ``Retry-After``, the optional shared rate limiter, pagination under the stream contract, and
recovery from a dead offset. It needs no Airflow connection or context, so it can be used and tested
on its own; :class:`~airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook` builds one from a
connection, and the operator, sensor and trigger all read through it.

The stream contract, as Asana documents it: ``next_page`` is null only when nothing at all matches a
query. Once anything matches, Asana sends ``next_page`` on every response, also after the last event,
so that the offset can be polled for events captured later; the end of the current events is a page
with an empty ``data`` list. A client that follows ``next_page`` until it is null (as Asana's own
generated Python SDK does) never stops. :meth:`AsanaAuditLogClient.iter_pages` stops at the first
empty page instead.

One window can also be read with several requests at a time (``concurrency=``): see
:mod:`airflow_provider_asana_audit.slices`, which cuts it into time slices that are each read through
the same pagination loop, and puts their events back in order.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.hooks import dispatch_hook

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogAPIError,
    AsanaAuditLogAuthError,
    AsanaAuditLogBadRequestError,
    AsanaAuditLogConfigError,
    AsanaAuditLogInvalidOffsetError,
    AsanaAuditLogNotFoundError,
    AsanaAuditLogPermanentAPIError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.slices import (
    MAX_CONCURRENCY,
    ReadCancelled,
    SlicedReader,
    check_concurrency,
)
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.utils import Logger, decode_json

__all__ = [
    "ACTOR_TYPES",
    "DEFAULT_BASE_URL",
    "FILTER_NAMES",
    "MAX_CONCURRENCY",
    "MAX_PAGE_SIZE",
    "AsanaAuditLogClient",
    "AuditLogQuery",
    "Event",
    "Page",
    "RateLimiter",
    "RetryPolicy",
    "StreamPosition",
    "check_base_url",
    "check_requests_per_minute",
    "check_retry",
]

DEFAULT_BASE_URL = "https://app.asana.com/api/1.0"
#: Asana's ``actor_type`` values. ``event_type`` is deliberately not checked: Asana keeps adding types.
ACTOR_TYPES = frozenset({"user", "asana", "asana_support", "anonymous", "external_administrator"})
#: The names of Asana's four filters, as query parameters and as keyword arguments everywhere.
FILTER_NAMES = ("event_type", "actor_type", "actor_gid", "resource_gid")
MAX_PAGE_SIZE = 100
USER_AGENT = f"airflow-provider-asana-audit/{__version__} python-requests/{requests.__version__}"

Event = dict[str, Any]


_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Refused and dropped connections, timeouts, and bodies cut short or badly encoded.
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_HINTS = {
    400: "Check the query parameters named in the message.",
    401: "The token was refused: put a valid Asana service account token in the connection's password.",
    402: (
        "The audit log API needs a service account token of an Enterprise+ organisation, a legacy "
        "Enterprise one, or Enterprise with the Compliance Management add-on; a personal access token "
        "or another plan is refused."
    ),
    403: (
        "The token may not read this audit log: use a service account token of the organisation that "
        "owns the workspace (Enterprise+, legacy Enterprise, or Enterprise with the Compliance "
        "Management add-on)."
    ),
    404: "Check the workspace_gid in the connection's extra and the API base URL in its host.",
    451: "Asana refuses this request for legal reasons; contact Asana support.",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Said when a response did not come from Asana's API (an HTML page, say).
_NOT_FROM_ASANA = (
    " The responses did not come from Asana's API: if this persists, check the API base URL in the "
    "connection's host and any proxy between Airflow and Asana (HTTPS_PROXY, NO_PROXY)."
)
#: How many times in a row an offset may be rejected with no event read in between before giving up.
_MAX_OFFSET_RECOVERIES = 3


@dataclass(frozen=True)
class AuditLogQuery:
    """
    What to read: the ``[start_at, end_at)`` window, Asana's four filters, and the page size.

    Validated on construction, before any request is made.

    :param start_at: events created at or after this instant; an aware datetime or an ISO 8601 string.
    :param end_at: events created before this instant; an aware datetime or an ISO 8601 string.
    :param event_type: only events of this type, e.g. ``user_login_failed``.
    :param actor_type: only events by actors of this type, one of :data:`ACTOR_TYPES`.
    :param actor_gid: only events by this actor; not combined with ``actor_type``.
    :param resource_gid: only events about this resource.
    :param page_size: events per request, 1 to 100.
    """

    start_at: datetime | None = None
    end_at: datetime | None = None
    event_type: str | None = None
    actor_type: str | None = None
    actor_gid: str | None = None
    resource_gid: str | None = None
    page_size: int = MAX_PAGE_SIZE

    def __post_init__(self) -> None:
        for name in ("start_at", "end_at"):
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, parse_instant(value, name=name))
                except ValueError as err:
                    raise AsanaAuditLogConfigError(str(err)) from None
        if self.start_at is not None and self.end_at is not None and self.start_at >= self.end_at:
            raise AsanaAuditLogConfigError(
                f"start_at ({format_instant(self.start_at)}) must be before end_at "
                f"({format_instant(self.end_at)}): the window [start_at, end_at) is empty"
            )
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int):
            raise AsanaAuditLogConfigError(
                f"page_size={self.page_size!r} must be an integer from 1 to {MAX_PAGE_SIZE}, not a "
                f"{type(self.page_size).__name__}"
            )
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise AsanaAuditLogConfigError(
                f"page_size={self.page_size!r} is out of range: Asana accepts 1 to {MAX_PAGE_SIZE}"
            )
        if self.actor_type is not None and self.actor_type not in ACTOR_TYPES:
            raise AsanaAuditLogConfigError(
                f"actor_type={self.actor_type!r} is not one of Asana's actor types: "
                f"{', '.join(sorted(ACTOR_TYPES))}"
            )
        if self.actor_type is not None and self.actor_gid is not None:
            # Asana's docs say actor_type should not be sent with actor_gid; what Asana then does is
            # undocumented, and an export whose filter Asana might ignore cannot be trusted.
            raise AsanaAuditLogConfigError(
                "actor_type and actor_gid cannot be combined: an actor gid already names one actor, and "
                "Asana's docs say not to send actor_type with it; pass only one of them"
            )
        for name in ("event_type", "actor_gid", "resource_gid"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise AsanaAuditLogConfigError(f"{name}={value!r} must be a non-empty string or None")
        for name in ("actor_gid", "resource_gid"):
            value = getattr(self, name)
            if value is not None and not (value.isascii() and value.isdigit()):
                raise AsanaAuditLogConfigError(
                    f"{name}={value!r} is not an Asana gid: pass the numeric gid as a string, "
                    "e.g. '1200000000000033'"
                )

    @classmethod
    def build(
        cls,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        filters: Mapping[str, str | None] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AuditLogQuery:
        """
        Make a query from a window and a mapping of Asana's filters; the one way callers build queries.

        :param filters: a subset of :data:`FILTER_NAMES`; ``None`` values mean no filter.
        :raises AsanaAuditLogConfigError: for an unknown filter name or any value the query refuses.
        """
        filters = dict(filters or {})
        unknown = sorted(set(filters) - set(FILTER_NAMES))
        if unknown:
            raise AsanaAuditLogConfigError(
                f"Unknown filter(s) {', '.join(unknown)}: use only {', '.join(FILTER_NAMES)}"
            )
        return cls(
            start_at=start_at,  # type: ignore[arg-type]  # parsed and validated in __post_init__
            end_at=end_at,  # type: ignore[arg-type]
            page_size=page_size,
            **filters,
        )

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes this query's filters, as Asana compares them (not the window)."""
        actor = event.get("actor") or {}
        resource = event.get("resource") or {}
        values = {
            "event_type": event.get("event_type"),
            "actor_type": actor.get("actor_type"),
            "actor_gid": actor.get("gid"),
            "resource_gid": resource.get("gid"),
        }
        return all(
            value is None or (values[name] is not None and str(values[name]) == str(value))
            for name, value in self.filters.items()
        )

    @property
    def filters(self) -> dict[str, str | None]:
        """Asana's four filters by name, ``None`` where unset."""
        return {name: getattr(self, name) for name in FILTER_NAMES}

    def params(self) -> dict[str, str]:
        """The query string Asana expects, without ``offset``."""
        params: dict[str, str] = {"limit": str(self.page_size)}
        if self.start_at is not None:
            params["start_at"] = format_instant(self.start_at)
        if self.end_at is not None:
            params["end_at"] = format_instant(self.end_at)
        for name in FILTER_NAMES:
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params


@dataclass(frozen=True)
class Page:
    """
    One response: its events, in Asana's order, and the offset of the page after it.

    ``next_offset`` is where to continue, or to poll later for new events; it is ``None`` only when
    nothing at all matches the query, and on every page of a read with ``concurrency`` above 1, since
    no single offset continues a read made of several cursors.
    """

    events: list[Event]
    next_offset: str | None

    @property
    def is_last(self) -> bool:
        """True when this page reached the end of the events captured so far."""
        return not self.events or self.next_offset is None


@dataclass
class StreamPosition:
    """
    Where a reader stands in the audit log's stream; :meth:`AsanaAuditLogClient.follow` moves it.

    :param query: the query that ``offset`` belongs to; its ``start_at`` moves forward when reading
        resumes by time after a rejected offset.
    :param offset: the next page's offset, or ``None`` to start at ``query``'s ``start_at``.
    :param last_created_at: the ``created_at`` of the last event read.
    :param gids_at_last: the gids read at ``last_created_at``, which are skipped if seen again.
    """

    query: AuditLogQuery
    offset: str | None = None
    last_created_at: str | None = None
    gids_at_last: set[str] = field(default_factory=set)
    #: True once ``offset`` came from a page read here; an offset passed in from elsewhere may stand
    #: after events this position never saw, so reading cannot resume by time if it is rejected.
    own_offset: bool = False

    @property
    def resumable(self) -> bool:
        """Whether a rejected offset can be replaced by resuming at :attr:`last_created_at`."""
        return self.last_created_at is not None or self.own_offset

    def admit(self, page: Page) -> list[Event]:
        """
        Advance past ``page``; return its events that were not read before, in order.

        Asana sorts events by ``created_at``, so only the events at the instant read last can have
        been read before: a page boundary inside a group of events sharing one ``created_at``, or a
        re-read after a rejected offset. Those are checked by gid; the rest of the page is new, and
        only the gids at its last instant are remembered for the next page.
        """
        events = page.events
        count, last, gids = len(events), self.last_created_at, self.gids_at_last
        fresh: list[Event] = []
        first_new = 0
        while first_new < count and events[first_new].get("created_at") == last:
            event = events[first_new]
            gid = str(event.get("gid"))
            if gid not in gids:
                gids.add(gid)
                fresh.append(event)
            first_new += 1
        if first_new < count:
            fresh = fresh + events[first_new:] if first_new else events
            self.last_created_at = last = events[-1].get("created_at")
            gids = set()
            index = count - 1
            while index >= first_new and events[index].get("created_at") == last:
                gids.add(str(events[index].get("gid")))
                index -= 1
            self.gids_at_last = gids
        if page.next_offset is not None:
            self.offset, self.own_offset = page.next_offset, True
        return fresh

    def resume_by_time(self) -> None:
        """Drop the offset; restart the query at the last event's ``created_at``, if any was read."""
        if self.last_created_at is not None:
            start_at = parse_instant(self.last_created_at, name="created_at")
            self.query = replace(self.query, start_at=start_at)
        self.offset = None


@dataclass(frozen=True)
class RetryPolicy:
    """
    How hard one request is retried after a transient failure.

    Transient are 429 (after at least ``Retry-After``), 500, 502, 503, 504, broken or refused
    connections, timeouts, and truncated or non-JSON bodies. Waits grow exponentially with jitter.

    :param max_attempts: requests at most, the first included.
    :param max_elapsed: seconds at most from the first attempt until a retry would start.
    :param backoff_base: the first wait in seconds, doubled on every further attempt.
    :param backoff_max: the longest single wait in seconds (``Retry-After`` may ask for more).
    """

    max_attempts: int = 8
    max_elapsed: float = 600.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise AsanaAuditLogConfigError(
                f"max_attempts={attempts!r} must be an integer of at least 1 (1: no retry)"
            )
        for name in ("max_elapsed", "backoff_base", "backoff_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise AsanaAuditLogConfigError(f"{name}={value!r} must be a number of seconds, 0 or more")

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based): exponential, with equal jitter."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class RateLimiter:
    """
    A thread-safe token bucket that spaces requests to at most ``requests_per_minute``.

    Share one limiter between every client that uses the same token (Asana's limits are per token):
    :meth:`for_token` returns the process-wide limiter of a token. After a 429 the client calls
    :meth:`pause`, so that no client sharing the limiter sends before ``Retry-After`` has passed.

    :param requests_per_minute: the sustained rate; bursts of up to ``burst`` requests are allowed.
        ``None``: no limit on the rate, only :meth:`pause` (what a concurrent read uses when the
        client has no limiter, so that a 429 still holds back every request of the read).
    :param burst: the bucket size; default one second's worth of requests, at least 1.
    """

    _registry: dict[tuple[str, float], RateLimiter] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_requests_per_minute(requests_per_minute)
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise AsanaAuditLogConfigError(
                f"burst={burst!r} must be an integer of at least 1, or None for one second's worth of "
                "requests"
            )
        self.rate = requests_per_minute / 60.0 if requests_per_minute is not None else None
        self.capacity = float(burst if burst is not None else max(1, int(self.rate or 1)))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_token(cls, token: str, requests_per_minute: float) -> RateLimiter:
        """The limiter shared by every client of this process that uses ``token`` at this rate."""
        key = (hashlib.sha256(token.encode()).hexdigest(), float(requests_per_minute))
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(requests_per_minute)
            return cls._registry[key]

    def acquire(self, *, cancel: threading.Event | None = None) -> bool:
        """
        Block until a request may be sent.

        :param cancel: stop waiting as soon as this is set.
        :return: True, or False if ``cancel`` was set first.
        """
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if self.rate is None:
                    if wait <= 0:
                        return True
                else:
                    self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                    self._updated = now
                    if wait <= 0:
                        if self._tokens >= 1:
                            self._tokens -= 1
                            return True
                        wait = (1 - self._tokens) / self.rate
            if cancel is None:
                self._sleep(wait)
            elif cancel.wait(wait):
                return False

    def pause(self, seconds: float) -> None:
        """Let no request through for ``seconds`` from now (called after a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def check_retry(retry: object) -> None:
    """Refuse a ``retry`` that is neither a :class:`RetryPolicy` nor ``None``."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise AsanaAuditLogConfigError(
            f"The retry policy {retry!r} must be a RetryPolicy, e.g. RetryPolicy(max_attempts=5), or "
            "None for the default"
        )


def check_requests_per_minute(requests_per_minute: object) -> None:
    """Refuse a ``requests_per_minute`` that is neither a positive number nor ``None``."""
    if requests_per_minute is not None and (
        isinstance(requests_per_minute, bool)
        or not isinstance(requests_per_minute, (int, float))
        or not requests_per_minute > 0
    ):
        raise AsanaAuditLogConfigError(
            f"requests_per_minute={requests_per_minute!r} must be a positive number, e.g. 1500 "
            "(Asana's limit on paid plans), or None for no cap"
        )


def check_base_url(base_url: str) -> str:
    """
    Return ``base_url`` without a trailing slash if the token may be sent there.

    :raises AsanaAuditLogConfigError: for anything but ``https://``, or ``http://`` to a loopback
        address, and for a host name or port that no request could be sent to.
    """
    parts = urlsplit(base_url.strip())
    if "@" in parts.netloc or "@" in base_url.split("?", 1)[0]:
        # Never repeat the URL here: what stands before the "@" may be the token itself.
        raise AsanaAuditLogConfigError(
            "The API base URL must not contain a user name or password: put the token in the "
            f"connection's password, and the URL alone in its host, e.g. {DEFAULT_BASE_URL!r}"
        )
    try:
        parts.port  # noqa: B018 -- a port that is not a number raises ValueError here
        requests.Request("GET", base_url.strip()).prepare()  # what requests would refuse later
        well_formed = bool(parts.hostname)
    except (ValueError, requests.exceptions.RequestException):
        well_formed = False
    if parts.scheme not in ("https", "http") or not well_formed or parts.hostname is None:
        raise AsanaAuditLogConfigError(
            f"The API base URL {base_url!r} is not a full URL; use e.g. {DEFAULT_BASE_URL!r}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise AsanaAuditLogConfigError(
            f"Refusing to send the token over plain http to {parts.hostname}: use an https:// URL "
            "(plain http is allowed for loopback addresses only)"
        )
    return base_url.strip().rstrip("/")


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclass
class _Progress:
    """
    Logs pages, events and rate at most every ``interval`` seconds, then a summary.

    One per read: the workers of a concurrent read all add to the same one (hence the lock), so the
    log shows one line for the whole read rather than one per slice.
    """

    log: Logger
    interval: float
    pages: int = 0
    events: int = 0
    started: float = field(default_factory=time.monotonic)
    last_report: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, page_events: int) -> None:
        with self._lock:
            self.pages += 1
            self.events += page_events
            now = time.monotonic()
            if now - self.last_report < self.interval:
                return
            self.last_report = now
            self.log.info(
                "Asana audit log: %d events in %d pages so far (%.0f events/s)",
                self.events,
                self.pages,
                self.events / max(now - self.started, 1e-9),
            )

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        self.log.info(
            "Asana audit log: read %d events in %d pages in %.1f s (%.0f events/s)",
            self.events,
            self.pages,
            elapsed,
            self.events / max(elapsed, 1e-9),
        )


class AsanaAuditLogClient:
    """
    Reads one workspace's audit log.

    :param token: the service account token. It is sent only in the ``Authorization`` header, and
        only over https or to a loopback address; it is kept in no attribute.
    :param workspace_gid: the workspace or organisation gid.
    :param base_url: the API base URL, default ``https://app.asana.com/api/1.0``.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for a response.
    :param retry: how transient failures are retried.
    :param rate_limiter: a limiter shared with the other clients of the same token, if any.
    :param logger: where progress and retries are logged.
    :param progress_interval: seconds between progress lines while paginating.
    :param session: a ``requests.Session`` to use; one is made if not given. The worker threads of a
        concurrent read each get a new session with the same headers, proxies and TLS settings
        (adapters mounted on this one are not copied).
    :param spill_dir: where a concurrent read may keep pages that arrive before their turn, in a
        temporary directory it removes when the read ends; the system's temporary directory if
        ``None``.

    The proxy and CA bundle environment variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) are honoured as ``requests`` honours
    them, but read once, when the client is made, rather than on every request.
    """

    def __init__(
        self,
        *,
        token: str,
        workspace_gid: str,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        logger: Logger | None = None,
        progress_interval: float = 5.0,
        session: requests.Session | None = None,
        spill_dir: str | None = None,
    ) -> None:
        if not token or not token.strip():
            raise AsanaAuditLogConfigError(
                "No Asana token: put the service account token in the connection's password"
            )
        workspace_gid = str(workspace_gid or "").strip()
        if not workspace_gid.isdigit():
            raise AsanaAuditLogConfigError(
                f"workspace_gid={workspace_gid!r} is not an Asana gid: set the extra 'workspace_gid' "
                "to the numeric gid of the workspace or organisation"
            )
        for name, seconds in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
                raise AsanaAuditLogConfigError(f"{name}={seconds!r} must be a positive number of seconds")
        check_retry(retry)
        if spill_dir is not None and not os.path.isdir(spill_dir):
            raise AsanaAuditLogConfigError(
                f"spill_dir={spill_dir!r} is not a directory: pass an existing directory, or None for the "
                "system's temporary directory"
            )
        self.base_url = check_base_url(base_url)
        self.workspace_gid = workspace_gid
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.log: Logger = logger or logging.getLogger(__name__)
        self.progress_interval = progress_interval
        self.spill_dir = spill_dir
        self.events_url = f"{self.base_url}/workspaces/{quote(workspace_gid)}/audit_log_events"
        self._session = session or requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token.strip()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        _pin_environment(self._session, self.events_url)
        self._transport = _Transport(self._session, self.events_url, self.timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, workspace_gid={self.workspace_gid!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> AsanaAuditLogClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_page(self, query: AuditLogQuery, offset: str | None = None) -> Page:
        """
        Fetch one page: the first of ``query``, or the one at ``offset``. Transient failures are retried.

        :raises AsanaAuditLogInvalidOffsetError: if Asana rejects ``offset`` (expired, or not issued
            for this query).
        """
        return self._fetch_page(query, offset, transport=self._transport, limiter=self.rate_limiter)

    def iter_pages(
        self, query: AuditLogQuery, *, offset: str | None = None, concurrency: int = 1
    ) -> Generator[Page, None, None]:
        """
        Yield the pages of ``query`` up to the end of the events captured so far, then stop.

        Every event is yielded once; see :meth:`follow`, which this starts at the window's start, or at
        ``offset``.

        With ``concurrency`` above 1, that many requests run at a time, each reading a time slice of
        the window through its own cursor (see :mod:`airflow_provider_asana_audit.slices`); the
        events come out exactly as with ``concurrency=1``: the same events, in the same order. The
        pages differ: they hold only events, each page's :attr:`Page.next_offset` is ``None`` (no
        single offset continues such a read), and no empty last page is yielded. Close the iterator
        (or exhaust it) to stop the worker threads: ``contextlib.closing`` does it when the consumer
        raises.

        :param query: what to read.
        :param offset: continue from this offset (a previous page's ``next_offset`` for the same
            query) instead of from the start of the window; only with ``concurrency=1``.
        :param concurrency: requests at a time, 1 to :data:`MAX_CONCURRENCY`. Above 1, the query
            needs both ``start_at`` and ``end_at``: the slices are cut from that window.
        :raises AsanaAuditLogConfigError: at once, for a ``concurrency`` out of range, or above 1 with
            an ``offset`` or an open window.
        :raises AsanaAuditLogInvalidOffsetError: if the given ``offset`` is rejected before any event
            was read, so there is nothing to resume from.
        """
        if check_concurrency(concurrency) == 1:
            return self.follow(StreamPosition(query=query, offset=offset))
        if offset is not None:
            raise AsanaAuditLogConfigError(
                f"concurrency={concurrency} cannot continue from an offset: an offset is one cursor's "
                "position, and a concurrent read is made of several; use concurrency=1 to continue "
                "from an offset"
            )
        if query.start_at is None or query.end_at is None:
            raise AsanaAuditLogConfigError(
                f"concurrency={concurrency} needs both start_at and end_at: the window is cut into "
                "time slices read side by side; pass a closed window or use concurrency=1"
            )
        return self._iter_sliced(query, concurrency, query.start_at, query.end_at)

    def follow(self, position: StreamPosition) -> Generator[Page, None, None]:
        """
        Yield pages from ``position`` up to the end of the events captured so far, moving it along.

        Call it again with the same position later to read the events captured since: this is how
        the stream is polled. Every event is yielded once: an event repeated at a page boundary is
        dropped, and when Asana rejects an offset part-way (it expired), reading resumes with
        ``start_at`` at the last event's ``created_at`` and skips the events already yielded at that
        instant. Memory stays flat: only the gids of the latest instant are remembered.

        :raises AsanaAuditLogInvalidOffsetError: if an offset is rejected and no event was read yet
            (nothing to resume from), or rejected again and again with no progress.
        """
        progress = _Progress(self.log, self.progress_interval)
        yield from self._follow(position, self.get_page, progress)
        progress.finish()

    def iter_events(self, query: AuditLogQuery, *, concurrency: int = 1) -> Generator[Event, None, None]:
        """
        Yield every event of ``query``, once each, in Asana's order; stop at the end of the events.

        :param concurrency: requests at a time; see :meth:`iter_pages`.
        """
        pages = self.iter_pages(query, concurrency=concurrency)
        try:
            for page in pages:
                yield from page.events
        finally:
            # Closing this generator closes the read at once, stopping the threads of a concurrent read.
            pages.close()

    def _follow(
        self,
        position: StreamPosition,
        fetch: Callable[[AuditLogQuery, str | None], Page],
        progress: _Progress | None,
    ) -> Generator[Page, None, None]:
        """The one pagination loop (see :meth:`follow`): pages from ``fetch``, reported to ``progress``."""
        recoveries = 0
        while True:
            try:
                page = fetch(position.query, position.offset)
            except AsanaAuditLogInvalidOffsetError:
                if not position.resumable or recoveries >= _MAX_OFFSET_RECOVERIES:
                    raise
                recoveries += 1
                self.log.warning(
                    "Asana rejected the pagination offset (expired?); resuming at created_at %s, "
                    "skipping the %d events already read at that instant",
                    position.last_created_at or format_instant(position.query.start_at or _EPOCH),
                    len(position.gids_at_last),
                )
                position.resume_by_time()
                continue
            fresh = position.admit(page)
            if fresh:
                recoveries = 0
            if progress is not None:
                progress.add(len(fresh))
            yield Page(events=fresh, next_offset=position.offset)
            if page.is_last:
                return

    def _iter_sliced(
        self, query: AuditLogQuery, concurrency: int, start: datetime, end: datetime
    ) -> Generator[Page, None, None]:
        """The pages of a concurrent read of ``[start, end)``, in window order; see :meth:`iter_pages`."""
        progress = _Progress(self.log, self.progress_interval)
        # A 429 must hold back every request of the read, also when the client has no limiter.
        limiter = self.rate_limiter or RateLimiter(None)
        self.log.info(
            "Reading Asana audit events of [%s, %s) with %d concurrent requests",
            format_instant(start),
            format_instant(end),
            concurrency,
        )
        reader = SlicedReader(
            start=start,
            end=end,
            concurrency=concurrency,
            page_size=query.page_size,
            make_worker=lambda cancel: _SliceWorker(self, query, limiter, cancel),
            on_page=progress.add,
            spill_dir=self.spill_dir,
        )
        pages = reader.pages()
        try:
            for events in pages:
                yield Page(events=events, next_offset=None)
        finally:
            pages.close()
        progress.finish()

    def _new_session(self) -> requests.Session:
        """A session set up like the client's own (headers, proxies, TLS), for one worker thread."""
        source = self._session
        session = requests.Session()
        session.headers.clear()
        session.headers.update(source.headers)
        session.proxies = dict(source.proxies)
        session.verify = source.verify
        session.cert = source.cert
        session.auth = source.auth
        session.trust_env = source.trust_env
        return session

    def _fetch_page(
        self,
        query: AuditLogQuery,
        offset: str | None,
        *,
        transport: _Transport,
        limiter: RateLimiter | None,
        cancel: threading.Event | None = None,
    ) -> Page:
        url = transport.url(query, offset)
        body = self._get_json(url, transport=transport, limiter=limiter, cancel=cancel)
        data = body["data"]
        next_page = body.get("next_page")
        next_offset = next_page.get("offset") if isinstance(next_page, dict) else None
        return Page(events=data, next_offset=next_offset or None)

    def _get_json(
        self,
        url: str,
        *,
        transport: _Transport,
        limiter: RateLimiter | None,
        cancel: threading.Event | None,
    ) -> dict[str, Any]:
        """
        One GET of the events URL, retried under :attr:`retry`; returns the decoded body.

        :param cancel: set when a concurrent read stops: waits end at once with :class:`ReadCancelled`.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None and not limiter.acquire(cancel=cancel):
                raise ReadCancelled
            retry_after: float | None = None
            foreign = False  # the last failure was a response that did not come from Asana's API
            try:
                response, content = transport.get(url)
            except _TRANSIENT_ERRORS as err:
                # Refused and dropped connections, timeouts and truncated bodies. requests' own text
                # can be long (it repeats the URL, never the headers), so it is cut to 200 characters.
                problem = f"{type(err).__name__} ({_short(err)})"
            else:
                if response.status_code == 200:
                    body = _decode(content)
                    if body is not None:
                        return body
                    problem = f"a response that is not Asana's JSON ({_content_type(response)})"
                    foreign = True
                elif response.status_code in _RETRYABLE_STATUSES:
                    problem = f"HTTP {response.status_code}"
                    retry_after = _retry_after(response)
                    if not _is_asana_error(content):
                        problem += f" ({_content_type(response)}, not Asana's JSON error)"
                        foreign = True
                else:
                    raise _permanent_error(response, content)
            elapsed = time.monotonic() - started
            wait = max(self.retry.backoff(attempt), retry_after or 0.0)
            if attempt >= self.retry.max_attempts or elapsed + wait > self.retry.max_elapsed:
                raise AsanaAuditLogRetriesExhaustedError(
                    f"Asana request failed {attempt} times in {elapsed:.0f} s; last failure: {problem}"
                    + (f" (Retry-After: {retry_after:g} s)" if retry_after is not None else "")
                    + ". Raise the retry limits or try again later."
                    + (_NOT_FROM_ASANA if foreign else "")
                )
            if retry_after is not None and limiter is not None:
                limiter.pause(wait)
            self.log.warning(
                "Asana request failed with %s (attempt %d of %d); retrying in %.1f s",
                problem,
                attempt,
                self.retry.max_attempts,
                wait,
            )
            if cancel is None:
                time.sleep(wait)
            elif cancel.wait(wait):
                raise ReadCancelled


class _SliceWorker:
    """
    What one worker thread of a concurrent read reads with (a :class:`~.slices.SliceWorker`).

    ``requests.Session`` is not thread-safe, so each worker has its own, set up like the client's; the
    rate limiter is shared by all, so a 429 holds every one of them back.
    """

    def __init__(
        self,
        client: AsanaAuditLogClient,
        query: AuditLogQuery,
        limiter: RateLimiter,
        cancel: threading.Event,
    ) -> None:
        self._client = client
        self._query = query
        self._session = client._new_session()
        self._fetch = functools.partial(
            client._fetch_page,
            transport=_Transport(self._session, client.events_url, client.timeout),
            limiter=limiter,
            cancel=cancel,
        )

    def read(self, start: datetime, end: datetime) -> Generator[list[Event], None, None]:
        """The events of the slice ``[start, end)`` of the read's query, page by page."""
        position = StreamPosition(query=replace(self._query, start_at=start, end_at=end))
        for page in self._client._follow(position, self._fetch, None):
            yield page.events

    def close(self) -> None:
        self._session.close()


class _Transport:
    """
    Sends the events GET on one session, from a request prepared once, and reads the whole body.

    ``Session.get`` prepares every request from scratch (merging headers, cookies, hooks, encoding
    the URL): about a third of the client's CPU time per page. Only the query string changes from
    one page to the next, so the request is prepared once, with the session's headers, auth and
    hooks, and copied with a new URL for each page; the URL is what ``requests`` would have built
    from the same parameters. It goes straight to the session's transport adapter, with the
    session's (pinned) proxies and TLS settings, and its response hooks are run: what
    ``Session.send`` adds besides is cookie handling, and Asana's API uses no cookies.

    ``Response.content`` reads the body in 10 KiB chunks; a page is about 60 KiB, and reading it in
    one piece is cheaper. Read errors are the ones ``Response.content`` raises.
    """

    def __init__(self, session: requests.Session, url: str, timeout: tuple[float, float]) -> None:
        self.session = session
        self._url = url
        self._timeout = timeout
        self._template = session.prepare_request(requests.Request("GET", url))
        self._encoded: tuple[AuditLogQuery, str] | None = None

    def url(self, query: AuditLogQuery, offset: str | None) -> str:
        """The URL of a page of ``query``: its parameters, then ``offset``, encoded as requests would."""
        encoded = self._encoded  # one reference, read and replaced whole: safe across threads
        if encoded is None or encoded[0] is not query:  # one query object serves a cursor's pages
            encoded = self._encoded = (query, urlencode(query.params()))
        if offset is None:
            return f"{self._url}?{encoded[1]}"
        return f"{self._url}?{encoded[1]}&{urlencode({'offset': offset})}"

    def get(self, url: str) -> tuple[requests.Response, bytes]:
        """GET ``url`` (no redirect is followed); return the response and its body."""
        # A copy of the template, without PreparedRequest.copy()'s copy of an empty cookie jar.
        template, prepared = self._template, requests.PreparedRequest()
        prepared.method, prepared.url = template.method, url
        prepared.headers, prepared.hooks = template.headers.copy(), template.hooks
        session = self.session
        response = session.get_adapter(url).send(
            prepared,
            stream=True,
            timeout=self._timeout,
            verify=True if session.verify is None else session.verify,
            cert=session.cert,
            proxies=session.proxies,
        )
        if prepared.hooks["response"]:
            response = dispatch_hook("response", prepared.hooks, response)  # type: ignore[no-untyped-call]
        # Closed on the way out: the connection goes back to the pool once the body is read, and is
        # dropped if reading it failed.
        with response:
            return response, b"".join(response.iter_content(chunk_size=None))


def _pin_environment(session: requests.Session, url: str) -> None:
    """
    Resolve once what ``requests`` would take from the environment for requests to ``url``.

    With ``trust_env``, ``requests`` looks up the proxy variables (and ``NO_PROXY``), the CA bundle
    variables and ``~/.netrc`` again on every request: about a fifth of the client's CPU time per
    page. The proxies and the CA bundle are resolved here by ``requests``' own
    ``merge_environment_settings`` for this URL (one host, so the answer is the same for every
    request) and set on the session, which then stops looking. A ``~/.netrc`` entry is no longer
    consulted: it would have replaced the bearer token with a Basic login anyway.
    """
    if not session.trust_env:
        return
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies = settings["proxies"]
    session.verify = settings["verify"]
    session.cert = settings["cert"]
    session.trust_env = False


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 200 else text[:200] + "..."


def _decode(content: bytes) -> dict[str, Any] | None:
    """The JSON body if it has Asana's shape (a ``data`` list), else None."""
    try:
        body = decode_json(content)
    except ValueError:
        # What the fast decoder refuses (a byte-order mark, UTF-16, NaN, a lone surrogate) is
        # decoded by the standard one, so that the result never depends on which decoder ran.
        try:
            body = json.loads(content)
        except ValueError:
            return None
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return body
    return None


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _asana_message(response: requests.Response, content: bytes) -> str:
    """Asana's own error message from the ``errors`` envelope, or a short description of the body."""
    try:
        errors = json.loads(content).get("errors") or []
        messages = [str(error.get("message")) for error in errors if error.get("message")]
        if messages:
            return "; ".join(messages)
    except (ValueError, AttributeError):
        pass
    return response.reason or "no error message"


def _content_type(response: requests.Response) -> str:
    """The response's media type, e.g. ``text/html``, for messages."""
    return response.headers.get("Content-Type", "").split(";")[0].strip()[:60] or "no Content-Type"


def _is_asana_error(content: bytes) -> bool:
    """Whether a body is Asana's error envelope, ``{"errors": [...]}``."""
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("errors"), list)


def _permanent_error(response: requests.Response, content: bytes) -> AsanaAuditLogAPIError:
    status = response.status_code
    message = _asana_message(response, content)
    hint = _HINTS.get(status, "")
    if 300 <= status < 400:
        return AsanaAuditLogPermanentAPIError(
            status, f"redirect to {response.headers.get('Location', '?')}", "Check the API base URL."
        )
    if not _is_asana_error(content):
        return AsanaAuditLogPermanentAPIError(
            status,
            f"{response.reason or 'no reason given'} ({_content_type(response)})",
            "Something between Airflow and Asana answered instead of Asana's API: check the API base URL "
            "in the connection's host and any proxy (HTTPS_PROXY, NO_PROXY); Asana did not see the token",
            origin="A server other than Asana's API",
        )
    if status in (401, 402, 403):
        return AsanaAuditLogAuthError(status, message, hint)
    if status == 404:
        return AsanaAuditLogNotFoundError(status, message, hint)
    if status == 400 and "offset" in message.lower():
        return AsanaAuditLogInvalidOffsetError(
            status, message, "The pagination offset expired or belongs to another query."
        )
    if status == 400:
        return AsanaAuditLogBadRequestError(status, message, hint)
    return AsanaAuditLogPermanentAPIError(status, message, hint)
