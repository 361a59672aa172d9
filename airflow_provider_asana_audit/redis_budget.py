"""
A token's request budget shared by every process that uses the token, kept in Redis.

Asana's limits belong to the token: every task, sensor and trigger of a fleet that uses one token
draws on the same requests a minute and the same requests in flight. Each process's own
:class:`~airflow_provider_asana_audit.budget.RateLimiter` only adapts to the 429s it sees; here one Redis
hash holds the token's state and a Lua script reads and updates it atomically:

* a GCRA bucket (the generic cell rate algorithm: one "theoretical arrival time"), so that requests of
  the whole fleet go out spaced at the token's rate;
* the requests in flight, a sorted set of leases that expire on their own, so that a killed worker's
  requests do not hold places for ever;
* a shared pause: after a 429, every process holds back until its ``Retry-After`` has passed, then
  resumes one request at a time;
* a shared adaptive rate: a 429 outside a pause (something else spends the token too, a SIEM connector
  say) cuts the rate, which grows back in half a minute (additive increase, multiplicative decrease).

Redis's clock (``TIME``) is the one clock, so hosts whose clocks disagree still share the budget. It
needs the Redis provider: ``pip install 'airflow-provider-asana-audit[redis]'``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_asana_audit.budget import (
    BudgetUsage,
    Outcome,
    RateLimiter,
    RefusalReports,
    check_max_in_flight,
    check_requests_per_minute,
    token_key,
)
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogError

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["RedisBudget"]

# KEYS: the state hash, the in-flight set. ARGV: the ceiling (requests/s), max in flight, lease id,
# lease seconds. Returns {"go", rate} when a request may go (its lease taken), {"wait", seconds} while
# the bucket or a pause holds it back, {"full", 0} while max in flight are out.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ceiling = tonumber(ARGV[1])
local s = redis.call('HMGET', KEYS[1], 'tat', 'paused_until', 'cut_rate', 'cut_at', 'growth')
local paused_until = tonumber(s[2]) or 0
if now < paused_until then return {'wait', string.format('%.6f', paused_until - now)} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {'full', '0'} end
local rate = ceiling
if s[3] then rate = math.min(ceiling, tonumber(s[3]) + tonumber(s[5]) * (now - tonumber(s[4]))) end
local tat = math.max(tonumber(s[1]) or now, now)
if tat > now then return {'wait', string.format('%.6f', tat - now)} end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat + 1 / rate))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('EXPIRE', KEYS[2], 86400)
return {'go', string.format('%.6f', rate)}
"""

# KEYS: as above. ARGV: lease id, outcome, Retry-After (-1: none given), the ceiling, the decrease, the
# recovery seconds, the lowest rate. A refusal outside a pause cuts the rate once; every refusal with a
# Retry-After holds everyone back until it has passed, and the bucket starts empty then (no burst).
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREM', KEYS[2], ARGV[1])
local retry_after = tonumber(ARGV[3])
if ARGV[2] ~= 'refused' or retry_after == 0 then return 0 end
if retry_after < 0 then retry_after = 0 end
local s = redis.call('HMGET', KEYS[1], 'paused_until', 'cut_rate', 'cut_at', 'growth')
local paused_until = tonumber(s[1]) or 0
if now >= paused_until then
  local ceiling = tonumber(ARGV[4])
  local rate = ceiling
  if s[2] then rate = math.min(ceiling, tonumber(s[2]) + tonumber(s[4]) * (now - tonumber(s[3]))) end
  local cut = math.max(tonumber(ARGV[7]), rate * tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'cut_rate', string.format('%.6f', cut), 'cut_at', string.format('%.6f', now),
    'growth', string.format('%.9f', (rate - cut) / tonumber(ARGV[6])))
end
local resume = math.max(paused_until, now + retry_after)
local at = string.format('%.6f', resume)
redis.call('HSET', KEYS[1], 'paused_until', at, 'tat', at)
return 1
"""


class RedisBudget:
    """
    A token's budget shared through Redis by every process of a fleet; see the module's docstring.

    One thread of a process asks Redis at a time (the others queue in the process), so a fleet asks
    about once per process per request. :meth:`settle` is called by the thread that :meth:`acquire`
    let through, which is how its lease is found.

    :param redis: the Redis client.
    :param token: the token, hashed into the keys (never stored).
    :param requests_per_minute: the token's budget, for the whole fleet.
    :param max_in_flight: requests of the token in flight at once across the fleet.
    :param lease: seconds after which a request that was never settled (its process killed) stops
        counting as in flight; longer than a request can take.
    :param sleep: how to wait when no ``cancel`` event is given, for tests.
    :param description: how error messages name the store.

    .. seealso::
        docs/scheduling.md#a-fleet-the-shared-budget-in-redis
    """

    #: While the fleet has ``max_in_flight`` requests out, look again this often (seconds).
    POLL = 0.01

    _registry: ClassVar[dict[tuple[str, str, float, int], RedisBudget]] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        redis: Redis,
        *,
        token: str,
        requests_per_minute: float,
        max_in_flight: int,
        lease: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        description: str = "Redis",
    ) -> None:
        check_requests_per_minute(requests_per_minute)
        check_max_in_flight(max_in_flight)
        self.ceiling = requests_per_minute / 60.0
        self.max_in_flight = max_in_flight
        self.lease = lease
        self.description = description
        self._keys = [f"asana_audit_log:{{{token_key(token)}}}:{name}" for name in ("state", "in_flight")]
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)
        self._sleep = sleep
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._turn = threading.Lock()  # one thread of this process asks Redis at a time
        self._leases = threading.local()
        self._usage = BudgetUsage()
        self._reports = RefusalReports()
        self._lock = threading.Lock()

    @classmethod
    def for_token(
        cls,
        token: str,
        *,
        redis_conn_id: str,
        requests_per_minute: float,
        max_in_flight: int,
        lease: float = 120.0,
    ) -> RedisBudget:
        """The budget of ``token`` in the Redis of the connection ``redis_conn_id``, one per process."""
        key = (token_key(token), redis_conn_id, float(requests_per_minute), max_in_flight)
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(
                    _redis_client(redis_conn_id),
                    token=token,
                    requests_per_minute=requests_per_minute,
                    max_in_flight=max_in_flight,
                    lease=lease,
                    description=f"Redis connection {redis_conn_id!r}",
                )
            return cls._registry[key]

    def usage(self) -> BudgetUsage:
        """What the requests of this process under this budget cost so far."""
        with self._lock:
            return self._usage

    def acquire(self, *, cancel: threading.Event | None = None) -> bool:
        """Block until the fleet's budget lets a request go; False if ``cancel`` was set first."""
        started = time.monotonic()
        while not self._turn.acquire(timeout=0.05):
            if cancel is not None and cancel.is_set():
                return False
        try:
            lease = f"{self._owner}:{uuid.uuid4().hex}"
            while True:
                verdict, value = (
                    part.decode() if isinstance(part, bytes) else str(part)
                    for part in self._call(self._acquire, self.ceiling, self.max_in_flight, lease, self.lease)
                )
                if verdict == "go":
                    break
                wait = float(value) if verdict == "wait" else self.POLL
                if cancel is None:
                    self._sleep(wait)
                elif cancel.wait(wait):
                    return False
        finally:
            self._turn.release()
        self._leases.__dict__.setdefault("stack", []).append(lease)
        with self._lock:
            self._usage = self._usage.sent(time.monotonic() - started)
        return True

    def settle(self, outcome: Outcome, *, retry_after: float | None = None) -> int:
        """Record what became of the request this thread last sent; see :meth:`RequestBudget.settle`."""
        stack: list[str] = self._leases.__dict__.get("stack", [])
        lease = stack.pop() if stack else ""
        self._call(
            self._settle,
            lease,
            outcome,
            -1 if retry_after is None else retry_after,
            self.ceiling,
            RateLimiter.DECREASE,
            RateLimiter.RECOVERY,
            RateLimiter.MIN_RATE,
        )
        with self._lock:
            self._usage = self._usage.counted(outcome)
            return self._reports.count(time.monotonic()) if outcome == "refused" else 0

    def _call(self, script: Any, *args: object) -> Any:
        from redis.exceptions import RedisError

        try:
            return script(keys=self._keys, args=list(args))
        except RedisError as err:
            raise AsanaAuditLogError(
                f"The shared request budget in {self.description} failed: {type(err).__name__} ({err}). "
                "Check that Redis is up and the connection is right, or remove budget_redis_conn_id from "
                "the Asana connection's extra to give each process a budget of its own"
            ) from err


def _redis_client(redis_conn_id: str) -> Redis:
    """The Redis client of an Airflow Redis connection; needs the Redis provider."""
    try:
        from airflow.providers.redis.hooks.redis import RedisHook
    except ImportError as err:
        raise AsanaAuditLogConfigError(
            f"budget_redis_conn_id={redis_conn_id!r} needs Airflow's Redis provider: install "
            "'airflow-provider-asana-audit[redis]', or remove budget_redis_conn_id from the connection's "
            "extra"
        ) from err
    client: Redis = RedisHook(redis_conn_id=redis_conn_id).get_conn()  # type: ignore[no-untyped-call]
    return client
