"""Job records and event streams in Redis.

Layout (every key under the configured prefix)::

    {p}job:{job_id}            hash    the job record (see :mod:`librarian.jobs.events`)
    {p}job:{job_id}:events     stream  one entry per job event, id ``<dagster storage id>-<n>``
    {p}active:{partition_key}  string  job id of the queued/running job for that URL
    {p}jobs                    zset    job ids by creation time
    {p}mirror:cursor           string  the mirror's low-water mark in Dagster's event log
    {p}mirror:stats            hash    lag of the newest mirrored event (ms), time of the write
    {p}events                  pubsub  job id published after each mirrored write

Stream entry ids come from Dagster's event storage id, so a replayed event is recognised and
skipped (``last_storage_id`` in the record): the mirror's writes are exactly-once even though its
reads are at-least-once. The SSE ``id:`` is the entry id, so ``Last-Event-ID`` resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from librarian.jobs.events import JobEvent, JobRecord, JobStatus, record_fields

# KEYS: record, stream, active, jobs-index
# ARGV: storage_id, ttl, job_id, mode ("", "enqueued", "terminal"), record-fields JSON,
#       channel, created_at, fields-to-delete JSON, events JSON...
APPLY_EVENT_LUA = """
local sid = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_storage_id') or '-1')
if sid <= last then return 0 end
local fields = cjson.decode(ARGV[5])
local flat = {'last_storage_id', ARGV[1]}
for k, v in pairs(fields) do
  table.insert(flat, k)
  table.insert(flat, v)
end
redis.call('HSET', KEYS[1], unpack(flat))
for _, name in ipairs(cjson.decode(ARGV[8])) do redis.call('HDEL', KEYS[1], name) end
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[7])
if ARGV[4] == 'enqueued' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[3])
else
  redis.call('ZADD', KEYS[4], 'NX', ARGV[7], ARGV[3])
end
for i = 9, #ARGV do
  redis.call('XADD', KEYS[2], sid .. '-' .. (i - 9), 'data', ARGV[i])
end
if ARGV[4] == 'enqueued' then
  redis.call('SET', KEYS[3], ARGV[3], 'NX')
elseif ARGV[4] == 'terminal' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
end
if #ARGV >= 9 then redis.call('PUBLISH', ARGV[6], ARGV[3]) end
return 1
"""


@dataclass(frozen=True)
class JobKeys:
    prefix: str

    def record(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def active(self, partition_key: str) -> str:
        return f"{self.prefix}active:{partition_key}"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def mirror_cursor(self) -> str:
        return f"{self.prefix}mirror:cursor"

    @property
    def mirror_stats(self) -> str:
        return f"{self.prefix}mirror:stats"

    @property
    def channel(self) -> str:
        return f"{self.prefix}events"


@dataclass(frozen=True)
class MirrorWrite:
    """What one Dagster event does to one job: record fields, new events, lifecycle mode."""

    job_id: str
    storage_id: int
    partition_key: str | None
    fields: dict[str, str]
    events: list[JobEvent]
    mode: str = ""  # "", "enqueued" or "terminal"
    created_at: float = 0.0
    clear: tuple[str, ...] = ()  # record fields to delete


class MirrorJobStore:
    """The mirror's side: applies translated events idempotently, keeps the cursor."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self._r = client
        self.keys = JobKeys(prefix)
        self._ttl = ttl_seconds
        self._apply = client.register_script(APPLY_EVENT_LUA)

    def cursor(self) -> int:
        value = self._r.get(self.keys.mirror_cursor)
        return int(value) if value is not None else 0  # storage ids start at 1

    def apply(self, writes: list[MirrorWrite], cursor: int,
              stats: dict[str, float] | None = None) -> None:
        """Apply ``writes`` and move the cursor to ``cursor`` in one MULTI/EXEC; ``stats``
        (lag of the newest event, time of the write) go to ``{p}mirror:stats``."""
        import json

        pipe = self._r.pipeline(transaction=True)
        for w in writes:
            keys = [self.keys.record(w.job_id), self.keys.events(w.job_id),
                    self.keys.active(w.partition_key or "-"), self.keys.jobs]
            args: list[str | int | float] = [
                w.storage_id, self._ttl, w.job_id, w.mode, json.dumps(w.fields),
                self.keys.channel, w.created_at, json.dumps(list(w.clear)),
            ]
            args.extend(e.to_json() for e in w.events)
            self._apply(keys=keys, args=args, client=pipe)
        pipe.set(self.keys.mirror_cursor, cursor)
        if stats:
            fields: dict[str, float | int] = {**stats, "cursor": cursor}
            pipe.hset(self.keys.mirror_stats, mapping=fields)  # type: ignore[arg-type]
        pipe.execute()

    def record(self, job_id: str) -> JobRecord | None:
        raw = self._r.hgetall(self.keys.record(job_id))
        if not raw:
            return None
        return JobRecord.from_redis({_s(k): _s(v) for k, v in raw.items()})

    def non_terminal_job_ids(self, limit: int = 1000) -> list[str]:
        ids = [_s(v) for v in self._r.zrevrange(self.keys.jobs, 0, limit - 1)]
        out = []
        for job_id in ids:
            status = self._r.hget(self.keys.record(job_id), "status")
            if status is not None and not JobStatus(_s(status)).is_terminal:
                out.append(job_id)
        return out


class ApiJobStore:
    """The API's side: reads records and streams, creates the initial ``queued`` record."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.keys = JobKeys(prefix)

    async def record(self, job_id: str) -> JobRecord | None:
        raw = await self.r.hgetall(self.keys.record(job_id))
        if not raw:
            return None
        return JobRecord.from_redis({_s(k): _s(v) for k, v in raw.items()})

    async def create_queued(self, record: JobRecord) -> None:
        """Write the initial record without overwriting what the mirror may already have written."""
        key = self.keys.record(record.job_id)
        pipe = self.r.pipeline(transaction=True)
        fields = record_fields(**record.model_dump(exclude={"error", "result"}))
        for field, value in fields.items():
            pipe.hsetnx(key, field, value)
        pipe.zadd(self.keys.jobs, {record.job_id: record.created_at or 0}, nx=True)
        await pipe.execute()

    async def claim_url(self, partition_key: str, token: str, seconds: int) -> str | None:
        """Claim the right to submit ``partition_key``; return the current holder if taken."""
        key = self.keys.active(partition_key)
        if await self.r.set(key, token, nx=True, ex=seconds):
            return None
        holder = await self.r.get(key)
        return _s(holder) if holder is not None else None

    async def set_active(self, partition_key: str, token: str, job_id: str) -> bool:
        """Turn our claim into the job id; False if the claim expired and someone else holds it."""
        done = await self.r.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) "
            "return 1 end return 0", 1, self.keys.active(partition_key), token, job_id)
        return bool(done)

    async def release_url(self, partition_key: str, token: str) -> None:
        key = self.keys.active(partition_key)
        # Compare-and-delete, so a claim that already moved on is not dropped.
        await self.r.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
            "end return 0", 1, key, token)

    async def job_ids(self, limit: int, before: float | None = None
                      ) -> list[tuple[str, float]]:
        """Job ids newest first (by creation time), older than ``before`` if given."""
        high = f"({before}" if before is not None else "+inf"
        rows: Any = await self.r.zrevrangebyscore(self.keys.jobs, high, "-inf", start=0,
                                                  num=limit, withscores=True)
        return [(_s(job_id), float(score)) for job_id, score in rows]

    async def events_after(self, job_id: str, after: str, count: int = 500
                           ) -> list[tuple[str, JobEvent]]:
        entries: Any = await self.r.xrange(self.keys.events(job_id), min=f"({after}" if after != "0"
                                      else "-", count=count)
        return [(_s(entry_id), JobEvent.from_json(data[b"data"])) for entry_id, data in entries]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
