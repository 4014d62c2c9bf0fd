"""The API's limits over real HTTP (uvicorn on 127.0.0.1) and real Redis: submission and search
rates, the queue cap, caps on open event streams, the TTL trim of the jobs index and a bounded
jobs listing, and the bounds on what a request may ask for.

Each API here has a Redis prefix of its own, so the counts it starts from are its own. Dagster
is absent (a port where nothing listens) with a long grace, so submissions are accepted and
wait in the queue. Other callers connect from other loopback addresses (127.0.0.2, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis
import uvicorn

from librarian.cli.local_servers import free_port
from librarian.jobs.events import EventType, JobStatus
from librarian.jobs.store import ApiJobStore, JobKeys, MirrorJobStore, MirrorWrite, NewJob
from librarian.settings import Settings
from librarian_api.app import create_app
from tests.integration.test_jobs_api import _sse, _write
from tests.support.servers import api_in_thread


def _limited(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={
        "dagster_port": free_port(), "submit_grace_seconds": 600.0,
        "redis_prefix": f"{settings.redis_prefix}limits-{uuid.uuid4().hex[:8]}:", **changes})


def _client(address: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from ``address``: another caller."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=15)


def _url(tag: str) -> str:
    return f"https://{tag}.example/{uuid.uuid4()}"


def test_submissions_past_the_rate_get_429_with_retry_after_and_pass_again_after_it(
        settings: Settings) -> None:
    limited = _limited(settings, rate_limit_submissions_per_minute=60.0,
                       rate_limit_submissions_burst=3)
    with api_in_thread(limited) as api, _client() as me, _client("127.0.0.2") as other:
        # A batch counts each of its URLs: two of the burst of three.
        batch = me.post(f"{api}/api/v1/ingest/batch", json={"urls": [_url("rate"), _url("rate")]})
        assert batch.status_code == 202, batch.text
        assert me.post(f"{api}/api/v1/ingest", json={"url": _url("rate")}).status_code == 202
        refused = me.post(f"{api}/api/v1/ingest", json={"url": _url("rate")})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_requests"
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2  # one URL a second: the next one passes within a second
        # Another caller has a rate of its own.
        assert other.post(f"{api}/api/v1/ingest", json={"url": _url("rate")}).status_code == 202
        # A batch larger than the burst could never pass: a 422 that says so, not a wait.
        too_big = me.post(f"{api}/api/v1/ingest/batch",
                          json={"urls": [_url("rate") for _ in range(4)]})
        assert too_big.status_code == 422
        assert "at most 3" in too_big.json()["error"]["message"]
        time.sleep(wait)
        again = me.post(f"{api}/api/v1/ingest", json={"url": _url("rate")})
        assert again.status_code == 202, again.text


def test_searches_past_the_rate_get_429(settings: Settings) -> None:
    limited = _limited(settings, rate_limit_searches_per_minute=60.0,
                       rate_limit_searches_burst=2)
    with api_in_thread(limited) as api, _client() as me:
        # Every search request counts, checked first (these two are refused for their mode).
        for _ in range(2):
            answer = me.get(f"{api}/api/v1/search", params={"q": "tomatoes", "mode": "x"})
            assert answer.status_code == 422
        refused = me.get(f"{api}/api/v1/search", params={"q": "tomatoes", "mode": "x"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert int(refused.headers["retry-after"]) >= 1


def test_submissions_past_the_queue_cap_are_refused_whole_with_503_queue_full(
        settings: Settings, sync_redis: redis.Redis) -> None:
    limited = _limited(settings, queue_max_jobs=5)
    keys = JobKeys(limited.redis_prefix)
    with api_in_thread(limited) as api, _client() as me:
        first = me.post(f"{api}/api/v1/ingest/batch",
                        json={"urls": [_url("cap") for _ in range(4)]})
        assert first.status_code == 202 and first.json()["accepted"] == 4
        jobs = [r["job_id"] for r in first.json()["results"]]
        # Two more would make six: the batch is refused whole, and says how full the queue is.
        over = me.post(f"{api}/api/v1/ingest/batch", json={"urls": [_url("cap"), _url("cap")]})
        assert over.status_code == 503, over.text
        error = over.json()["error"]
        assert error["code"] == "queue_full"
        assert "4 jobs are queued or running, at most 5" in error["message"]
        assert int(over.headers["retry-after"]) == 30
        assert sync_redis.zcard(keys.jobs) == 4 and sync_redis.zcard(keys.unfinished) == 4
        # A URL whose job is already queued adds nothing: it is answered with that job.
        again = me.post(f"{api}/api/v1/ingest",
                        json={"url": first.json()["results"][0]["url"]})
        assert again.status_code == 200 and again.json()["job_id"] == jobs[0]
        assert me.post(f"{api}/api/v1/ingest", json={"url": _url("cap")}).status_code == 202
        full = me.post(f"{api}/api/v1/ingest", json={"url": _url("cap")})
        assert full.status_code == 503 and full.json()["error"]["code"] == "queue_full"
        # A job that ends leaves room for one more.
        cancelled = me.post(f"{api}/api/v1/ingest/{jobs[1]}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        assert sync_redis.zcard(keys.unfinished) == 4
        assert me.post(f"{api}/api/v1/ingest", json={"url": _url("cap")}).status_code == 202


def _open_stream(client: httpx.Client, url: str) -> httpx.Response:
    return client.send(client.build_request("GET", url), stream=True)


def _open_streams(client: httpx.Client, api: str) -> int:
    health = client.get(f"{api}/api/v1/health").json()
    opened: int = health["streams"]["open"]
    return opened


def _wait_for_open_streams(client: httpx.Client, api: str, expected: int) -> None:
    deadline = time.monotonic() + 10
    while (opened := _open_streams(client, api)) != expected:
        assert time.monotonic() < deadline, f"{opened} streams open, not {expected}"
        time.sleep(0.1)


def test_streams_past_the_caps_are_refused_before_they_start_and_ended_ones_free_a_slot(
        settings: Settings, sync_redis: redis.Redis) -> None:
    limited = _limited(settings, sse_max_streams_per_caller=2, sse_max_streams=3,
                       sse_heartbeat_seconds=1.0)
    store = MirrorJobStore(sync_redis, limited.redis_prefix, 3600)
    job = str(uuid.uuid4())
    _write(store, job, 1, EventType.JOB_STARTED, status=JobStatus.RUNNING)
    with (api_in_thread(limited) as api, _client() as me, _client("127.0.0.2") as other,
          _client("127.0.0.3") as third):
        url = f"{api}/api/v1/stream/{job}"
        mine = [_open_stream(me, url), _open_stream(me, url)]
        assert [r.status_code for r in mine] == [200, 200]
        refused = _open_stream(me, url)
        refused.read()
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/json"
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert int(refused.headers["retry-after"]) >= 1
        theirs = _open_stream(other, url)  # another caller: its own cap, the process's third
        assert theirs.status_code == 200
        full = _open_stream(third, url)
        full.read()
        assert full.status_code == 503 and full.json()["error"]["code"] == "streams_full"
        assert _open_streams(me, api) == 3
        # The client goes away: its stream ends and gives the slot back.
        mine[0].close()
        _wait_for_open_streams(me, api, 2)
        mine[0] = _open_stream(me, url)
        assert mine[0].status_code == 200
        # The job ends: every stream sends the terminal event, ends and gives its slot back.
        _write(store, job, 2, EventType.JOB_COMPLETED, mode="terminal",
               status=JobStatus.COMPLETED)
        for response in (*mine, theirs):
            events = [e.get("event") for e in _sse(response.read().decode())]
            assert events[-1] == "job_completed"
            response.close()
        _wait_for_open_streams(me, api, 0)


def test_streams_ended_by_a_server_shutdown_give_their_slots_back(
        settings: Settings, sync_redis: redis.Redis) -> None:
    from sse_starlette.sse import AppStatus

    limited = _limited(settings, sse_max_streams_per_caller=5, sse_heartbeat_seconds=1.0)
    store = MirrorJobStore(sync_redis, limited.redis_prefix, 3600)
    job = str(uuid.uuid4())
    _write(store, job, 7, EventType.JOB_STARTED, status=JobStatus.RUNNING)
    app = create_app(limited)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    try:
        with _client() as me:
            streams = [_open_stream(me, f"http://127.0.0.1:{port}/api/v1/stream/{job}")
                       for _ in range(3)]
            assert [r.status_code for r in streams] == [200] * 3
            assert app.state.librarian.streams.open == 3
            # What uvicorn's SIGTERM handler sets (sse-starlette hooks it to end its streams).
            AppStatus.should_exit = True
            for response in streams:
                events = [e.get("event") for e in _sse(response.read().decode())]
                assert events[-1] == "server_shutdown"
                response.close()
        deadline = time.monotonic() + 10
        while app.state.librarian.streams.open:
            assert time.monotonic() < deadline, "the slots of ended streams were not given back"
            time.sleep(0.05)
    finally:
        AppStatus.should_exit = False
        server.should_exit = True
        thread.join(10)


def _apply(store: MirrorJobStore, job_id: str, created_at: float) -> None:
    store.apply([MirrorWrite(job_id=job_id, storage_id=1, partition_key=f"pk-{job_id}",
                             fields={"job_id": job_id, "status": "queued",
                                     "url": "https://trim.example/"},
                             events=[], mode="enqueued", created_at=created_at)],
                cursor=store.cursor())


def test_the_jobs_index_drops_ids_older_than_the_ttl_on_every_write(
        settings: Settings, sync_redis: redis.Redis, redis_url: str) -> None:
    prefix = f"{settings.redis_prefix}trim-{uuid.uuid4().hex[:8]}:"
    ttl = 3600
    keys = JobKeys(prefix)
    unfinished = f"{prefix}unfinished"  # the queued and running jobs the queue cap counts
    now = time.time()
    old = {f"old-{i}": now - ttl - 60 - i for i in range(2000)}
    recent = {f"recent-{i}": now - ttl + 60 + i for i in range(10)}
    sync_redis.zadd(keys.jobs, {**old, **recent})
    sync_redis.zadd(unfinished, {"stuck": now - ttl - 60, "recent-0": now - ttl + 60})

    # The mirror's write trims.
    store = MirrorJobStore(sync_redis, prefix, ttl)
    _apply(store, "mirrored", now)
    left = {m.decode() for m in sync_redis.zrange(keys.jobs, 0, -1)}
    assert left == set(recent) | {"mirrored"}
    assert {m.decode() for m in sync_redis.zrange(unfinished, 0, -1)} == {
        "recent-0", "mirrored"}

    # So does the API's accept.
    sync_redis.zadd(keys.jobs, old)

    async def accept() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await ApiJobStore(client, prefix, ttl).accept([NewJob(
                job_id="accepted", url="https://trim.example/a", partition_key="pk-accepted",
                source="api", created_at=time.time())])
        finally:
            await client.aclose()

    asyncio.run(accept())
    left = {m.decode() for m in sync_redis.zrange(keys.jobs, 0, -1)}
    assert left == set(recent) | {"mirrored", "accepted"}


@contextlib.contextmanager
def _commands_on(redis_url: str, marker: str) -> Iterator[list[str]]:
    """Every command Redis runs that names ``marker``, while the block runs (MONITOR)."""
    seen: list[str] = []
    stop = f"{marker}monitor-stop"
    ready = threading.Event()

    def watch() -> None:
        client = redis.Redis.from_url(redis_url)
        with client.monitor() as monitor:
            ready.set()
            while True:
                command = monitor.next_command()["command"]
                if stop in command:
                    break
                if marker in command:
                    seen.append(command)
        client.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(10)
    time.sleep(0.2)  # MONITOR is on once the server answered it
    try:
        yield seen
    finally:
        poke = redis.Redis.from_url(redis_url)
        poke.get(stop)
        poke.close()
        thread.join(10)


def test_a_filtered_listing_over_50000_jobs_reads_a_bounded_slice_and_pages_on(
        settings: Settings, sync_redis: redis.Redis, redis_url: str) -> None:
    limited = _limited(settings)
    keys = JobKeys(limited.redis_prefix)
    now = time.time()
    total = 50_000
    ids = [str(uuid.uuid4()) for _ in range(total)]  # newest first
    pipe = sync_redis.pipeline(transaction=False)
    for i, job_id in enumerate(ids):
        status = "failed" if i >= total - 3 else "completed"  # the 3 oldest failed
        pipe.hset(keys.record(job_id), mapping={"job_id": job_id, "status": status,
                                                "url": f"https://big.example/{i}"})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    # Batches of 500 share their creation time, as a submitted batch does.
    for start in range(0, total, 10_000):
        sync_redis.zadd(keys.jobs, {ids[i]: now - i // 500 for i in range(start, start + 10_000)})

    with api_in_thread(limited) as api, _client() as me:
        with _commands_on(redis_url, f"{limited.redis_prefix}job:") as reads:
            started = time.monotonic()
            page = me.get(f"{api}/api/v1/jobs", params={"status": "failed", "limit": 20})
            took = time.monotonic() - started
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["jobs"] == [] and body["next_cursor"] and body["examined"] == 1000
        assert took < 1.0, f"{took:.2f} s"
        assert 0 < len(reads) <= 1000, f"{len(reads)} reads of job records"
        # Following the cursor finds the failed jobs, each once, in order.
        found: list[str] = []
        pages = 1
        while body["next_cursor"]:
            page = me.get(f"{api}/api/v1/jobs", params={
                "status": "failed", "limit": 20, "cursor": body["next_cursor"]})
            assert page.status_code == 200, page.text
            body = page.json()
            found.extend(job["job_id"] for job in body["jobs"])
            pages += 1
            assert pages <= 51
        assert found == sorted(ids[-3:], reverse=True)  # one creation time: by id, descending


def test_paging_through_jobs_created_together_skips_and_repeats_none(
        settings: Settings, sync_redis: redis.Redis) -> None:
    limited = _limited(settings)
    keys = JobKeys(limited.redis_prefix)
    now = time.time()
    ids = [str(uuid.uuid4()) for _ in range(1200)]
    pipe = sync_redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hset(keys.record(job_id), mapping={"job_id": job_id, "status": "queued",
                                                "url": "https://batch.example/"})
    pipe.execute()
    # Three batches: 500, 500 and 200 jobs, each created at one time.
    sync_redis.zadd(keys.jobs, {job_id: now - i // 500 for i, job_id in enumerate(ids)})
    expected = [m.decode() for m in sync_redis.zrevrange(keys.jobs, 0, -1)]
    with api_in_thread(limited) as api, _client() as me:
        listed: list[str] = []
        cursor = None
        for _ in range(20):
            params: dict[str, Any] = {"limit": 70}
            if cursor:
                params["cursor"] = cursor
            body = me.get(f"{api}/api/v1/jobs", params=params).json()
            listed.extend(job["job_id"] for job in body["jobs"])
            cursor = body["next_cursor"]
            if not cursor:
                break
    assert listed == expected


def test_what_a_request_may_ask_for_is_bounded_with_clear_4xx(
        settings: Settings) -> None:
    limited = _limited(settings)
    with api_in_thread(limited) as api, _client() as me:
        def error(path: str, **kwargs: Any) -> tuple[int, str]:
            response = me.get(f"{api}/api/v1/{path}", **kwargs)
            return response.status_code, response.json()["error"]["code"]

        domains = ",".join(f"d{i}.example" for i in range(21))
        assert error("library", params={"domain": domains}) == (422, "invalid_filter")
        assert error("library", params={"tier": "A" * 201}) == (422, "invalid_filter")
        assert error("library", params={"q": "x" * 1001}) == (422, "invalid_query")
        assert error("jobs", params={"limit": 0}) == (422, "invalid_limit")
        assert error("jobs", params={"limit": 1000}) == (422, "invalid_limit")
        assert error("jobs", params={"cursor": "not-a-cursor"}) == (422, "invalid_cursor")
        assert error(f"stream/{uuid.uuid4()}",
                     headers={"Last-Event-ID": "9" * 25 + "-0"}) == (400, "invalid_last_event_id")
        assert error("ingest/" + "x" * 5000) == (404, "job_not_found")
