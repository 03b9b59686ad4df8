"""Rate limits in Redis: GCRA (per-second rate with a burst) and a daily quota, in one Lua script.

The script runs atomically in Redis, so every replica of the gateway sees the same state: no
read-modify-write race between concurrent requests. Times are integer microseconds; by default the
clock is Redis' own ``TIME`` (one clock for all replicas); tests inject ``now_us``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from gateway.tiers import Tier

US = 1_000_000
DAY_S = 86_400

# KEYS[1]: the GCRA key (theoretical arrival time, TAT); KEYS[2]: the daily-quota key's stem (the day is appended).
# ARGV: now_us ("" = Redis TIME), emission interval T in us, burst, daily quota (0 = none).
# Returns {allowed, remaining, reset_us, retry_after_us, quota_used, now_us}.
GCRA_SCRIPT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local quota = tonumber(ARGV[4])
local window = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, 0, tat - now, allow_at - now, -1, now}
end
local used = 0
local day_key = ''
if quota > 0 then
  day_key = KEYS[2] .. math.floor(now / 86400000000)
  used = tonumber(redis.call('GET', day_key) or 0)
  if used >= quota then
    local to_midnight = 86400000000 - (now % 86400000000)
    return {0, 0, to_midnight, to_midnight, used, now}
  end
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', math.ceil(window / 1000) + 1))
if quota > 0 then
  used = redis.call('INCR', day_key)
  if used == 1 then redis.call('EXPIRE', day_key, 90000) end
end
return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, 0, used, now}
"""


@dataclass(frozen=True)
class Decision:
    """The limiter's answer; the fields become the RateLimit-* and Retry-After headers."""

    allowed: bool
    limit: int  # the burst: requests admitted at once
    remaining: int
    reset_s: int  # seconds until the burst is full again (or, over quota, until the next UTC day)
    retry_after_s: int  # 0 when allowed
    quota_used: int | None = None  # requests counted today; None without a daily quota or when refused by rate
    retry_after_us: int = 0  # the exact wait, for callers that want better than whole seconds
    decided_at_us: int = 0  # the limiter's clock when it decided (Redis TIME): decisions in the order they took effect


def emission_interval_us(rps: float) -> int:
    """Microseconds between two requests at the sustained rate."""
    return max(1, round(US / rps))


class MemoryLimiter:
    """The same GCRA and daily quota in this process: local mode without Redis, one replica only.

    A line-for-line port of :data:`GCRA_SCRIPT` (tests/integration/gateway/test_limiter_redis.py feeds both the same
    request times and compares every decision). Production refuses it (gateway/config.py): replicas would
    each hold their own counts.
    """

    backend = "memory"

    def __init__(self, clock_us: Callable[[], int] | None = None) -> None:
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self._tat: dict[str, int] = {}
        self._used: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def check(self, client_id: str, tier: Tier, *, now_us: int | None = None) -> Decision:
        """Count one request of ``client_id`` against its tier."""
        now = self._clock_us() if now_us is None else now_us
        interval, burst, quota = emission_interval_us(tier.rps), tier.burst, tier.daily_quota or 0
        window = interval * burst
        with self._lock:
            tat = max(self._tat.get(client_id, now), now)
            new_tat = tat + interval
            allow_at = new_tat - window
            if allow_at > now:
                return _decision(tier, 0, 0, tat - now, allow_at - now, -1, now)
            day = (client_id, now // (DAY_S * US))
            used = 0
            if quota > 0:
                used = self._used.get(day, 0)
                if used >= quota:
                    to_midnight = DAY_S * US - now % (DAY_S * US)
                    return _decision(tier, 0, 0, to_midnight, to_midnight, used, now)
            self._tat[client_id] = new_tat
            if quota > 0:
                used = self._used[day] = used + 1
            return _decision(tier, 1, (window - (new_tat - now)) // interval, new_tat - now, 0, used, now)

    def ping(self) -> bool:
        return True


def _decision(
    tier: Tier, allowed: int, remaining: int, reset_us: int, retry_us: int, used: int, now_us: int
) -> Decision:
    """The script's reply as a :class:`Decision` (one conversion for both limiters)."""
    return Decision(
        allowed=bool(allowed),
        limit=tier.burst,
        remaining=max(0, remaining),
        reset_s=math.ceil(reset_us / US),
        retry_after_s=math.ceil(retry_us / US),
        quota_used=used if used >= 0 and tier.daily_quota else None,
        retry_after_us=retry_us,
        decided_at_us=now_us,
    )


class RedisLimiter:
    """GCRA plus daily quota per client, shared through Redis by every gateway replica."""

    backend = "redis"

    def __init__(self, client: redis.Redis, *, prefix: str = "cv:gw:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(GCRA_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float, prefix: str) -> RedisLimiter:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, prefix=prefix)

    def check(self, client_id: str, tier: Tier, *, now_us: int | None = None) -> Decision:
        """Count one request of ``client_id`` against its tier.

        Raises:
            redis.RedisError: Redis is unreachable; the caller applies the fail-open/closed setting.
        """
        # One hash tag for both keys: the script also touches the day's quota key it derives from KEYS[2], which
        # Redis Cluster allows only in the slot of the declared keys.
        keys = [f"{self._prefix}rate:{{{client_id}}}", f"{self._prefix}quota:{{{client_id}}}:"]
        args: list[str | int] = [
            "" if now_us is None else str(now_us),
            emission_interval_us(tier.rps),
            tier.burst,
            tier.daily_quota or 0,
        ]
        allowed, remaining, reset_us, retry_us, used, now = (int(v) for v in self._script(keys=keys, args=args))
        return _decision(tier, allowed, remaining, reset_us, retry_us, used, now)

    def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False
