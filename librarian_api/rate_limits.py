"""Rate limits per caller, in Redis: URLs submitted and searches made, each a rate per minute
with a burst, refused with ``429 too_many_requests`` and the exact ``Retry-After``.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp):
each caller's key holds its "theoretical arrival time" (TAT), when it would be back to a full
burst. A request of ``cost`` units moves the TAT ``cost`` emission intervals (60 s / rate)
forward; it is allowed while the new TAT is at most ``burst`` intervals ahead of now, else
refused, and the time until it would be allowed is exact for that cost. One Lua script reads
Redis's own clock, decides and writes, so it is atomic across every API process and costs one
round trip; the key is one short string that expires when the caller is back to a full burst.

Why not the ``limits`` package: its asyncio Redis storage does work with redis-py's client and
our connection pool, but its strategies are windows without a burst separate from the rate
(600 a minute means 600 at once), its moving window keeps one list entry per unit (a batch of
500 URLs is 500 entries), and the retry time takes a second round trip and tells when one unit
frees, not when the refused batch would fit. GCRA gives rate, burst, cost per request and an
exact ``Retry-After`` in a dozen lines.

Keys: ``{prefix}ratelimit:{bucket}:{caller}``. A bucket whose rate is 0 is not limited.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request

from librarian.errors import ErrorCode
from librarian.settings import Settings
from librarian_api.callers import caller_key
from librarian_api.errors import ApiError

# KEYS: the caller's TAT.  ARGV: emission interval (s), burst (units), cost (units).
# Returns {1, remaining units} when allowed, {0, seconds until it would be} when refused; as
# strings, since Redis would truncate a Lua number to an integer. The 1e-4 s of slack absorbs
# the rounding of a TAT (about 1.8e9 s) stored with six decimals.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost * interval
local ahead = new_tat - now
if ahead > burst * interval + 1e-4 then
  return {0, tostring(ahead - burst * interval)}
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
           math.max(1, math.ceil(ahead * 1000)))
return {1, tostring(math.floor((burst * interval - ahead) / interval + 1e-4))}
"""


class Bucket(enum.StrEnum):
    SUBMISSIONS = "submissions"
    SEARCHES = "searches"


@dataclass(frozen=True)
class Rate:
    per_minute: float
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute


class RateLimits:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._r = client
        self._prefix = f"{settings.redis_prefix}ratelimit:"
        self._gcra = client.register_script(GCRA_LUA)
        self.rates = {
            Bucket.SUBMISSIONS: Rate(settings.rate_limit_submissions_per_minute,
                                     settings.rate_limit_submissions_burst),
            Bucket.SEARCHES: Rate(settings.rate_limit_searches_per_minute,
                                  settings.rate_limit_searches_burst),
        }

    async def take(self, bucket: Bucket, caller: str, cost: int = 1) -> None:
        """Count ``cost`` units for ``caller``; raise ``too_many_requests`` if over its rate."""
        rate = self.rates[bucket]
        if rate.per_minute <= 0 or cost <= 0:
            return
        if cost > rate.burst:  # could never pass: a 422 that says so, not a 429 to wait out
            raise ApiError(ErrorCode.INVALID_REQUEST,
                           f"{cost} {_units(bucket)} in one request is more than the rate "
                           f"limit's burst of {rate.burst}; send at most {rate.burst} at once")
        result: Any = await self._gcra(keys=[f"{self._prefix}{bucket.value}:{caller}"],
                                       args=[repr(rate.interval), rate.burst, cost])
        allowed, value = int(result[0]), float(result[1])
        if not allowed:
            raise ApiError(ErrorCode.TOO_MANY_REQUESTS,
                           f"too many {_units(bucket)}: at most {rate.per_minute:g} a minute "
                           f"(bursts of {rate.burst}); try again in {value:.1f} s",
                           retry_after=value)


def _units(bucket: Bucket) -> str:
    return "URLs submitted" if bucket == Bucket.SUBMISSIONS else "searches"


async def take(request: Request, bucket: Bucket, cost: int = 1) -> None:
    """Count a request against its caller's rate (``request.app``'s limits)."""
    limits: RateLimits = request.app.state.librarian.rate_limits
    await limits.take(bucket, caller_key(request), cost)
