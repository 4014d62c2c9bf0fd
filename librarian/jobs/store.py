"""Job records and event streams in Redis.

Layout (every key under the configured prefix)::

    {p}job:{job_id}            hash    the job record (see :mod:`librarian.jobs.events`)
    {p}job:{job_id}:events     stream  one entry per job event, id ``<dagster storage id>-<n>``
    {p}active:{partition_key}  string  job id of the queued/running job for that URL
    {p}jobs                    zset    job ids by creation time, kept for the TTL
    {p}unfinished              zset    ids of queued and running jobs, by creation time
    {p}submit:queue            zset    job ids waiting for their run, by when to try next
    {p}submit:args             hash    job id → what to submit (URL, source, time accepted)
    {p}submit:tries            hash    job id → submission attempts so far
    {p}mirror:cursor           string  the mirror's low-water mark in Dagster's event log
    {p}mirror:stats            hash    lag of the newest mirrored event (ms), time of the write
    {p}events                  pubsub  job id published after each mirrored write
    {p}ratelimit:{bucket}:{caller}  string  a caller's rate limit (librarian_api.rate_limits)

A job is accepted before its run exists: the API issues the job id, writes the ``queued``
record, takes the URL's ``active`` claim and queues the submission, in one script for a whole
batch (which accepts none of it when it would take the unfinished jobs past the queue cap), and
answers;
a background submitter turns queued submissions into runs (tagged with the job id) and removes
them. A submission that cannot be made ends the job with one ``error`` event, id ``0-1`` (below
every id the mirror writes).

Nothing grows without bound: a finished job's record and stream expire ``ttl`` seconds after it
ended, and every write that adds to ``jobs`` (or ``unfinished``) first drops the ids created
more than ``ttl`` seconds before it (a ``ZREMRANGEBYSCORE`` in the same script), so a listing
never walks ids whose records are long gone. ``unfinished`` is the depth the queue cap reads:
a job joins it when accepted or enqueued and leaves it in the script that ends it.

Stream entry ids come from Dagster's event storage id, so a replayed event is recognised and
skipped (``last_storage_id`` in the record): the mirror's writes are exactly-once even though its
reads are at-least-once. The SSE ``id:`` is the entry id, so ``Last-Event-ID`` resumes exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from librarian.jobs.events import (
    JobError,
    JobEvent,
    JobRecord,
    JobStatus,
    record_fields,
)

# KEYS: record, stream, active, jobs-index, unfinished
# ARGV: storage_id, ttl, job_id, mode ("", "enqueued", "terminal"), record-fields JSON,
#       channel, created_at, fields-to-delete JSON, events JSON...
APPLY_EVENT_LUA = """
local sid = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_storage_id') or '-1')
if sid <= last then return 0 end
local cutoff = '(' .. (tonumber(ARGV[7]) - tonumber(ARGV[2]))
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', cutoff)
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
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[3])
elseif ARGV[4] == 'terminal' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
  redis.call('ZREM', KEYS[5], ARGV[3])
end
if #ARGV >= 9 then redis.call('PUBLISH', ARGV[6], ARGV[3]) end
return 1
"""


# KEYS: jobs-index, queue, args, unfinished, then per job: active, record
# ARGV: queue cap (0: none), record prefix, created_at, ttl, then per job: job_id,
#       record-fields JSON, args JSON
# Accepts every job whose URL no queued or running job holds, in order (a URL twice in one
# call is one job), unless the new jobs would take the unfinished jobs past the cap: then
# nothing is written. Returns {'ok', depth, holder per job} (holder: the job now holding the
# URL, ours or the unfinished one already there) or {'full', depth, new jobs refused}.
ACCEPT_LUA = """
local cap = tonumber(ARGV[1])
local now = ARGV[3]
local n = (#KEYS - 4) / 2
local function holder_of(active)
  local holder = redis.call('GET', active)
  if holder then
    local status = redis.call('HGET', ARGV[2] .. holder, 'status')
    if status == 'queued' or status == 'running' then return holder end
  end
  return nil
end
local cutoff = '(' .. (tonumber(now) - tonumber(ARGV[4]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', cutoff)
local depth = redis.call('ZCARD', KEYS[4])
if cap > 0 then
  local new, seen = 0, {}
  for i = 1, n do
    local active = KEYS[3 + 2 * i]
    if not seen[active] and not holder_of(active) then new = new + 1 end
    seen[active] = true
  end
  if new > 0 and depth + new > cap then return {'full', depth, new} end
end
local out = {'ok', depth}
for i = 1, n do
  local active, record = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local job_id, args = ARGV[2 + 3 * i], ARGV[4 + 3 * i]
  local holder = holder_of(active)
  if holder then
    table.insert(out, holder)
  else
    redis.call('SET', active, job_id)
    local flat = {}
    for k, v in pairs(cjson.decode(ARGV[3 + 3 * i])) do
      table.insert(flat, k)
      table.insert(flat, v)
    end
    redis.call('HSET', record, unpack(flat))
    redis.call('ZADD', KEYS[1], now, job_id)
    redis.call('ZADD', KEYS[2], now, job_id)
    redis.call('HSET', KEYS[3], job_id, args)
    redis.call('ZADD', KEYS[4], now, job_id)
    table.insert(out, job_id)
  end
end
return out
"""

# KEYS: queue, tries, args.  ARGV: now, lease seconds, how many.
# Leases due submissions: each is pushed ``lease`` seconds into the future, so a submitter that
# dies mid-way leaves it to be taken again (and checked against Dagster) once the lease ends.
LEASE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], id)
  local tries = redis.call('HINCRBY', KEYS[2], id, 1)
  table.insert(out, id)
  table.insert(out, tries)
  table.insert(out, redis.call('HGET', KEYS[3], id) or '')
end
return out
"""

# KEYS: record, stream, active, queue, args, tries, unfinished.  ARGV: job_id, fields JSON,
#       ttl, channel, event JSON.  Ends a job that has no run yet (its submission failed, or it
#       was cancelled first) only while it is still queued without one: a job that got a run is
#       the mirror's.
#       The record is sealed (``last_storage_id`` above any real id), so a run that an attempt
#       still made is not mirrored into a job that has already ended.
END_BEFORE_RUN_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued'
   or redis.call('HEXISTS', KEYS[1], 'run_id') == 1 then
  return 0
end
local fields = cjson.decode(ARGV[2])
local flat = {'last_storage_id', '9007199254740991'}
for k, v in pairs(fields) do
  table.insert(flat, k)
  table.insert(flat, v)
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('XADD', KEYS[2], '0-1', 'data', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
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
    def unfinished(self) -> str:
        return f"{self.prefix}unfinished"

    @property
    def submit_queue(self) -> str:
        return f"{self.prefix}submit:queue"

    @property
    def submit_args(self) -> str:
        return f"{self.prefix}submit:args"

    @property
    def submit_tries(self) -> str:
        return f"{self.prefix}submit:tries"

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
        pipe = self._r.pipeline(transaction=True)
        for w in writes:
            keys = [self.keys.record(w.job_id), self.keys.events(w.job_id),
                    self.keys.active(w.partition_key or "-"), self.keys.jobs,
                    self.keys.unfinished]
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


@dataclass(frozen=True)
class NewJob:
    """A job to accept: its id (issued by the API), URL, partition and who asked."""

    job_id: str
    url: str
    partition_key: str
    source: str
    created_at: float


class QueueFull(Exception):
    """Accepting would take the queued and running jobs past the cap: nothing was written."""

    def __init__(self, depth: int, new: int, cap: int) -> None:
        super().__init__(f"{depth} jobs queued or running, at most {cap}; {new} more refused")
        self.depth = depth
        self.new = new
        self.cap = cap


@dataclass(frozen=True)
class PendingSubmission:
    job_id: str
    url: str
    source: str
    accepted_at: float
    tries: int  # including this one: above 1, an earlier attempt may have created the run


class ApiJobStore:
    """The API's side: accepts jobs (record, claim and queued submission), reads records and
    streams, and keeps the submission queue."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.r = client
        self.keys = JobKeys(prefix)
        self._ttl = ttl_seconds
        self._accept = client.register_script(ACCEPT_LUA)
        self._lease = client.register_script(LEASE_LUA)
        self._end = client.register_script(END_BEFORE_RUN_LUA)

    async def record(self, job_id: str) -> JobRecord | None:
        raw = await self.r.hgetall(self.keys.record(job_id))
        if not raw:
            return None
        return JobRecord.from_redis({_s(k): _s(v) for k, v in raw.items()})

    async def status(self, job_id: str) -> JobStatus | None:
        raw = await self.r.hget(self.keys.record(job_id), "status")
        return JobStatus(_s(raw)) if raw is not None else None

    async def accept(self, jobs: list[NewJob], cap: int = 0) -> list[str]:
        """Accept each job, in one round trip and one script; per job, the id of the job that
        now holds its URL: its own, or the queued or running job that already did (then
        nothing is written for it). With a ``cap``, raises :class:`QueueFull` and accepts none
        when the new jobs would take the queued and running ones past it."""
        if not jobs:
            return []
        now = jobs[0].created_at
        keys = [self.keys.jobs, self.keys.submit_queue, self.keys.submit_args,
                self.keys.unfinished]
        args: list[str | int | float] = [cap, self.keys.record(""), now, self._ttl]
        for job in jobs:
            fields = record_fields(job_id=job.job_id, status=JobStatus.QUEUED, url=job.url,
                                   canonical_url=job.url, partition_key=job.partition_key,
                                   percent=0, attempt=1, created_at=job.created_at,
                                   updated_at=job.created_at)
            keys += [self.keys.active(job.partition_key), self.keys.record(job.job_id)]
            args += [job.job_id, json.dumps(fields),
                     json.dumps({"url": job.url, "source": job.source,
                                 "accepted_at": job.created_at})]
        result: Any = await self._accept(keys=keys, args=args)
        if _s(result[0]) == "full":
            raise QueueFull(int(result[1]), int(result[2]), cap)
        return [_s(holder) for holder in result[2:]]

    async def active_job(self, partition_key: str) -> tuple[str, JobStatus] | None:
        """The queued or running job that holds the URL of ``partition_key``, if any."""
        holder = await self.r.get(self.keys.active(partition_key))
        if holder is None:
            return None
        status = await self.status(_s(holder))
        if status is None or status.is_terminal:
            return None
        return _s(holder), status

    async def unfinished_jobs(self) -> int:
        """How many jobs are queued or running: the depth the queue cap is checked against."""
        return int(await self.r.zcard(self.keys.unfinished))

    async def reopen(self, job_id: str, message: str) -> None:
        """A finished job whose run was re-executed is queued again (and no longer expires);
        the mirror writes the rest as the new run's events arrive."""
        # Only a record Redis still holds: a lost one is the mirror's to write whole.
        await self.r.eval(
            "if redis.call('EXISTS', KEYS[1]) == 1 then "
            "redis.call('HSET', KEYS[1], 'status', ARGV[1], 'message', ARGV[2]) "
            "redis.call('PERSIST', KEYS[1]) redis.call('PERSIST', KEYS[2]) end return 0",
            2, self.keys.record(job_id), self.keys.events(job_id), JobStatus.QUEUED.value,
            message)

    async def lease_submissions(self, now: float, lease_seconds: float, count: int
                                ) -> list[PendingSubmission]:
        flat: Any = await self._lease(
            keys=[self.keys.submit_queue, self.keys.submit_tries, self.keys.submit_args],
            args=[now, lease_seconds, count])
        out = []
        for i in range(0, len(flat), 3):
            job_id, tries, raw = _s(flat[i]), int(flat[i + 1]), _s(flat[i + 2])
            if not raw:  # accepted by an older version, or half-removed: nothing to submit
                await self.r.zrem(self.keys.submit_queue, job_id)
                continue
            args = json.loads(raw)
            out.append(PendingSubmission(job_id=job_id, url=args["url"], source=args["source"],
                                         accepted_at=float(args["accepted_at"]), tries=tries))
        return out

    async def submitted(self, submissions: dict[str, str]) -> list[str]:
        """The runs exist (job id → run id): the submissions leave the queue. Returns the jobs
        that ended before their run was made (cancelled meanwhile): their runs must go."""
        if not submissions:
            return []
        ids = list(submissions)
        pipe = self.r.pipeline(transaction=True)
        for job_id in ids:
            pipe.hget(self.keys.record(job_id), "status")
        for job_id, run_id in submissions.items():
            pipe.hsetnx(self.keys.record(job_id), "run_id", run_id)
        pipe.zrem(self.keys.submit_queue, *ids)
        pipe.hdel(self.keys.submit_args, *ids)
        pipe.hdel(self.keys.submit_tries, *ids)
        results = await pipe.execute()
        return [job_id for job_id, status in zip(ids, results[:len(ids)], strict=True)
                if status is not None and JobStatus(_s(status)).is_terminal]

    async def retry_submission(self, job_id: str, at: float, message: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(self.keys.submit_queue, {job_id: at}, xx=True)
        pipe.hset(self.keys.record(job_id), "message", message)
        await pipe.execute()

    async def end_before_run(self, job_id: str, status: JobStatus, event: JobEvent,
                             error: JobError | None = None) -> bool:
        """End a job that has no run yet: record ``status`` (with ``error``), one terminal
        event, URL released, submission dropped. False (nothing written) if it has a run."""
        ts = event.ts
        fields = record_fields(status=status, finished_at=ts, updated_at=ts, error=error,
                               message=event.message)
        record = await self.record(job_id)
        partition = record.partition_key if record and record.partition_key else "-"
        done = await self._end(
            keys=[self.keys.record(job_id), self.keys.events(job_id),
                  self.keys.active(partition), self.keys.submit_queue, self.keys.submit_args,
                  self.keys.submit_tries, self.keys.unfinished],
            args=[job_id, json.dumps(fields), self._ttl, self.keys.channel, event.to_json()])
        return bool(done)

    async def queued_submissions(self) -> int:
        return int(await self.r.zcard(self.keys.submit_queue))

    async def job_ids(self, count: int, after: tuple[float, str] | None = None
                      ) -> list[tuple[str, float]]:
        """Up to ``count`` job ids in the index's order, newest first (by creation time; jobs
        created at the same time, as a batch is, by id descending), after ``after``: the
        (creation time, id) of the last one already seen.

        A position of two parts because a batch shares one creation time: a cursor of the
        time alone would skip the rest of a batch that a page ended inside."""
        if after is None:
            rows: Any = await self.r.zrevrangebyscore(self.keys.jobs, "+inf", "-inf", start=0,
                                                      num=count, withscores=True)
            return [(_s(job_id), float(score)) for job_id, score in rows]
        score, last = after
        out: list[tuple[str, float]] = []
        offset = 0
        while len(out) < count:
            # From the cursor's time inclusive: the ids of that time at or above the cursor's
            # id come first (Redis orders equal scores by member bytes, which for UTF-8 is the
            # order of the strings) and are skipped.
            rows = await self.r.zrevrangebyscore(self.keys.jobs, score, "-inf", start=offset,
                                                 num=count, withscores=True)
            if not rows:
                break
            offset += len(rows)
            out.extend((_s(job_id), float(s)) for job_id, s in rows
                       if not (float(s) == score and _s(job_id) >= last))
        return out[:count]

    async def statuses(self, job_ids: list[str]) -> list[str | None]:
        """Each job's status (None where Redis no longer holds the job), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.record(job_id), "status")
        return [_s(v) if v is not None else None for v in await pipe.execute()]

    async def records(self, job_ids: list[str]) -> list[JobRecord | None]:
        """Each job's record (None where Redis no longer holds it), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.record(job_id))
        return [JobRecord.from_redis({_s(k): _s(v) for k, v in raw.items()}) if raw else None
                for raw in await pipe.execute()]

    async def events_after(self, job_id: str, after: str, count: int = 500
                           ) -> list[tuple[str, JobEvent]]:
        entries: Any = await self.r.xrange(self.keys.events(job_id), min=f"({after}" if after != "0"
                                      else "-", count=count)
        return [(_s(entry_id), JobEvent.from_json(data[b"data"])) for entry_id, data in entries]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
