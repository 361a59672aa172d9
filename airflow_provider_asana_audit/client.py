"""
A plain HTTP client for Asana's audit log endpoint.

It owns everything about talking to Asana: the session and its auth header, timeouts, retries that
honour ``Retry-After``, the optional shared rate limiter, pagination under the stream contract, and
recovery from a dead offset. It needs no Airflow connection or context, so it can be used and tested
on its own; :class:`~airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook` builds one from a
connection, and the operator, sensor and trigger all read through it.

The stream contract (see FIELD-NOTES): once anything matches a query, Asana sends ``next_page`` on
every response, also after the last event, so that the offset can be polled for events captured
later. A client that follows ``next_page`` until it is null never stops. :meth:`iter_pages` stops at
the first empty page instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests

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
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

DEFAULT_BASE_URL = "https://app.asana.com/api/1.0"
#: Asana's ``actor_type`` values. ``event_type`` is deliberately not checked: Asana keeps adding types.
ACTOR_TYPES = frozenset({"user", "asana", "asana_support", "anonymous", "external_administrator"})
#: The names of Asana's four filters, as query parameters and as keyword arguments everywhere.
FILTER_NAMES = ("event_type", "actor_type", "actor_gid", "resource_gid")
MAX_PAGE_SIZE = 100
USER_AGENT = f"airflow-provider-asana-audit/{__version__} python-requests/{requests.__version__}"

Event = dict[str, Any]


class Logger(Protocol):
    """What the client needs of a logger: a stdlib ``logging.Logger`` or Airflow's task logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


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
        "The audit log API needs a service account token of an Enterprise or Enterprise+ organisation; "
        "a personal access token or a lower plan is refused."
    ),
    403: (
        "The token may not read this audit log: use a service account token of the organisation that "
        "owns the workspace (Enterprise or Enterprise+ plan)."
    ),
    404: "Check the workspace_gid in the connection's extra and the API base URL in its host.",
    451: "Asana refuses this request for legal reasons; contact Asana support.",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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
        if (
            isinstance(self.page_size, bool)
            or not isinstance(self.page_size, int)
            or not 1 <= self.page_size <= MAX_PAGE_SIZE
        ):
            raise AsanaAuditLogConfigError(
                f"page_size={self.page_size!r} is out of range: Asana accepts 1 to {MAX_PAGE_SIZE}"
            )
        if self.actor_type is not None and self.actor_type not in ACTOR_TYPES:
            raise AsanaAuditLogConfigError(
                f"actor_type={self.actor_type!r} is not one of Asana's actor types: "
                f"{', '.join(sorted(ACTOR_TYPES))}"
            )
        if self.actor_type is not None and self.actor_gid is not None:
            raise AsanaAuditLogConfigError(
                "actor_type and actor_gid cannot be combined: Asana rejects the pair; pass one of them"
            )
        for name in ("event_type", "actor_gid", "resource_gid"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise AsanaAuditLogConfigError(f"{name}={value!r} must be a non-empty string or None")

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
    nothing at all matches the query.
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
        """Advance past ``page``; return its events that were not read before, in order."""
        fresh: list[Event] = []
        for event in page.events:
            created_at, gid = event.get("created_at"), str(event.get("gid"))
            if created_at == self.last_created_at:
                if gid in self.gids_at_last:
                    continue
            else:
                self.last_created_at, self.gids_at_last = created_at, set()
            self.gids_at_last.add(gid)
            fresh.append(event)
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
        if self.max_attempts < 1:
            raise AsanaAuditLogConfigError(f"max_attempts={self.max_attempts} must be at least 1")
        if self.max_elapsed < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise AsanaAuditLogConfigError("retry times must not be negative")

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
    :param burst: the bucket size; default one second's worth of requests, at least 1.
    """

    _registry: dict[tuple[str, float], RateLimiter] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        requests_per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise AsanaAuditLogConfigError(f"requests_per_minute={requests_per_minute} must be positive")
        self.rate = requests_per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, int(self.rate)))
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

    def acquire(self) -> None:
        """Block until a request may be sent."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                wait = self._paused_until - now
                if wait <= 0:
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    wait = (1 - self._tokens) / self.rate
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Let no request through for ``seconds`` from now (called after a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def check_base_url(base_url: str) -> str:
    """
    Return ``base_url`` without a trailing slash if the token may be sent there.

    :raises AsanaAuditLogConfigError: for anything but ``https://``, or ``http://`` to a loopback address.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
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
    """Logs pages, events and rate at most every ``interval`` seconds, then a summary."""

    log: Logger
    interval: float
    pages: int = 0
    events: int = 0
    started: float = field(default_factory=time.monotonic)
    last_report: float = field(default_factory=time.monotonic)

    def add(self, page_events: int) -> None:
        self.pages += 1
        self.events += page_events
        now = time.monotonic()
        if now - self.last_report >= self.interval:
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
    :param session: a ``requests.Session`` to use; one is made if not given.
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
        self.base_url = check_base_url(base_url)
        self.workspace_gid = workspace_gid
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.log: Logger = logger or logging.getLogger(__name__)
        self.progress_interval = progress_interval
        self._session = session or requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token.strip()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        self.events_url = f"{self.base_url}/workspaces/{quote(workspace_gid)}/audit_log_events"

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
        params = query.params()
        if offset is not None:
            params["offset"] = offset
        body = self._get_json(params)
        data = body["data"]
        next_page = body.get("next_page")
        next_offset = next_page.get("offset") if isinstance(next_page, dict) else None
        return Page(events=data, next_offset=next_offset or None)

    def iter_pages(self, query: AuditLogQuery, *, offset: str | None = None) -> Iterator[Page]:
        """
        Yield the pages of ``query`` up to the end of the events captured so far, then stop.

        Every event is yielded once; see :meth:`follow`, which this starts at the window's start, or at
        ``offset``.

        :param query: what to read.
        :param offset: continue from this offset (a previous page's ``next_offset`` for the same
            query) instead of from the start of the window.
        :raises AsanaAuditLogInvalidOffsetError: if the given ``offset`` is rejected before any event
            was read, so there is nothing to resume from.
        """
        return self.follow(StreamPosition(query=query, offset=offset))

    def follow(self, position: StreamPosition) -> Iterator[Page]:
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
        recoveries = 0
        while True:
            try:
                page = self.get_page(position.query, position.offset)
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
            progress.add(len(fresh))
            yield Page(events=fresh, next_offset=position.offset)
            if page.is_last:
                progress.finish()
                return

    def iter_events(self, query: AuditLogQuery) -> Iterator[Event]:
        """Yield every event of ``query``, once each, in Asana's order; stop at the end of the events."""
        for page in self.iter_pages(query):
            yield from page.events

    def _get_json(self, params: dict[str, str]) -> dict[str, Any]:
        """One GET of the events URL, retried under :attr:`retry`; returns the decoded body."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if self.rate_limiter is not None:
                self.rate_limiter.acquire()
            retry_after: float | None = None
            try:
                response = self._session.get(
                    self.events_url, params=params, timeout=self.timeout, allow_redirects=False
                )
            except _TRANSIENT_ERRORS as err:
                # Covers refused and dropped connections, timeouts and truncated bodies. The message
                # names the exception class only: requests' own text can be long and holds the URL.
                problem = f"{type(err).__name__} ({_short(err)})"
            else:
                if response.status_code == 200:
                    body = _decode(response)
                    if body is not None:
                        return body
                    problem = "a response body that is not Asana's JSON"
                elif response.status_code in _RETRYABLE_STATUSES:
                    problem = f"HTTP {response.status_code}"
                    retry_after = _retry_after(response)
                else:
                    raise _permanent_error(response)
            elapsed = time.monotonic() - started
            wait = max(self.retry.backoff(attempt), retry_after or 0.0)
            if attempt >= self.retry.max_attempts or elapsed + wait > self.retry.max_elapsed:
                raise AsanaAuditLogRetriesExhaustedError(
                    f"Asana request failed {attempt} times in {elapsed:.0f} s; last failure: {problem}"
                    + (f" (Retry-After: {retry_after:g} s)" if retry_after is not None else "")
                    + ". Raise the retry limits or try again later."
                )
            if retry_after is not None and self.rate_limiter is not None:
                self.rate_limiter.pause(wait)
            self.log.warning(
                "Asana request failed with %s (attempt %d of %d); retrying in %.1f s",
                problem,
                attempt,
                self.retry.max_attempts,
                wait,
            )
            time.sleep(wait)


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 200 else text[:200] + "..."


def _decode(response: requests.Response) -> dict[str, Any] | None:
    """The JSON body if it has Asana's shape (a ``data`` list), else None."""
    try:
        body = response.json()
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


def _asana_message(response: requests.Response) -> str:
    """Asana's own error message from the ``errors`` envelope, or a short description of the body."""
    try:
        errors = response.json().get("errors") or []
        messages = [str(error.get("message")) for error in errors if error.get("message")]
        if messages:
            return "; ".join(messages)
    except (ValueError, AttributeError):
        pass
    return response.reason or "no error message"


def _permanent_error(response: requests.Response) -> AsanaAuditLogAPIError:
    status = response.status_code
    message = _asana_message(response)
    hint = _HINTS.get(status, "")
    if 300 <= status < 400:
        return AsanaAuditLogPermanentAPIError(
            status, f"redirect to {response.headers.get('Location', '?')}", "Check the API base URL."
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
