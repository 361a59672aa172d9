"""
The plain client of Asana's audit log: the read loop, with no Airflow connection or context.

:class:`AsanaAuditLogClient` pages through a query under the stream contract (see
:class:`~airflow_provider_asana_audit.query.StreamPosition`), recovers from a dead offset, and
reports progress; one GET and its retries are the transport's
(:mod:`airflow_provider_asana_audit.transport`), the concurrent read of one window is
:mod:`airflow_provider_asana_audit.slices`'. The hook builds a client from a connection.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import quote

import requests

from airflow_provider_asana_audit.budget import (
    ASANA_MAX_IN_FLIGHT,
    ASANA_REQUESTS_PER_MINUTE,
    BudgetGauge,
    BudgetUsage,
    RateLimiter,
    RequestBudget,
    RetryPolicy,
    check_retry,
    token_key,
)
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogInvalidOffsetError
from airflow_provider_asana_audit.query import AuditLogQuery, Event, Page, StreamPosition
from airflow_provider_asana_audit.rules import check_number
from airflow_provider_asana_audit.slices import SlicedReader, check_concurrency
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.transport import (
    DEFAULT_BASE_URL,
    Transport,
    check_base_url,
    copy_session,
    open_session,
)
from airflow_provider_asana_audit.utils import Logger

__all__ = [
    "AsanaAuditLogClient",
    "AuditLogQuery",
    "Page",
    "RateLimiter",
    "RetryPolicy",
    "StreamPosition",
]

#: How many times in a row an offset may be rejected with no event read in between before giving up.
_MAX_OFFSET_RECOVERIES = 3


@dataclass
class _Progress:
    """
    Logs events, pages, rate, how far through the window and the time left, at most every
    ``interval`` seconds; then a summary with what the token's budget cost (429s, retries, waits).

    One per read: the workers of a concurrent read all add to the same one (hence the lock), so the
    log shows one line for the whole read rather than one per slice.
    """

    log: Logger
    interval: float
    budget: RequestBudget
    query: AuditLogQuery
    pages: int = 0
    events: int = 0
    reached: str | None = None  # the created_at of the last event read in window order
    reader: SlicedReader | None = None  # a concurrent read's slices, which tell how far it is
    started: float = field(default_factory=time.monotonic)
    last_report: float = field(default_factory=time.monotonic)
    _before: BudgetUsage = field(default_factory=BudgetUsage)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._before = self.budget.usage()

    def reach(self, events: list[Event]) -> None:
        """The read has every event up to the last of ``events`` (in window order)."""
        if events:
            created_at = events[-1].get("created_at")
            self.reached = created_at if isinstance(created_at, str) else self.reached

    def add(self, page_events: int) -> None:
        with self._lock:
            self.pages += 1
            self.events += page_events
            now = time.monotonic()
            if now - self.last_report < self.interval:
                return
            self.last_report = now
            self.log.info(
                "Asana audit log: %d events in %d pages so far (%.0f events/s)%s",
                self.events,
                self.pages,
                self.events / max(now - self.started, 1e-9),
                self._position(now),
            )

    def _position(self, now: float) -> str:
        """How far through the window the read is, and the time left at this pace ("" if unknown)."""
        if self.reader is not None:
            done, finished, made = self.reader.progress()
            where = f"{finished} of {made} slices done"
        else:
            start, end, reached = self.query.start_at, self.query.end_at, self.reached
            if start is None or end is None or reached is None:
                return ""
            try:
                done = (parse_instant(reached) - start) / (end - start)
            except ValueError:  # not Asana's format: say nothing rather than fail the read
                return ""
            done = min(max(done, 0.0), 1.0)
            where = f"up to {reached}"
        if done <= 0:
            return f"; {where}"
        left = (now - self.started) * (1 - done) / done
        return f"; {where}, {done:.0%} of the window, about {left:.0f} s left"

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        cost = self.budget.usage() - self._before
        self.log.info(
            "Asana audit log: read %d events in %d pages in %.1f s (%.0f events/s); %d requests, %d "
            "refused by the rate limit (429), %d retried after other failures, %.1f s waited for the "
            "token's budget",
            self.events,
            self.pages,
            elapsed,
            self.events / max(elapsed, 1e-9),
            cost.requests,
            cost.refused,
            cost.failed,
            cost.waited,
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
    :param rate_limiter: the token's request budget; default the limiter every client of this process
        shares for the same token, at Asana's limits (1,500 requests a minute, 50 in flight), which
        starts slowly and adapts to Asana's 429s.
    :param logger: where progress and retries are logged.
    :param progress_interval: seconds between progress lines while paginating.
    :param session: a ``requests.Session`` to use; one is made if not given. The worker threads of a
        concurrent read each get a new session with the same headers, proxies and TLS settings
        (adapters mounted on this one are not copied).
    :param spill_dir: where a concurrent read may keep pages that arrive before their turn, in a
        temporary directory it removes when the read ends; the system's temporary directory if
        ``None``.

    .. seealso::
        docs/hooks.md#the-plain-client
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
        rate_limiter: RequestBudget | None = None,
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
            check_number(seconds, name=name, positive=True, unit="seconds")
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
        # Asana's limits are the token's: without a limiter of its own, the client shares the
        # process's limiter of the token, so that every read of the token slows down on a 429.
        self.rate_limiter = rate_limiter or RateLimiter.for_token(
            token, ASANA_REQUESTS_PER_MINUTE, max_in_flight=ASANA_MAX_IN_FLIGHT
        )
        #: The token's name in logs and XCom: a prefix of its SHA-256, never the token.
        self.token_key = token_key(token)
        self.log: Logger = logger or logging.getLogger(__name__)
        self.progress_interval = progress_interval
        self.spill_dir = spill_dir
        self.events_url = f"{self.base_url}/workspaces/{quote(workspace_gid)}/audit_log_events"
        self._session = open_session(token, self.events_url, session)
        self._transport = Transport(self._session, self.events_url, self.timeout)

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
        return self._transport.fetch_page(
            query, offset, retry=self.retry, budget=self.rate_limiter, log=self.log
        )

    def iter_pages(
        self, query: AuditLogQuery, *, offset: str | None = None, concurrency: int = 1
    ) -> Generator[Page, None, None]:
        """
        Yield the pages of ``query`` up to the end of the events captured so far, then stop.

        Every event is yielded once; see :meth:`follow`, which this starts at the window's start, or at
        ``offset``. With ``concurrency`` above 1 the same events come out in the same order, but pages
        carry no ``next_offset``; close the iterator (or exhaust it) to stop the worker threads.

        :param query: what to read.
        :param offset: continue from this offset (a previous page's ``next_offset`` for the same
            query) instead of from the start of the window; only with ``concurrency=1``.
        :param concurrency: requests at a time, 1 to 32. Above 1, the query
            needs both ``start_at`` and ``end_at``: the slices are cut from that window.
        :raises AsanaAuditLogConfigError: at once, for a ``concurrency`` out of range, or above 1 with
            an ``offset`` or an open window.
        :raises AsanaAuditLogInvalidOffsetError: if the given ``offset`` is rejected before any event
            was read, so there is nothing to resume from.

        .. seealso::
            docs/hooks.md#iter_pages, and docs/performance.md for ``concurrency``
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
        progress = _Progress(self.log, self.progress_interval, self.rate_limiter, position.query)
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
                    position.resume_point,
                    len(position.gids_at_last),
                )
                position.resume_by_time()
                continue
            fresh = position.admit(page)
            if fresh:
                recoveries = 0
            if progress is not None:
                progress.reach(fresh)
                progress.add(len(fresh))
            yield Page(events=fresh, next_offset=position.offset)
            if page.is_last:
                return

    def _iter_sliced(
        self, query: AuditLogQuery, concurrency: int, start: datetime, end: datetime
    ) -> Generator[Page, None, None]:
        """The pages of a concurrent read of ``[start, end)``, in window order; see :meth:`iter_pages`."""
        progress = _Progress(self.log, self.progress_interval, self.rate_limiter, query)
        self.log.info(
            "Reading Asana audit events of [%s, %s) with %d concurrent requests",
            format_instant(start),
            format_instant(end),
            concurrency,
        )
        gauge = BudgetGauge(self.rate_limiter)
        reader = SlicedReader(
            start=start,
            end=end,
            concurrency=concurrency,
            page_size=query.page_size,
            make_worker=lambda cancel: _SliceWorker(self, query, self.rate_limiter, cancel),
            on_page=progress.add,
            split_worthwhile=lambda: not gauge.bound(),
            spill_dir=self.spill_dir,
        )
        progress.reader = reader
        pages = reader.pages()
        try:
            for events in pages:
                yield Page(events=events, next_offset=None)
        finally:
            pages.close()
        progress.finish()

    def _new_session(self) -> requests.Session:
        """A session set up like the client's own (headers, proxies, TLS), for one worker thread."""
        return copy_session(self._session)


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
        limiter: RequestBudget,
        cancel: threading.Event,
    ) -> None:
        self._client = client
        self._query = query
        self._session = client._new_session()
        self._fetch = functools.partial(
            Transport(self._session, client.events_url, client.timeout).fetch_page,
            retry=client.retry,
            budget=limiter,
            log=client.log,
            cancel=cancel,
        )

    def read(self, start: datetime, end: datetime) -> Generator[list[Event], None, None]:
        """The events of the slice ``[start, end)`` of the read's query, page by page."""
        position = StreamPosition(query=replace(self._query, start_at=start, end_at=end))
        for page in self._client._follow(position, self._fetch, None):
            yield page.events

    def close(self) -> None:
        self._session.close()
