"""SSE fan-out: N concurrent streams on one API worker, events published at a steady rate.

    .venv/bin/python bench/sse_fanout.py [--clients 100 1000 5000] [--seconds 15] [--rate 50]

Starts one uvicorn worker of the API (real Redis on 127.0.0.1:6379 under a fresh key prefix, or
a private server), opens N streams (10 per job) from a light asyncio client in this process, and
publishes ``stage_progress`` events through the mirror's own write path (Lua script + PUBLISH)
at ``--rate`` events/s, each carrying its publish time. Reports delivery latency (publish →
client) p50/p95/p99, events delivered, and the API process's RSS and CPU over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librarian.cli.local_servers import EmbeddedRedis, free_port, port_open
from librarian.jobs.events import EventType, JobEvent, JobStatus, record_fields
from librarian.jobs.store import MirrorJobStore, MirrorWrite

CLIENTS_PER_JOB = 10


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of a process."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if line.startswith("VmRSS"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss / 1024, (int(fields[11]) + int(fields[12])) / ticks


async def client(port: int, job: str, latencies: list[float], ready: asyncio.Event,
                 settled: asyncio.Event, opened: list[int], stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/v1/stream/{job} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    opened[0] += 1
    if opened[0] == opened[1]:
        ready.set()
    greeted = False
    try:
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            if not greeted and line.startswith(b"data:"):
                greeted = True  # the replayed job_started: this stream is set up
                opened[2] += 1
                if opened[2] == opened[1]:
                    settled.set()
            if line.startswith(b"data:") and b'"bench"' in line:
                # chunked framing may precede; the JSON is the rest of the line
                payload = json.loads(line[5:].strip())
                latencies.append(time.time() - payload["ts"])
    finally:
        writer.close()


def publish(store: MirrorJobStore, job: str, sid: int) -> None:
    event = JobEvent(type=EventType.STAGE_PROGRESS, job_id=job, stage="extract",
                     message="bench", ts=time.time())
    store.apply([MirrorWrite(job_id=job, storage_id=sid, partition_key=None,
                             fields=record_fields(status=JobStatus.RUNNING), events=[event])],
                store.cursor())


async def run_level(port: int, store: MirrorJobStore, api_pid: int, clients: int,
                    seconds: float, rate: float) -> dict[str, float]:
    jobs = [f"bench-{uuid.uuid4()}" for _ in range(max(1, clients // CLIENTS_PER_JOB))]
    sid = 1
    for job in jobs:
        store.apply([MirrorWrite(job_id=job, storage_id=sid, partition_key=None,
                                 fields=record_fields(job_id=job, url="http://bench/",
                                                      status=JobStatus.RUNNING),
                                 events=[JobEvent(type=EventType.JOB_STARTED, job_id=job)])],
                    store.cursor())
    latencies: list[float] = []
    ready, settled, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    opened = [0, clients, 0]  # connected, wanted, set up (first event received)
    tasks = [asyncio.create_task(client(port, jobs[i % len(jobs)], latencies, ready, settled,
                                        opened, stop)) for i in range(clients)]
    await asyncio.wait_for(ready.wait(), 120)
    # Measure only once the streams are set up (each replayed its first event): the set-up
    # storm of thousands of connections is not what this bench measures.
    deadline = time.monotonic() + 120
    while opened[2] < clients and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    rss0, cpu0 = proc_stats(api_pid)
    started = time.monotonic()
    published = 0
    sid = 10
    while time.monotonic() - started < seconds:
        publish(store, random.choice(jobs), sid)
        sid += 1
        published += 1
        await asyncio.sleep(max(0.0, started + published / rate - time.monotonic()))
    await asyncio.sleep(1.0)
    rss1, cpu1 = proc_stats(api_pid)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ms = sorted(x * 1000 for x in latencies)

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))] if ms else float("nan")

    return {"clients": clients, "set_up": opened[2], "events_published": published,
            "deliveries": len(ms),
            "expected": published * CLIENTS_PER_JOB if clients >= CLIENTS_PER_JOB else published,
            "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "mean_ms": statistics.fmean(ms) if ms else float("nan"),
            "rss_mb": rss1, "rss_growth_mb": rss1 - rss0,
            "cpu_pct": (cpu1 - cpu0) / (time.monotonic() - started) * 100}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=float, default=50)
    args = parser.parse_args()
    raise_fd_limit()
    server = None
    if port_open("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
    else:
        server = EmbeddedRedis(Path(f"/tmp/librarian-bench-redis-{os.getpid()}"), free_port())
        server.start()
        redis_url = server.url
    prefix = f"bench-sse:{uuid.uuid4().hex[:8]}:"
    port = free_port()
    # Streams, not authentication, are measured (the API listens on 127.0.0.1 only).
    env = {**os.environ, "LIBRARIAN_REDIS_URL": redis_url, "LIBRARIAN_REDIS_PREFIX": prefix,
           "LIBRARIAN_SSE_HEARTBEAT_SECONDS": "15", "LIBRARIAN_AUTH": "off",
           # Thousands of streams from one address is the point here: no stream caps.
           "LIBRARIAN_SSE_MAX_STREAMS_PER_CALLER": "0", "LIBRARIAN_SSE_MAX_STREAMS": "0"}
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "librarian_api.app:create_app",
                            "--factory", "--port", str(port), "--log-level", "warning",
                            "--backlog", "8192"], env=env, preexec_fn=raise_fd_limit)
    client_redis = redis.Redis.from_url(redis_url)
    store = MirrorJobStore(client_redis, prefix, 3600)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and api.poll() is None, "API did not start"
            time.sleep(0.1)
        rows = [asyncio.run(run_level(port, store, api.pid, n, args.seconds, args.rate))
                for n in args.clients]
    finally:
        api.terminate()
        api.wait(20)
        keys = list(client_redis.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client_redis.delete(*keys)
        if server:
            server.stop()
    print(f"{'streams/set up':>11} {'events':>7} {'delivered':>10} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'RSS MB':>7} {'CPU %':>6}")
    for r in rows:
        print(f"{r['clients']:5.0f}/{r['set_up']:<5.0f} {r['events_published']:7.0f} "
              f"{r['deliveries']:>6.0f}/{r['expected']:<5.0f} {r['p50_ms']:7.1f} "
              f"{r['p95_ms']:7.1f} {r['p99_ms']:7.1f} {r['rss_mb']:7.0f} {r['cpu_pct']:6.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
