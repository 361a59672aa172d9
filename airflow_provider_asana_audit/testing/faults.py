"""
Injected faults: one-shot faults (:class:`Fault`) served instead of (or around) a normal response,
in the order they were injected (:class:`FaultQueue`).

Only the standard library is used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from airflow_provider_asana_audit.testing.query import ParsedRequest

__all__ = ["Fault", "FaultQueue", "PendingFault"]


class Fault(str, Enum):
    """
    A fault the stand-in can serve instead of (or around) a normal response.

    Members compare and hash like their string values, so ``"429"`` and ``Fault.RATE_LIMIT`` are
    interchangeable as dict keys (e.g. in :attr:`Stats.faults_served`).
    """

    #: 429 with ``Retry-After: <retry_after>``.
    RATE_LIMIT = "429"
    #: 500 with Asana's error envelope (with an error ``phrase``, as Asana's 500s have).
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


@dataclass
class PendingFault:
    """
    A fault waiting for requests.

    :param fault: what to serve.
    :param remaining: how many more requests get it.
    :param retry_after: the ``Retry-After`` of :attr:`Fault.RATE_LIMIT`, in seconds.
    :param delay: the sleep of :attr:`Fault.SLOW`, in seconds.
    :param when: only requests for which this returns true get the fault.
    """

    fault: Fault
    remaining: int
    retry_after: float = 1
    delay: float = 0
    when: Callable[[ParsedRequest], bool] | None = None

    def matches(self, request: ParsedRequest) -> bool:
        """Whether ``request`` gets this fault."""
        if self.fault is Fault.EXPIRE_OFFSET and not request.has_offset:
            return False
        return self.when is None or bool(self.when(request))


class FaultQueue:
    """One-shot faults, consumed in the order they were injected; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[PendingFault] = []

    def inject(
        self,
        fault: Fault | str,
        *,
        count: int = 1,
        retry_after: float = 1,
        delay: float = 0,
        when: Callable[[ParsedRequest], bool] | None = None,
    ) -> None:
        """Queue ``fault`` for the next ``count`` matching requests (see :meth:`FakeAsana.inject`)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        pending = PendingFault(Fault.coerce(fault), count, retry_after, delay, when)
        with self._lock:
            self._pending.append(pending)

    def take(self, request: ParsedRequest) -> PendingFault | None:
        """The first pending fault that matches ``request``, counted as served to it; or ``None``."""
        with self._lock:
            for index, pending in enumerate(self._pending):
                if pending.matches(request):
                    pending.remaining -= 1
                    if pending.remaining <= 0:
                        del self._pending[index]
                    return pending
        return None

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._pending.clear()

    @property
    def pending(self) -> list[tuple[Fault, int]]:
        """The faults still queued, with how many requests each will still hit."""
        with self._lock:
            return [(p.fault, p.remaining) for p in self._pending]
