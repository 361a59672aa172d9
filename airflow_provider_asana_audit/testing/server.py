"""
A faithful local fake of Asana's audit log endpoint, with fault injection.

``GET /api/1.0/workspaces/{workspace_gid}/audit_log_events`` behaves as ``FIELD-NOTES.md`` describes:

* ``Authorization: Bearer <token>``; a missing or wrong token gets 401, a token listed in
  ``denied_tokens`` (e.g. a personal access token) gets 402 or 403, an unknown workspace 404.
* ``start_at`` (inclusive), ``end_at`` (exclusive), ``event_type``, ``actor_type``, ``actor_gid``,
  ``resource_gid``, ``limit`` (1..100, default 100) and ``offset``; invalid values get 400 with a
  message naming the parameter. Unknown parameters (``opt_pretty``, ...) are ignored.
* Events are served sorted by ``(created_at, int(gid))``.
* **The stream contract:** ``next_page`` is ``null`` only when no event at all matches the filters.
  Once anything matches, every response carries ``next_page``, also after the last event, where
  ``data`` is ``[]``; polling that offset later returns the events added since.
* Offsets are opaque, HMAC-signed tokens (secret random per server instance) that carry the filters
  they were issued for, the cursor (``created_at`` and ``gid`` of the last event returned) and their
  issue time. Forged, tampered, expired (``offset_ttl``) or filter-mismatched offsets get
  ``400 offset: Your pagination token is invalid.``
* **Capture delay:** an offset is a cursor in ``(created_at, gid)`` order. Events added later with a
  ``created_at`` before an outstanding cursor (:meth:`FakeAsana.add_events` with a past instant) are
  never seen through that offset, only by a new query whose window covers them. This models Asana
  capturing events late (AWS AppFabric documents up to 30 minutes): a client that reads a window
  right after it closes can miss events that appear later. :meth:`FakeAsana.ground_truth` always
  includes them.
* Retention: events older than 90 days, or before 2021-10-08, are never returned.
* Rate limit (``requests_per_minute``): a sliding 60 s window per token; over it a 429 with an integer
  ``Retry-After``; rejected requests count toward the window too, as Asana documents.

Only the standard library is used, so the stand-in runs anywhere the provider's tests run.
"""

from __future__ import annotations

import base64
import bisect
import collections
import contextlib
import copy
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from airflow_provider_asana_audit.testing.data import (
    ACTOR_TYPES,
    DEFAULT_WORKSPACE_GID,
    generate_events,
    make_event,
)
from airflow_provider_asana_audit.timeutils import parse_instant, retention_start

__all__ = [
    "CONN_TYPE",
    "DEFAULT_TOKEN",
    "INVALID_OFFSET_MESSAGE",
    "MAX_LIMIT",
    "FakeAsana",
    "Fault",
    "ParsedRequest",
    "RecordedRequest",
    "Stats",
]

#: The connection type of this provider (``asana`` belongs to apache-airflow-providers-asana).
CONN_TYPE = "asana_audit_log"
#: The token the stand-in accepts unless told otherwise.
DEFAULT_TOKEN = "fake-asana-token"
#: The message Asana sends for an offset it does not accept.
INVALID_OFFSET_MESSAGE = "offset: Your pagination token is invalid."
#: The largest (and default) page size.
MAX_LIMIT = 100

_HELP = (
    "For more information on API status codes and how to handle them, "
    "read the docs on errors: https://developers.asana.com/docs/errors"
)
_JSON = "application/json; charset=UTF-8"
_ROUTE = re.compile(r"^/api/1\.0/workspaces/([^/]+)/audit_log_events/?$")
_WINDOW_SECONDS = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_Key = tuple[int, int]  # (created_at in µs since the epoch, int(gid)): the serving order


class Fault(str, Enum):
    """
    A fault the stand-in can serve instead of (or around) a normal response.

    Members compare and hash like their string values, so ``"429"`` and ``Fault.RATE_LIMIT`` are
    interchangeable as dict keys (e.g. in :attr:`Stats.faults_served`).
    """

    #: 429 with ``Retry-After: <retry_after>``.
    RATE_LIMIT = "429"
    #: 500 with Asana's error envelope.
    SERVER_ERROR_500 = "500"
    #: 502 with Asana's error envelope.
    BAD_GATEWAY_502 = "502"
    #: 503 with Asana's error envelope.
    UNAVAILABLE_503 = "503"
    #: 504 with Asana's error envelope.
    GATEWAY_TIMEOUT_504 = "504"
    #: Close the connection without sending anything.
    DROP = "drop"
    #: Sleep ``delay`` seconds, then respond normally.
    SLOW = "slow"
    #: Send the headers with the full Content-Length but only half of the body, then close.
    TRUNCATE = "truncate"
    #: 200 with an HTML body, as a misbehaving proxy would send.
    NOT_JSON = "not_json"
    #: The next request that carries an ``offset`` gets 400 invalid offset (others don't consume it).
    EXPIRE_OFFSET = "expire_offset"

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:
        return hash(self.value)

    @classmethod
    def coerce(cls, value: Fault | str) -> Fault:
        """Return the member for a member, its value (``"429"``) or its name (``"RATE_LIMIT"``)."""
        if isinstance(value, Fault):
            return value
        try:
            return cls(value)
        except ValueError:
            try:
                return cls[str(value).upper()]
            except KeyError:
                choices = ", ".join(repr(m.value) for m in cls)
                raise ValueError(f"unknown fault {value!r}; use a Fault or one of {choices}") from None


_ERROR_STATUS = {
    Fault.SERVER_ERROR_500: (500, "Server Error"),
    Fault.BAD_GATEWAY_502: (502, "Bad Gateway"),
    Fault.UNAVAILABLE_503: (503, "Service Unavailable"),
    Fault.GATEWAY_TIMEOUT_504: (504, "Gateway Timeout"),
}


@dataclass(frozen=True)
class ParsedRequest:
    """
    A request as the stand-in sees it; what a fault's ``when`` predicate receives.

    :param method: the HTTP method.
    :param path: the URL path, without the query.
    :param params: the query parameters (the last value of repeated ones).
    :param headers: the request headers, without ``Authorization``.
    :param token: the bearer token, if any.
    """

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    token: str | None

    @property
    def has_offset(self) -> bool:
        """Whether the request carries an ``offset`` parameter."""
        return "offset" in self.params


@dataclass(frozen=True)
class RecordedRequest:
    """
    One request the stand-in answered, as kept in :attr:`FakeAsana.requests`.

    Also readable like a dict (``request["status"]``).

    :param method: the HTTP method.
    :param path: the URL path, without the query.
    :param params: the query parameters.
    :param headers: the request headers, without ``Authorization``.
    :param status: the status sent; ``0`` when the connection was dropped without a response.
    :param fault: the value of the fault served, if any.
    :param time: when the request arrived (``time.time()``).
    """

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    fault: str | None = None
    time: float = 0.0

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True)
class Stats:
    """
    A snapshot of the stand-in's counters. Also readable like a dict (``stats["requests"]``).

    :param requests: requests received, faults included.
    :param by_status: responses by status (``0``: dropped); missing statuses read as 0.
    :param faults_served: faults served by :class:`Fault` value; missing faults read as 0.
    :param pages_served: complete 200 pages of audit events served.
    :param events_served: events in those pages.
    """

    requests: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    faults_served: collections.Counter[str] = field(default_factory=collections.Counter)
    pages_served: int = 0
    events_served: int = 0

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class _Counters:
    requests: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    faults_served: collections.Counter[str] = field(default_factory=collections.Counter)
    pages_served: int = 0
    events_served: int = 0


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int
    retry_after: float
    delay: float
    when: Callable[[ParsedRequest], bool] | None

    def matches(self, request: ParsedRequest) -> bool:
        if self.fault is Fault.EXPIRE_OFFSET and not request.has_offset:
            return False
        return self.when is None or bool(self.when(request))


@dataclass(frozen=True)
class _Filters:
    start_us: int | None = None
    end_us: int | None = None
    event_type: str | None = None
    actor_type: str | None = None
    actor_gid: str | None = None
    resource_gid: str | None = None

    def as_json(self) -> list[Any]:
        return [
            self.start_us,
            self.end_us,
            self.event_type,
            self.actor_type,
            self.actor_gid,
            self.resource_gid,
        ]

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.event_type is not None and event.get("event_type") != self.event_type:
            return False
        actor = event.get("actor") or {}
        if self.actor_type is not None and actor.get("actor_type") != self.actor_type:
            return False
        if self.actor_gid is not None and actor.get("gid") != self.actor_gid:
            return False
        resource = event.get("resource") or {}
        return self.resource_gid is None or resource.get("gid") == self.resource_gid


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    events: int | None = None  # set for 200 pages of events


class _BadRequest(Exception):
    """A request parameter Asana would refuse with 400."""


def _epoch_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_PHRASE_WORDS = (
    ("sad", "happy", "sleepy", "tiny", "brave", "purple", "quiet", "fuzzy"),
    ("squid", "otters", "llamas", "pandas", "ferrets", "koalas", "geckos", "walruses"),
    ("snuggle", "dance", "wander", "giggle", "ponder", "juggle", "whistle", "nap"),
    ("softly", "wildly", "calmly", "boldly", "gently", "loudly", "quickly", "sweetly"),
)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections so it can close them all on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeAsana) -> None:
        self.fake = fake
        self._active: dict[threading.Thread, socket.socket] = {}
        self._active_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-asana-conn-{client_address[1]}",
            daemon=True,
        )
        with self._active_lock:
            self._active[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if self.fake.verbose and not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut every open connection down and wait for their threads to end."""
        with self._active_lock:
            active = dict(self._active)
        for sock in active.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in active:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAsana/1.0"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed ACKs
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def send_body(self, response: _Response, *, truncate: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body[: len(response.body) // 2] if truncate else response.body)
        self.wfile.flush()


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
        end=end, per_day=events_per_day)``.
    :param seed: seed for generated events (and for events made by :meth:`append_events`).
    :param start: start of the generated range (aware UTC); default ``end`` minus 7 days.
    :param end: end of the generated range (exclusive); default now, floored to the hour.
    :param events_per_day: average events per day for generated events.
    :param offset_ttl: seconds until an issued offset expires; ``None``: never.
    :param requests_per_minute: per-token rate limit (sliding 60 s window); ``None``: unlimited.
    :param denied_tokens: tokens that are known but refused, mapped to their status (402 or 403),
        e.g. a personal access token without audit log access.
    :param host: the interface to listen on.
    :param port: the port; 0 picks a free one.
    :param verbose: log every request to stderr.
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
    ) -> None:
        if requests_per_minute is not None and requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1 or None, not {requests_per_minute}")
        if offset_ttl is not None and offset_ttl < 0:
            raise ValueError(f"offset_ttl must be >= 0 or None, not {offset_ttl}")
        self.workspace_gid = workspace_gid
        self.token = token
        self.seed = seed
        self.offset_ttl = offset_ttl
        self.requests_per_minute = requests_per_minute
        self.denied_tokens: dict[str, int] = dict(denied_tokens or {})
        self.host = host
        self.port = port
        self.verbose = verbose

        self._lock = threading.RLock()
        self._secret = secrets.token_bytes(32)
        self._rng = random.Random(f"asana-audit-standin-append:{seed}")
        self._phrase_rng = random.Random()
        self._events: list[dict[str, Any]] = []
        self._keys: list[_Key] = []
        self._gids: set[str] = set()
        self._faults: list[_PendingFault] = []
        self._windows: dict[str, collections.deque[float]] = {}
        self._counters = _Counters()
        self._requests: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

        if events is None:
            if end is None:
                end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
            if start is None:
                start = end - timedelta(days=7)
            events = generate_events(
                seed=seed, start=start, end=end, per_day=events_per_day, workspace_gid=workspace_gid
            )
        self.add_events(events)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeAsana:
        """Start serving in a background thread (no-op when already serving); return ``self``."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = _Server((self.host, self.port), self)
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-asana", daemon=True
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread. Idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()  # wakes up SLOW faults
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join()

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
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/api/1.0``; the server must be started."""
        server = self._server
        if server is None:
            raise RuntimeError("FakeAsana is not running; call start() or use it as a context manager")
        host, port = server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/api/1.0"

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        return int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])

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
        Add events with any ``created_at``; thread-safe.

        An event added with a ``created_at`` before the cursor of an outstanding offset is not seen
        through that offset (Asana's capture delay); :meth:`ground_truth` includes it.

        :raises ValueError: for an event without a digit-only ``gid``, with an unparsable
            ``created_at`` or with a gid already present.
        """
        prepared: list[tuple[_Key, dict[str, Any]]] = []
        for event in events:
            item = copy.deepcopy(dict(event))
            gid = item.get("gid")
            if not isinstance(gid, str) or not gid.isdigit():
                raise ValueError(f"event gid must be a string of digits, not {gid!r}")
            created = parse_instant(item.get("created_at", ""), name="created_at")
            prepared.append(((_epoch_us(created), int(gid)), item))
        with self._lock:
            new_gids = [item["gid"] for _key, item in prepared]
            duplicates = sorted(self._gids.intersection(new_gids)) or sorted(
                g for g, n in collections.Counter(new_gids).items() if n > 1
            )
            if duplicates:
                raise ValueError(f"events with these gids exist already: {duplicates[:5]}")
            for key, item in prepared:
                index = bisect.bisect_right(self._keys, key)
                self._keys.insert(index, key)
                self._events.insert(index, item)
                self._gids.add(item["gid"])

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
        new: list[dict[str, Any]] = []
        with self._lock:
            top = max((int(g) for g in self._gids), default=1_207_000_000_000_000)
            for _ in range(n):
                top += self._rng.randint(1, 5_000)
                instant = created_at if created_at is not None else datetime.now(timezone.utc)
                event = make_event(
                    self._rng,
                    gid=str(top),
                    created_at=instant,
                    event_type=event_type,
                    workspace_gid=self.workspace_gid,
                )
                event.update(copy.deepcopy(overrides))
                new.append(event)
            self.add_events(new)
        return copy.deepcopy(new)

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
        filters = _Filters(
            start_us=None if start_at is None else _epoch_us(parse_instant(start_at, name="start_at")),
            end_us=None if end_at is None else _epoch_us(parse_instant(end_at, name="end_at")),
            event_type=event_type,
            actor_type=actor_type,
            actor_gid=actor_gid,
            resource_gid=resource_gid,
        )
        with self._lock:
            return copy.deepcopy(self._select(filters, None, None))

    @property
    def events(self) -> list[dict[str, Any]]:
        """A copy of every event held, retention ignored, in the server's order."""
        with self._lock:
            return copy.deepcopy(self._events)

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
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        pending = _PendingFault(Fault.coerce(fault), count, retry_after, delay, when)
        with self._lock:
            self._faults.append(pending)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> list[tuple[Fault, int]]:
        """The faults still queued, with how many requests each will still hit."""
        with self._lock:
            return [(f.fault, f.remaining) for f in self._faults]

    @property
    def stats(self) -> Stats:
        """A consistent snapshot of the counters."""
        with self._lock:
            c = self._counters
            return Stats(
                c.requests,
                collections.Counter(c.by_status),
                collections.Counter(c.faults_served),
                c.pages_served,
                c.events_served,
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered since the last :meth:`reset_stats`, in order."""
        with self._lock:
            return list(self._requests)

    def reset_stats(self) -> None:
        """Zero the counters and forget the recorded requests (faults and rate windows stay)."""
        with self._lock:
            self._counters = _Counters()
            self._requests.clear()

    # ------------------------------------------------------------------ serving

    def _serve(self, handler: _Handler) -> None:
        """Answer one request; runs in the connection's thread."""
        split = urlsplit(handler.path)
        parsed_qs = parse_qs(split.query, keep_blank_values=True)
        params = {name: values[-1] for name, values in parsed_qs.items()}
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "authorization"}
        auth = handler.headers.get("Authorization", "")
        scheme, _, credentials = auth.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
        request = ParsedRequest(handler.command, split.path, params, headers, token)
        arrived = time.time()

        with self._lock:
            self._counters.requests += 1
            pending = self._take_fault(request)
        fault = pending.fault if pending is not None else None

        if pending is not None and fault is Fault.SLOW:
            self._stopping.wait(pending.delay)
        if fault is Fault.DROP:
            handler.close_connection = True
            self._record(request, 0, fault, arrived, None)
            return

        response: _Response
        if fault is Fault.RATE_LIMIT and pending is not None:
            response = self._error(429, "You have made too many requests recently. Please, be chill.")
            response.headers["Retry-After"] = _format_seconds(pending.retry_after)
        elif fault in _ERROR_STATUS and fault is not None:
            status, message = _ERROR_STATUS[fault]
            response = self._error(status, message)
        elif fault is Fault.NOT_JSON:
            response = _Response(200, b"<html>upstream error</html>", "text/html")
        elif fault is Fault.EXPIRE_OFFSET:
            response = self._error(400, INVALID_OFFSET_MESSAGE)
        else:
            try:
                response = self._respond(request)
            except Exception as exc:  # a bug in the stand-in: answer like Asana would, not hang up
                if self.verbose:
                    raise
                response = self._error(500, f"Server Error ({type(exc).__name__})")

        truncate = fault is Fault.TRUNCATE
        # Counted before sending, so a client that has its response always sees it in the stats.
        self._record(request, response.status, fault, arrived, None if truncate else response.events)
        handler.send_body(response, truncate=truncate)

    def _take_fault(self, request: ParsedRequest) -> _PendingFault | None:
        for index, pending in enumerate(self._faults):
            if pending.matches(request):
                pending.remaining -= 1
                if pending.remaining <= 0:
                    del self._faults[index]
                return pending
        return None

    def _record(
        self, request: ParsedRequest, status: int, fault: Fault | None, arrived: float, events: int | None
    ) -> None:
        with self._lock:
            counters = self._counters
            counters.by_status[status] += 1
            if fault is not None:
                counters.faults_served[fault.value] += 1
            if events is not None:
                counters.pages_served += 1
                counters.events_served += events
            self._requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.params),
                    dict(request.headers),
                    status,
                    fault.value if fault is not None else None,
                    arrived,
                )
            )

    def _error(self, status: int, message: str) -> _Response:
        with self._lock:
            words = [self._phrase_rng.choice(choices) for choices in _PHRASE_WORDS]
            phrase = f"{self._phrase_rng.randint(2, 29)} {' '.join(words)}"
        return _json_response(status, {"errors": [{"message": message, "help": _HELP, "phrase": phrase}]})

    def _respond(self, request: ParsedRequest) -> _Response:
        match = _ROUTE.match(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return self._error(404, "No matching route for request")
        if request.token is None or (request.token != self.token and request.token not in self.denied_tokens):
            return self._error(401, "Not Authorized")
        if request.token in self.denied_tokens and request.token != self.token:
            return self._error(
                self.denied_tokens[request.token],
                "The audit log API is only available to service accounts of Enterprise and "
                "Enterprise+ organizations; this token cannot read audit log events.",
            )
        retry_after = self._rate_limit(request.token)
        if retry_after is not None:
            response = self._error(429, "You have made too many requests recently. Please, be chill.")
            response.headers["Retry-After"] = str(retry_after)
            return response
        workspace_gid = match.group(1)
        if workspace_gid != self.workspace_gid:
            return self._error(404, f"workspace: Unknown object: {workspace_gid}")
        try:
            filters, limit = _parse_params(request.params)
            cursor = self._decode_offset(request.params["offset"], filters) if request.has_offset else None
        except _BadRequest as exc:
            return self._error(400, str(exc))

        with self._lock:
            page = self._select(filters, cursor, limit)
            if page:
                any_match = True
                next_cursor: _Key | None = _key_of(page[-1])
            else:
                any_match = bool(self._select(filters, None, 1))
                next_cursor = cursor
            body: dict[str, Any] = {"data": page, "next_page": None}
            if any_match:
                body["next_page"] = self._next_page(request.params, filters, next_cursor)
            response = _json_response(200, body)
        response.events = len(page)
        return response

    def _rate_limit(self, token: str) -> int | None:
        """Count the request in the token's window; return the Retry-After if it is over the limit."""
        if self.requests_per_minute is None:
            return None
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(token, collections.deque())
            while window and window[0] <= now - _WINDOW_SECONDS:
                window.popleft()
            window.append(now)  # rejected requests count too
            if len(window) <= self.requests_per_minute:
                return None
            # A request succeeds once at most limit - 1 of the requests in the window remain.
            frees_at = window[len(window) - self.requests_per_minute] + _WINDOW_SECONDS
            return max(1, math.ceil(frees_at - now))

    def _select(self, filters: _Filters, cursor: _Key | None, limit: int | None) -> list[dict[str, Any]]:
        """The matching events after ``cursor``, at most ``limit``; the caller holds the lock."""
        lower = _epoch_us(retention_start())
        if filters.start_us is not None:
            lower = max(lower, filters.start_us)
        index = bisect.bisect_left(self._keys, (lower, -1))
        if cursor is not None:
            index = max(index, bisect.bisect_right(self._keys, cursor))
        found: list[dict[str, Any]] = []
        for position in range(index, len(self._events)):
            if filters.end_us is not None and self._keys[position][0] >= filters.end_us:
                break
            event = self._events[position]
            if filters.matches(event):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def _encode_offset(self, filters: _Filters, cursor: _Key | None) -> str:
        payload = {
            "w": self.workspace_gid,
            "f": filters.as_json(),
            "c": list(cursor) if cursor is not None else None,
            "t": round(time.time(), 6),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(signature)}"

    def _decode_offset(self, token: str, filters: _Filters) -> _Key | None:
        """The cursor of a valid offset issued for ``filters``; :class:`_BadRequest` otherwise."""
        try:
            body, signature = token.split(".")
            expected = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(_unb64(signature), expected):
                raise ValueError("bad signature")
            payload = json.loads(_unb64(body))
            if payload["w"] != self.workspace_gid or payload["f"] != filters.as_json():
                raise ValueError("issued for other filters")
            if self.offset_ttl is not None and time.time() - float(payload["t"]) > self.offset_ttl:
                raise ValueError("expired")
            cursor = payload["c"]
            return None if cursor is None else (int(cursor[0]), int(cursor[1]))
        except (ValueError, KeyError, TypeError, IndexError, UnicodeError):
            raise _BadRequest(INVALID_OFFSET_MESSAGE) from None

    def _next_page(self, params: Mapping[str, str], filters: _Filters, cursor: _Key | None) -> dict[str, str]:
        offset = self._encode_offset(filters, cursor)
        query = [(k, v) for k, v in params.items() if k != "offset"]
        query.append(("offset", offset))
        path = f"/workspaces/{self.workspace_gid}/audit_log_events?{urlencode(query)}"
        try:
            base = self.base_url
        except RuntimeError:  # answering while stopping
            base = f"http://{self.host}:{self.port}/api/1.0"
        return {"offset": offset, "path": path, "uri": base + path}


def _key_of(event: Mapping[str, Any]) -> _Key:
    return (_epoch_us(parse_instant(event["created_at"], name="created_at")), int(event["gid"]))


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _json_response(status: int, body: Any) -> _Response:
    return _Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def _parse_params(params: Mapping[str, str]) -> tuple[_Filters, int]:
    """Validate the query parameters as Asana does; raise :class:`_BadRequest` with its message."""
    instants: dict[str, int | None] = {}
    for name in ("start_at", "end_at"):
        value = params.get(name)
        if value is None:
            instants[name] = None
            continue
        try:
            instants[name] = _epoch_us(parse_instant(value, name=name))
        except (ValueError, OverflowError):
            raise _BadRequest(f"{name}: Not a valid ISO 8601 date-time with a time zone: {value!r}") from None
    actor_type = params.get("actor_type")
    if actor_type is not None and actor_type not in ACTOR_TYPES:
        raise _BadRequest(
            f"actor_type: Not one of the allowed values ({', '.join(ACTOR_TYPES)}): {actor_type!r}"
        )
    for name in ("actor_gid", "resource_gid"):
        value = params.get(name)
        if value is not None and not value.isdigit():
            raise _BadRequest(f"{name}: Not a valid gid: {value!r}")
    event_type = params.get("event_type")
    if event_type == "":
        raise _BadRequest("event_type: Must not be empty")
    raw_limit = params.get("limit")
    limit = MAX_LIMIT
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT or not raw_limit.strip().isdigit():
            raise _BadRequest(f"limit: Must be an integer between 1 and {MAX_LIMIT}, got {raw_limit!r}")
    filters = _Filters(
        instants["start_at"],
        instants["end_at"],
        event_type,
        actor_type,
        params.get("actor_gid"),
        params.get("resource_gid"),
    )
    return filters, limit
