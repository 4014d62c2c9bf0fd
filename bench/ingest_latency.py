"""Ingestion latency and throughput: the whole stack against the bare pipeline functions.

    .venv/bin/python bench/ingest_latency.py [--runs 10] [--burst 20]

Starts the stack exactly as ``make run`` does (on isolated databases of the PostgreSQL on
127.0.0.1:5432 and a key prefix of the Redis on :6379, or private servers if none answer),
serves generated ~50 KB article pages from 127.0.0.1, then measures in the same script:

* floor: fetch → extract → transform → load as plain function calls in this process, per page;
* sequential: POST /api/v1/ingest → ``job_completed`` on the SSE stream, one URL at a time;
* burst: ``--burst`` URLs submitted at once, until the last completes (URLs/min).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librarian.canonical_url import canonicalize
from librarian.catalog import Catalog, NewVersion, item_id_for, migrate
from librarian.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open
from librarian.embedder import Embedder
from librarian.object_store import LocalObjectStore, version_prefix
from librarian.stack import Stack, StackPorts
from librarian.vector_store import ChunkPoint, VectorStore
from librarian_assets.extract import extract_content
from librarian_assets.fetch import Fetcher, FetchLimits
from librarian_assets.transform import enrich
from tests.support.pages import PageServer

PARAGRAPH = ("Section {i} explains how the library stores each page: the fetcher streams the "
             "bytes, the extractor keeps the main content, and the enrichment stage writes a "
             "summary, keywords, a quality tier and one embedding per chunk of text. ")


def make_page(n: int, size: int = 50_000) -> bytes:
    body, i = [], 0
    while sum(map(len, body)) < size:
        body.append(f"<h2>Part {i}</h2><p>{PARAGRAPH.format(i=i) * 3} Page {n}.</p>")
        i += 1
    return (f"<html><head><title>Bench page {n}</title></head><body><article>"
            f"<h1>Bench page {n}</h1>{''.join(body)}</article></body></html>").encode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def floor(urls: list[str], workdir: Path, database_url: str) -> list[float]:
    fetcher = Fetcher(FetchLimits(allow_networks=("127.0.0.1/32",)))
    embedder = Embedder()
    catalog = Catalog(database_url)
    files = LocalObjectStore(workdir / "floor-objects")
    vectors = VectorStore(path=workdir / "floor-qdrant")
    times = []
    for url in urls:
        started = time.perf_counter()
        c = canonicalize(url)
        doc = extract_content(fetcher.fetch(c.url))
        doc.url = c.url
        e = enrich(doc, canonical_url=c.url, partition_key=c.partition_key, domain=c.host,
                   embedder=embedder)
        item = item_id_for(c.url)
        prefix = version_prefix(item, e.content_hash)
        files.put(prefix + "raw", doc.raw, "text/html")
        files.put(prefix + "content.md", doc.markdown.encode(), "text/markdown")
        vectors.replace_item(item_id=item, content_hash=e.content_hash, model=e.embedding_model,
                             dimension=e.embedding_dimension, payload={"url": c.url},
                             chunks=[ChunkPoint(x.index, x.text, x.heading_path, x.vector)
                                     for x in e.chunks])
        catalog.record_version(NewVersion(
            canonical_url=c.url, url=c.url, domain=c.host, partition_key=c.partition_key,
            title=e.title, author=None, published=None, language=e.language, summary=e.summary,
            keywords=e.keywords, tier=e.tier, quality_score=e.quality_score,
            word_count=e.word_count, content_hash=e.content_hash, final_url=c.url,
            status_code=200, content_type="text/html", etag=None, last_modified=None,
            object_keys={}, chunk_count=len(e.chunks), embedding_model=e.embedding_model,
            run_id=None))
        times.append(time.perf_counter() - started)
    catalog.close()
    return times


def ingest(api: str, url: str) -> float:
    started = time.perf_counter()
    job = httpx.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=60).json()
    with httpx.stream("GET", job["stream_url"], timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("event:") and line.split(":", 1)[1].strip() in (
                    "job_completed", "error", "job_cancelled"):
                if "job_completed" not in line:
                    raise RuntimeError(f"{url} did not complete: {line}")
                break
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="librarian-bench-"))
    tag = uuid.uuid4().hex[:8]
    servers: list[EmbeddedPostgres | EmbeddedRedis] = []
    if port_open("127.0.0.1", 5432):
        pg_base = "postgresql+psycopg2://postgres@127.0.0.1:5432"
    else:
        pg = EmbeddedPostgres(work / "pg", free_port())
        pg.start()
        servers.append(pg)
        pg_base = pg.url
    if port_open("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
    else:
        rs = EmbeddedRedis(work / "redis", free_port())
        rs.start()
        servers.append(rs)
        redis_url = rs.url
    admin = psycopg2.connect(pg_base.replace("+psycopg2", "") + "/postgres")
    admin.autocommit = True
    dbs = [f"bench_{tag}_catalog", f"bench_{tag}_dagster", f"bench_{tag}_floor"]
    with admin.cursor() as cur:
        for db in dbs:
            cur.execute(f'CREATE DATABASE "{db}"')
    for db in (dbs[0], dbs[2]):
        migrate(f"{pg_base}/{db}")

    pages = PageServer()
    total = args.runs * 2 + args.burst
    for n in range(total):
        pages.pages[f"/p{n}.html"] = (200, "text/html; charset=utf-8", make_page(n))
    pages.start()
    urls = [pages.url(f"/p{n}.html") for n in range(total)]

    floor_times = floor(urls[: args.runs], work, f"{pg_base}/{dbs[2]}")
    env = {"LIBRARIAN_DATABASE_URL": f"{pg_base}/{dbs[0]}",
           "LIBRARIAN_DAGSTER_DATABASE_URL": f"{pg_base}/{dbs[1]}",
           "LIBRARIAN_REDIS_URL": redis_url, "LIBRARIAN_REDIS_PREFIX": f"bench:{tag}:",
           "LIBRARIAN_FETCH_ALLOW_NETWORKS": '["127.0.0.1/32"]'}
    stack = Stack(work / "stack", env=env, ports=StackPorts(free_port(), free_port(),
                                                            free_port()))
    try:
        stack.start()
        api = f"http://127.0.0.1:{stack.ports.api}"
        ingest(api, urls[args.runs])  # warm-up: first run pays the code server's lazy imports
        seq = [ingest(api, u) for u in urls[args.runs + 1: args.runs * 2 + 1]]
        burst_urls = urls[args.runs * 2: args.runs * 2 + args.burst]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(burst_urls)) as pool:
            list(pool.map(lambda u: ingest(api, u), burst_urls))
        burst_s = time.perf_counter() - started
    finally:
        stack.stop()
        pages.stop()
        with admin.cursor() as cur:
            for db in dbs:
                cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for server in servers:
            server.stop()

    f50, s50 = statistics.median(floor_times), statistics.median(seq)
    report = {
        "floor_ms_p50": round(f50 * 1000), "floor_ms_p95": round(pct(floor_times, .95) * 1000),
        "post_to_completed_ms_p50": round(s50 * 1000),
        "post_to_completed_ms_p95": round(pct(seq, .95) * 1000),
        "ratio_p50_stack_to_floor": round(s50 / f50, 1),
        "burst_urls": args.burst, "burst_seconds": round(burst_s, 1),
        "burst_urls_per_min": round(args.burst / burst_s * 60, 1),
        "floor_urls_per_min": round(60 / f50, 1),
    }
    print(f"{'measure':32} value")
    for key, value in report.items():
        print(f"{key:32} {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
