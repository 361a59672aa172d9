"""
How the stand-in answers ``GET /api/1.0/workspaces/{workspace_gid}/audit_log_events``.

* ``Authorization: Bearer <token>``: a missing or wrong token gets 401; a token listed as denied
  (e.g. a personal access token) gets its 402 or 403; an unknown workspace gets 404, any other path
  404 too.
* Over the per-token rate limit: 429 with an integer ``Retry-After`` (see
  :class:`~airflow_provider_asana_audit.testing.limits.TokenBuckets`).
* Over the per-token cap on GETs in flight: 429 with ``Retry-After: 1``, answered on arrival, without
  the latency, and taking a token from the rate bucket all the same (see
  :class:`~airflow_provider_asana_audit.testing.limits.InFlightCaps`). A request is in flight from
  the moment the stand-in starts handling it until its response is built, just before its bytes are
  written: released any later, a client that keeps within the cap could send its next request the
  moment it reads an answer and be refused for a slot the stand-in had not yet given back.
* Parameters and offsets are read as :mod:`~airflow_provider_asana_audit.testing.query` describes;
  events are selected as :mod:`~airflow_provider_asana_audit.testing.store` describes.
* **The stream contract:** ``next_page`` is ``null`` only when no event at all matches the filters.
  Once anything matches, every response carries ``next_page``, also after the last event, where
  ``data`` is ``[]``; polling that offset later returns the events added since.
* Errors use Asana's envelope, ``{"errors": [{"message": ..., "help": ...}]}``; only 500s also carry
  a ``phrase`` ("6 sad squid snuggle softly"), which Asana's spec reserves for 500 errors.

Only the standard library is used.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from airflow_provider_asana_audit.testing.faults import Fault, FaultQueue
from airflow_provider_asana_audit.testing.limits import InFlightCaps, TokenBuckets
from airflow_provider_asana_audit.testing.query import (
    INVALID_OFFSET_MESSAGE,
    BadRequest,
    Cursor,
    Filters,
    OffsetCodec,
    ParsedRequest,
    parse_params,
)
from airflow_provider_asana_audit.testing.recorder import Recorder
from airflow_provider_asana_audit.testing.store import EventStore, cursor_of

__all__ = ["AuditLogAPI", "Response", "error_response"]

_HELP = (
    "For more information on API status codes and how to handle them, "
    "read the docs on errors: https://developers.asana.com/docs/errors"
)
_JSON = "application/json; charset=UTF-8"
_ROUTE = re.compile(r"^/api/1\.0/workspaces/([^/]+)/audit_log_events/?$")
_TOO_MANY = "You have made too many requests recently. Please, be chill."
# Asana's service accounts are the only tokens with audit log access, on these plans.
_DENIED = (
    "The audit log API is only available to service accounts of organizations on Enterprise+, on "
    "legacy Enterprise, or on Enterprise with the Compliance Management add-on; this token cannot "
    "read audit log events."
)
_ERROR_STATUS = {
    Fault.SERVER_ERROR_500: (500, "Server Error"),
    Fault.BAD_GATEWAY_502: (502, "Bad Gateway"),
    Fault.UNAVAILABLE_503: (503, "Service Unavailable"),
    Fault.GATEWAY_TIMEOUT_504: (504, "Gateway Timeout"),
}
# Asana's error phrases ("6 sad squid snuggle softly") are four random words and a number.
_PHRASE_WORDS = (
    ("sad", "happy", "sleepy", "tiny", "brave", "purple", "quiet", "fuzzy"),
    ("squid", "otters", "llamas", "pandas", "ferrets", "koalas", "geckos", "walruses"),
    ("snuggle", "dance", "wander", "giggle", "ponder", "juggle", "whistle", "nap"),
    ("softly", "wildly", "calmly", "boldly", "gently", "loudly", "quickly", "sweetly"),
)
_phrase_rng = random.Random()
_phrase_lock = threading.Lock()


@dataclass
class Response:
    """
    What to send back for one request.

    :param status: the HTTP status; 0 with ``drop``.
    :param body: the body bytes.
    :param content_type: the ``Content-Type``.
    :param headers: further headers.
    :param events: the number of events, for a 200 page of events.
    :param drop: close the connection without sending anything.
    :param truncate: send the full ``Content-Length`` but half of the body, then close.
    :param refused: for a 429 of one of the token's limits, its ``reason`` (``"rate"``,
        ``"concurrency"``).
    """

    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    events: int | None = None
    drop: bool = False
    truncate: bool = False
    refused: str | None = None


def _json_response(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def error_response(status: int, message: str) -> Response:
    """Asana's error envelope; a 500 also gets an error ``phrase``."""
    error = {"message": message, "help": _HELP}
    if status == 500:
        with _phrase_lock:
            words = " ".join(_phrase_rng.choice(choices) for choices in _PHRASE_WORDS)
            error["phrase"] = f"{_phrase_rng.randint(2, 29)} {words}"
    return _json_response(status, {"errors": [error]})


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _too_many(retry_after: float, *, refused: str | None) -> Response:
    response = error_response(429, _TOO_MANY)
    response.headers["Retry-After"] = _format_seconds(retry_after)
    response.refused = refused
    return response


class AuditLogAPI:
    """
    The endpoint's behaviour, independent of the HTTP transport; thread-safe.

    :param store: the events.
    :param faults: the pending faults.
    :param recorder: the counters and request log.
    :param workspace_gid: the only workspace that exists.
    :param token: the only token accepted.
    :param denied_tokens: tokens that are known but refused, mapped to their status (402 or 403).
    :param offsets: issues and checks offsets.
    :param limits: the per-token rate limit; ``None``: unlimited.
    :param in_flight: the per-token cap on GETs in flight to the events route; ``None``: no cap.
    :param latency: seconds to wait before answering any request to the events route.
    :param verbose: re-raise the stand-in's own errors (instead of answering 500) so they are logged.
    """

    def __init__(
        self,
        *,
        store: EventStore,
        faults: FaultQueue,
        recorder: Recorder,
        workspace_gid: str,
        token: str,
        denied_tokens: dict[str, int],
        offsets: OffsetCodec,
        limits: TokenBuckets | None = None,
        in_flight: InFlightCaps | None = None,
        latency: float = 0.0,
        verbose: bool = False,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0, not {latency}")
        self.store = store
        self.faults = faults
        self.recorder = recorder
        self.workspace_gid = workspace_gid
        self.token = token
        self.denied_tokens = denied_tokens
        self.offsets = offsets
        self.limits = limits
        self.in_flight = in_flight
        self.latency = latency
        self.verbose = verbose
        #: Where ``next_page.uri`` points: ``http://<host>:<port>/api/1.0`` once serving.
        self.base_url = ""
        #: Set on stop: ends the waits of latency and :attr:`Fault.SLOW` at once.
        self.stopping = threading.Event()

    def handle(self, method: str, target: str, headers: Iterable[tuple[str, str]]) -> Response:
        """Answer one request; runs in the connection's thread, so waits overlap across connections."""
        request = ParsedRequest.from_http(method, target, headers)
        arrived_at = time.time()
        self.recorder.arrived()
        caps, token = self.in_flight, self._capped_token(request)
        fault: Fault | None = None
        if caps is None or token is None:
            response, fault = self._serve(request)
        elif (retry_after := caps.enter(token)) is None:
            try:
                response, fault = self._serve(request)
            finally:
                caps.leave(token)  # before the bytes are written: see the module's docstring
        else:
            # Refused on arrival, before any fault is taken or any work done. Refusals count against
            # the rate limit too, so it takes a token from the bucket, whatever the bucket holds.
            if self.limits is not None:
                self.limits.take(token)
            response = _too_many(retry_after, refused=caps.reason)

        # Counted before sending, so a client that has its response always sees it in the stats.
        self.recorder.answered(
            request,
            response.status,
            fault=fault,
            arrived_at=arrived_at,
            events=None if response.truncate else response.events,
            refused=response.refused,
        )
        return response

    def _capped_token(self, request: ParsedRequest) -> str | None:
        """The token whose in-flight cap ``request`` counts against; ``None`` when none does."""
        if request.method not in ("GET", "HEAD") or request.token != self.token:
            return None  # refused for its method or token anyway: Asana caps the reads it serves
        return request.token if _ROUTE.match(request.path) else None

    def _serve(self, request: ParsedRequest) -> tuple[Response, Fault | None]:
        """The answer to an admitted request, and the fault it was served."""
        pending = self.faults.take(request)  # at arrival: concurrent requests take faults in order
        fault = pending.fault if pending is not None else None
        if self.latency and _ROUTE.match(request.path):
            self.stopping.wait(self.latency)
        if pending is not None and fault is Fault.SLOW:
            self.stopping.wait(pending.delay)

        if fault is Fault.DROP:
            response = Response(0, drop=True)
        elif fault is Fault.RATE_LIMIT and pending is not None:
            response = _too_many(pending.retry_after, refused=None)  # injected: a fault, no limit's
        elif fault is not None and fault in _ERROR_STATUS:
            response = error_response(*_ERROR_STATUS[fault])
        elif fault is Fault.NOT_JSON:
            response = Response(200, b"<html>upstream error</html>", "text/html")
        elif fault is Fault.EXPIRE_OFFSET:
            response = error_response(400, INVALID_OFFSET_MESSAGE)
        else:
            try:
                response = self._respond(request)
            except Exception as exc:  # a bug in the stand-in: answer like Asana would, not hang up
                if self.verbose:
                    raise
                response = error_response(500, f"Server Error ({type(exc).__name__})")
            response.truncate = fault is Fault.TRUNCATE

        return response, fault

    def _respond(self, request: ParsedRequest) -> Response:
        match = _ROUTE.match(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return error_response(404, "No matching route for request")
        token = request.token
        if token is None or (token != self.token and token not in self.denied_tokens):
            return error_response(401, "Not Authorized")
        if token != self.token:
            return error_response(self.denied_tokens[token], _DENIED)
        if self.limits is not None and (retry_after := self.limits.take(token)) is not None:
            return _too_many(retry_after, refused=self.limits.reason)
        workspace_gid = match.group(1)
        if workspace_gid != self.workspace_gid:
            return error_response(404, f"workspace: Unknown object: {workspace_gid}")
        try:
            filters, limit = parse_params(request.params)
            cursor = self.offsets.decode(request.params["offset"], filters) if request.has_offset else None
        except BadRequest as exc:
            return error_response(400, str(exc))

        page, any_match = self.store.page(filters, cursor, limit)
        body: dict[str, Any] = {"data": page, "next_page": None}
        if any_match:
            body["next_page"] = self._next_page(
                request.params, filters, cursor_of(page[-1]) if page else cursor
            )
        response = _json_response(200, body)
        response.events = len(page)
        return response

    def _next_page(
        self, params: Mapping[str, str], filters: Filters, cursor: Cursor | None
    ) -> dict[str, str]:
        offset = self.offsets.encode(filters, cursor)
        query = [(k, v) for k, v in params.items() if k != "offset"]
        query.append(("offset", offset))
        path = f"/workspaces/{self.workspace_gid}/audit_log_events?{urlencode(query)}"
        return {"offset": offset, "path": path, "uri": self.base_url + path}
