"""
:class:`FakeAsana`: a local stand-in for Asana's audit log API, with fault injection.

It composes the parts, each in its own module: the events
(:mod:`~airflow_provider_asana_audit.testing.store`), request parsing and offsets
(:mod:`~airflow_provider_asana_audit.testing.query`), faults
(:mod:`~airflow_provider_asana_audit.testing.faults`), rate limits
(:mod:`~airflow_provider_asana_audit.testing.limits`), counters and the request log
(:mod:`~airflow_provider_asana_audit.testing.recorder`), the endpoint's answers
(:mod:`~airflow_provider_asana_audit.testing.responses`) and the HTTP transport
(:mod:`~airflow_provider_asana_audit.testing.server`).

Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_asana_audit.get_provider_info import CONN_TYPE
from airflow_provider_asana_audit.testing.data import DEFAULT_WORKSPACE_GID, generate_events
from airflow_provider_asana_audit.testing.faults import Fault, FaultQueue
from airflow_provider_asana_audit.testing.limits import InFlightCaps, TokenBuckets
from airflow_provider_asana_audit.testing.query import Filters, OffsetCodec, ParsedRequest
from airflow_provider_asana_audit.testing.recorder import RecordedRequest, Recorder, Stats
from airflow_provider_asana_audit.testing.responses import AuditLogAPI
from airflow_provider_asana_audit.testing.server import HttpServer
from airflow_provider_asana_audit.testing.store import EventStore

__all__ = ["DEFAULT_TOKEN", "FakeAsana"]

#: The token the stand-in accepts unless told otherwise.
DEFAULT_TOKEN = "fake-asana-token"


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """
    Keep the cyclic garbage collector out of a bulk build.

    Building a million events makes millions of dicts, none of them garbage; the collector would
    walk them again and again as they are made, which about doubles the build time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class FakeAsana:
    """
    A local, threaded HTTP stand-in for Asana's audit log API.

    Usage::

        with FakeAsana(seed=1, events_per_day=50) as fake:
            client = MyClient(fake.base_url, fake.token, fake.workspace_gid)
            fake.inject(Fault.RATE_LIMIT, retry_after=0)
            assert client.read_all() == fake.ground_truth()

    :param workspace_gid: the only workspace that exists.
    :param token: the only token accepted.
    :param events: the initial events; when ``None``, ``generate_events(seed=seed, start=start,
        end=end, per_day=events_per_day, count=event_count)``.
    :param seed: seed for generated events (and for events made by :meth:`append_events`).
    :param start: start of the generated range (aware UTC); default ``end`` minus 7 days.
    :param end: end of the generated range (exclusive); default now, floored to the hour.
    :param events_per_day: average events per day for generated events.
    :param offset_ttl: seconds until an issued offset expires; ``None``: never.
    :param requests_per_minute: per-token rate limit, as Asana's (1,500 on paid plans, 150 on free);
        ``None``: unlimited. A token bucket per token: see ``burst``.
    :param denied_tokens: tokens that are known but refused, mapped to their status (402 or 403),
        e.g. a personal access token without audit log access.
    :param host: the interface to listen on.
    :param port: the port; 0 picks a free one.
    :param verbose: log every request to stderr.
    :param latency: seconds every request to the events route waits before it is answered, in its
        connection's thread (concurrent requests overlap); cut short by :meth:`stop`.
    :param burst: the size of each token's bucket: how many requests may come at once; default one
        second's worth, ``max(1, ceil(requests_per_minute / 60))``. Requests earn tokens back at
        ``requests_per_minute / 60`` a second; a request that finds none gets 429 with
        ``Retry-After``, and takes a token all the same, since Asana counts rejected requests too.
    :param event_count: the exact number of generated events, instead of ``events_per_day``.
    :param max_in_flight: per-token cap on the GETs of the events route in flight at once, as Asana's
        (about 50); ``None``: no cap. A request is in flight from the moment the stand-in starts
        handling it until its response is ready to send, its ``latency`` included. One over the cap
        is answered at once with 429 and ``Retry-After: 1`` (Asana documents no value for this limit;
        a slot frees within a request's latency, and the header counts whole seconds), and takes a
        token from the ``requests_per_minute`` bucket all the same. :attr:`Stats.refused` counts the
        refusals of each limit apart: ``"rate"`` and ``"concurrency"``.
    """

    def __init__(
        self,
        *,
        workspace_gid: str = DEFAULT_WORKSPACE_GID,
        token: str = DEFAULT_TOKEN,
        events: Iterable[Mapping[str, Any]] | None = None,
        seed: int = 0,
        start: datetime | None = None,
        end: datetime | None = None,
        events_per_day: int = 200,
        offset_ttl: float | None = None,
        requests_per_minute: int | None = None,
        denied_tokens: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        latency: float = 0.0,
        burst: int | None = None,
        event_count: int | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        if requests_per_minute is None and burst is not None:
            raise ValueError("burst needs requests_per_minute")
        self.seed = seed
        self._store = EventStore(workspace_gid=workspace_gid, seed=seed)
        self._faults = FaultQueue()
        self._recorder = Recorder()
        self._api = AuditLogAPI(
            store=self._store,
            faults=self._faults,
            recorder=self._recorder,
            workspace_gid=workspace_gid,
            token=token,
            denied_tokens=dict(denied_tokens or {}),
            offsets=OffsetCodec(workspace_gid, offset_ttl),
            limits=None if requests_per_minute is None else TokenBuckets(requests_per_minute, burst),
            in_flight=None if max_in_flight is None else InFlightCaps(max_in_flight),
            latency=latency,
            verbose=verbose,
        )
        self._http = HttpServer(self._api.handle, host=host, port=port, verbose=verbose)
        if events is None:
            if end is None:
                end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
            if start is None:
                start = end - timedelta(days=7)
            with _gc_paused():
                generated = generate_events(
                    seed=seed,
                    start=start,
                    end=end,
                    per_day=events_per_day,
                    workspace_gid=workspace_gid,
                    count=event_count,
                )
                self._store.add(generated, copy_events=False)  # nobody else holds them
        else:
            self.add_events(events)

    # ------------------------------------------------------------------ settings

    @property
    def workspace_gid(self) -> str:
        """The only workspace that exists."""
        return self._api.workspace_gid

    @property
    def token(self) -> str:
        """The only token accepted."""
        return self._api.token

    @property
    def denied_tokens(self) -> dict[str, int]:
        """Known but refused tokens and their status; changes apply to the next request."""
        return self._api.denied_tokens

    @property
    def offset_ttl(self) -> float | None:
        """Seconds until an issued offset expires; ``None``: never."""
        return self._api.offsets.ttl

    @property
    def requests_per_minute(self) -> int | None:
        """The per-token rate limit; ``None``: unlimited."""
        limits = self._api.limits
        return None if limits is None else limits.requests_per_minute

    @property
    def burst(self) -> int | None:
        """The size of each token's bucket; ``None`` when unlimited."""
        limits = self._api.limits
        return None if limits is None else limits.burst

    @property
    def max_in_flight(self) -> int | None:
        """The per-token cap on requests in flight at once; ``None``: no cap."""
        caps = self._api.in_flight
        return None if caps is None else caps.max_in_flight

    @property
    def latency(self) -> float:
        """Seconds every request to the events route waits before it is answered."""
        return self._api.latency

    @property
    def host(self) -> str:
        """The interface listened on."""
        return self._http.host

    @property
    def port(self) -> int:
        """The port asked for (0: any free one); :attr:`bound_port` is the one listened on."""
        return self._http.port

    @property
    def verbose(self) -> bool:
        """Whether every request is logged to stderr."""
        return self._http.verbose

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeAsana:
        """Start serving in a background thread (no-op when already serving); return ``self``."""
        self._api.stopping.clear()
        self._http.start()
        self._api.base_url = self.base_url
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread. Idempotent."""
        self._api.stopping.set()  # ends the waits of latency and SLOW faults
        self._http.stop()

    def __enter__(self) -> FakeAsana:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/api/1.0``; the server must be started."""
        return f"{self._http.base_url}/api/1.0"

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        return int(self._http.base_url.rsplit(":", 1)[1])

    # ------------------------------------------------------------------ Airflow connection

    def connection_dict(self) -> dict[str, Any]:
        """The Airflow connection for this stand-in, as the JSON form's dict."""
        return {
            "conn_type": CONN_TYPE,
            "host": self.base_url,
            "password": self.token,
            "extra": {"workspace_gid": self.workspace_gid},
        }

    def connection_json(self) -> str:
        """The JSON form of the connection, as ``AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT`` accepts it."""
        return json.dumps(self.connection_dict())

    def connection_uri(self) -> str:
        """
        The URI form of the connection, built as Airflow's ``Connection.get_uri()`` builds it.

        The host carries a protocol and a path, so it is written as ``asana-audit-log://http://...``
        with the rest of the host quoted; Airflow parses it back to ``host=<base_url>``. The extra is
        sent whole as ``__extra__``: Airflow 3 JSON-decodes flat query values, which would turn the
        all-digit ``workspace_gid`` into an ``int``.
        """
        protocol, rest = self.base_url.split("://", 1)
        query = urlencode({"__extra__": json.dumps({"workspace_gid": self.workspace_gid})})
        return (
            f"{CONN_TYPE.replace('_', '-')}://{protocol}://:{quote(self.token, safe='')}@"
            f"{quote(rest, safe='')}/?{query}"
        )

    # ------------------------------------------------------------------ events

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """
        Add copies of events with any ``created_at``; thread-safe.

        An event added with a ``created_at`` before the cursor of an outstanding offset is not seen
        through that offset (Asana's capture delay); :meth:`ground_truth` includes it.

        :raises ValueError: for an event without a digit-only ``gid``, with an unparsable
            ``created_at`` or with a gid already present.
        """
        self._store.add(events)

    def append_events(
        self,
        n: int = 1,
        *,
        created_at: datetime | None = None,
        event_type: str | None = None,
        **overrides: Any,
    ) -> list[dict[str, Any]]:
        """
        Make ``n`` fresh realistic events and add them; thread-safe.

        :param n: how many.
        :param created_at: their instant (aware); default: now, at the time of each event.
        :param event_type: their ``event_type``; random when ``None``.
        :param overrides: top-level keys to set on every new event (``actor={...}``, ...).
        :return: copies of the new events. Their gids are larger than every gid present.
        """
        return self._store.append(n, created_at=created_at, event_type=event_type, overrides=overrides)

    def ground_truth(
        self,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
    ) -> list[dict[str, Any]]:
        """
        Exactly what a perfect client must return for these filters, in the server's order.

        Late-captured events are included; retention (90 days, nothing before 2021-10-08) applies.

        :param start_at: inclusive start; an aware datetime or an ISO 8601 string.
        :param end_at: exclusive end.
        """
        filters = Filters.of(
            start_at,
            end_at,
            event_type=event_type,
            actor_type=actor_type,
            actor_gid=actor_gid,
            resource_gid=resource_gid,
        )
        return self._store.ground_truth(filters)

    @property
    def events(self) -> list[dict[str, Any]]:
        """A copy of every event held, retention ignored, in the server's order."""
        return self._store.all_events()

    # ------------------------------------------------------------------ faults and stats

    def inject(
        self,
        fault: Fault | str,
        *,
        count: int = 1,
        retry_after: float = 1,
        delay: float = 0,
        when: Callable[[ParsedRequest], bool] | None = None,
    ) -> None:
        """
        Queue a one-shot fault for the next ``count`` matching requests.

        Faults are consumed in the order they were injected: each request takes the first pending
        fault that matches it. :attr:`Fault.EXPIRE_OFFSET` only matches requests with an ``offset``.

        :param fault: a :class:`Fault` or its value (``"429"``, ``"drop"``, ...).
        :param count: how many requests get it.
        :param retry_after: the ``Retry-After`` of :attr:`Fault.RATE_LIMIT`, in seconds.
        :param delay: the sleep of :attr:`Fault.SLOW`, in seconds.
        :param when: only requests for which this returns true get the fault.
        """
        self._faults.inject(fault, count=count, retry_after=retry_after, delay=delay, when=when)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[tuple[Fault, int]]:
        """The faults still queued, with how many requests each will still hit."""
        return self._faults.pending

    @property
    def stats(self) -> Stats:
        """A consistent snapshot of the counters."""
        return self._recorder.stats

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered since the last :meth:`reset_stats`, in order."""
        return self._recorder.requests

    def reset_stats(self) -> None:
        """Zero the counters and forget the recorded requests (faults, limits and requests in flight stay)."""
        self._recorder.reset()
