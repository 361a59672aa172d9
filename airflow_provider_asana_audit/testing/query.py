"""
Requests to the audit log endpoint as Asana reads them: parameters, filters and offsets.

* ``start_at`` (inclusive), ``end_at`` (exclusive), ``event_type``, ``actor_type``, ``actor_gid``,
  ``resource_gid``, ``limit`` (1..100, default 100) and ``offset``; an invalid value gets 400 with a
  message naming the parameter, as Asana's do. Unknown parameters (``opt_pretty``, ...) are ignored.
* Offsets are opaque, HMAC-signed tokens (with a secret random per server instance) that carry the
  filters they were issued for, the cursor (``created_at`` and ``gid`` of the last event returned)
  and their issue time. A forged, tampered, expired or filter-mismatched offset gets Asana's
  ``400 offset: Your pagination token is invalid.``

Only the standard library is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_asana_audit.testing.instants import instant_us, parse_us
from airflow_provider_asana_audit.testing.vocabulary import ACTOR_TYPES

__all__ = [
    "INVALID_OFFSET_MESSAGE",
    "MAX_LIMIT",
    "BadRequest",
    "Cursor",
    "Filters",
    "OffsetCodec",
    "ParsedRequest",
    "parse_params",
]

#: The message Asana sends for an offset it does not accept.
INVALID_OFFSET_MESSAGE = "offset: Your pagination token is invalid."
#: The largest (and default) page size.
MAX_LIMIT = 100

#: A position in the serving order: (``created_at`` in µs since the epoch, ``int(gid)``).
Cursor = tuple[int, int]


class BadRequest(Exception):
    """A request parameter Asana would refuse with 400; the message is Asana's."""


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

    @classmethod
    def from_http(cls, method: str, target: str, headers: Iterable[tuple[str, str]]) -> ParsedRequest:
        """
        Parse a request line's method and target and the request's headers.

        :param method: the HTTP method.
        :param target: the request target, path and query (``/api/1.0/...?limit=5``).
        :param headers: the header fields, in the order received.
        """
        split = urlsplit(target)
        params = {name: values[-1] for name, values in parse_qs(split.query, keep_blank_values=True).items()}
        kept: dict[str, str] = {}
        authorization = ""
        for name, value in headers:
            if name.lower() == "authorization":
                authorization = authorization or value  # the first one, as http.server's get() reads it
            else:
                kept[name] = value
        scheme, _, credentials = authorization.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
        return cls(method, split.path, params, kept, token)


@dataclass(frozen=True)
class Filters:
    """
    What a query selects: a ``[start_us, end_us)`` window (µs since the epoch) and equality filters.

    :param start_us: inclusive start; ``None``: from the oldest event kept.
    :param end_us: exclusive end; ``None``: up to the newest event.
    """

    start_us: int | None = None
    end_us: int | None = None
    event_type: str | None = None
    actor_type: str | None = None
    actor_gid: str | None = None
    resource_gid: str | None = None

    @classmethod
    def of(
        cls,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
    ) -> Filters:
        """Filters from aware datetimes or ISO 8601 strings (as :meth:`FakeAsana.ground_truth` takes them)."""
        return cls(
            start_us=None if start_at is None else instant_us(start_at, name="start_at"),
            end_us=None if end_at is None else instant_us(end_at, name="end_at"),
            event_type=event_type,
            actor_type=actor_type,
            actor_gid=actor_gid,
            resource_gid=resource_gid,
        )

    def as_json(self) -> list[Any]:
        """The filters as a JSON list, for signing into offsets and comparing with them."""
        return [
            self.start_us,
            self.end_us,
            self.event_type,
            self.actor_type,
            self.actor_gid,
            self.resource_gid,
        ]

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` passes the equality filters (the window is the store's business)."""
        if self.event_type is not None and event.get("event_type") != self.event_type:
            return False
        actor = event.get("actor") or {}
        if self.actor_type is not None and actor.get("actor_type") != self.actor_type:
            return False
        if self.actor_gid is not None and actor.get("gid") != self.actor_gid:
            return False
        resource = event.get("resource") or {}
        return self.resource_gid is None or resource.get("gid") == self.resource_gid


def parse_params(params: Mapping[str, str]) -> tuple[Filters, int]:
    """
    Validate the query parameters as Asana does.

    :return: the filters and the page size.
    :raises BadRequest: with a message that names the parameter, as Asana's 400s do.
    """
    instants: dict[str, int | None] = {}
    for name in ("start_at", "end_at"):
        value = params.get(name)
        if value is None:
            instants[name] = None
            continue
        try:
            instants[name] = parse_us(value)
        except ValueError:
            raise BadRequest(f"{name}: Not a valid ISO 8601 date-time with a time zone: {value!r}") from None
    actor_type = params.get("actor_type")
    if actor_type is not None and actor_type not in ACTOR_TYPES:
        raise BadRequest(
            f"actor_type: Not one of the allowed values ({', '.join(ACTOR_TYPES)}): {actor_type!r}"
        )
    for name in ("actor_gid", "resource_gid"):
        value = params.get(name)
        if value is not None and not value.isdigit():
            raise BadRequest(f"{name}: Not a valid gid: {value!r}")
    event_type = params.get("event_type")
    if event_type == "":
        raise BadRequest("event_type: Must not be empty")
    raw_limit = params.get("limit")
    limit = MAX_LIMIT
    if raw_limit is not None:
        text = raw_limit.strip()
        # isdecimal() first: int() would also accept "+5", "-1" and "5_0".
        limit = int(text) if text.isdecimal() else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: Must be an integer between 1 and {MAX_LIMIT}, got {raw_limit!r}")
    filters = Filters(
        instants["start_at"],
        instants["end_at"],
        event_type,
        actor_type,
        params.get("actor_gid"),
        params.get("resource_gid"),
    )
    return filters, limit


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OffsetCodec:
    """
    Issues and checks the opaque offsets of one server instance.

    :param workspace_gid: the workspace the offsets are for.
    :param ttl: seconds until an issued offset expires; ``None``: never.
    :param clock: the wall clock in seconds (replaceable in tests).
    """

    def __init__(
        self, workspace_gid: str, ttl: float | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        if ttl is not None and ttl < 0:
            raise ValueError(f"offset_ttl must be >= 0 or None, not {ttl}")
        self.workspace_gid = workspace_gid
        self.ttl = ttl
        self._clock = clock
        self._secret = secrets.token_bytes(32)

    def encode(self, filters: Filters, cursor: Cursor | None) -> str:
        """A signed offset for ``filters`` that resumes after ``cursor`` (``None``: from the start)."""
        payload = {
            "w": self.workspace_gid,
            "f": filters.as_json(),
            "c": list(cursor) if cursor is not None else None,
            "t": round(self._clock(), 6),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    def decode(self, offset: str, filters: Filters) -> Cursor | None:
        """
        The cursor of a valid offset issued for ``filters``.

        :raises BadRequest: for a forged, tampered, expired or filter-mismatched offset.
        """
        try:
            body, signature = offset.split(".")
            if not hmac.compare_digest(_unb64(signature), self._sign(body)):
                raise ValueError("bad signature")
            payload = json.loads(_unb64(body))
            if payload["w"] != self.workspace_gid or payload["f"] != filters.as_json():
                raise ValueError("issued for other filters")
            if self.ttl is not None and self._clock() - float(payload["t"]) > self.ttl:
                raise ValueError("expired")
            cursor = payload["c"]
            return None if cursor is None else (int(cursor[0]), int(cursor[1]))
        except (ValueError, KeyError, TypeError, IndexError, UnicodeError):
            raise BadRequest(INVALID_OFFSET_MESSAGE) from None

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
