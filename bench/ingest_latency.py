"""Ingestion latency and throughput: the whole stack, warm run pool vs Dagster's stock launcher,
against the bare pipeline functions (the floor), in one script.

    .venv/bin/python bench/ingest_latency.py [--runs 21] [--many 200] [--baseline-many 60]
                                             [--launchers default,warm] [--prose] [--corpus DIR]

For each launcher it starts the stack exactly as ``make run`` does (fresh databases on the
PostgreSQL on 127.0.0.1:5432 and a fresh Redis key prefix, or private servers if none answer)
and measures:

* latency: POST /api/v1/ingest → ``job_completed`` on the SSE stream, one URL at a time, p50/p95,
  with the median time per phase from Dagster's own event timestamps;
* throughput: ``--many`` pages through the API batch submit, then another ``--many`` through the
  watchlist sensor: URLs/min from submission to the last run's end (``--baseline-many`` for the
  stock launcher, which needs ~4× as long for the same number);
* per-run worker CPU seconds and peak memory (RSS high-water mark, and peak private memory: what
  a worker does not share with the process it came from), sampled from ``/proc``.
* CPU per URL of the whole machine during the batch (every process, PostgreSQL included), and
  the share of it spent in the embedding service (which run workers hand their chunks to).

Pages: real pages of the WCXB dev corpus (``../shared/corpus/wcxb-dev``) served from four
loopback addresses (four "sites", so per-site concurrency limits apply as to a watchlist of many
sites); latency uses its 45–55 KB pages (median ~1,000 words, like the web at that size).
``--prose`` uses generated 50 KB pages that are nearly all text (~70 chunks each: embedding-bound).
The floor is fetch → extract → transform → load as plain function calls in this process on the
latency pages.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librarian.canonical_url import canonicalize
from librarian.cli.local_servers import EmbeddedPostgres, EmbeddedRedis, free_port, port_open
from librarian.cli.stack import Stack, StackPorts
from librarian.content.enrich import enrich
from librarian.content.extract import extract_content
from librarian.content.fetch import Fetcher, FetchLimits
from librarian.embedding.model import Embedder
from librarian.orchestration.warm_protocol import private_memory_kb, proc_stat, request
from librarian.runs import partition_key
from librarian.settings import Settings
from librarian.storage.catalog import Catalog, NewVersion, item_id_for, migrate
from librarian.storage.objects import LocalObjectStore, version_prefix
from librarian.storage.vectors import ChunkPoint, VectorStore
from tests.support.pages import PageServer

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "wcxb-dev"
SITES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
PARAGRAPH = ("Section {i} explains how the library stores each page: the fetcher streams the "
             "bytes, the extractor keeps the main content, and the enrichment stage writes a "
             "summary, keywords, a quality tier and one embedding per chunk of text. ")
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")


def prose_page(n: int, size: int = 50_000) -> bytes:
    body, i = [], 0
    while sum(map(len, body)) < size:
        body.append(f"<h2>Part {i}</h2><p>{PARAGRAPH.format(i=i) * 3} Page {n}.</p>")
        i += 1
    return (f"<html><head><title>Bench page {n}</title></head><body><article>"
            f"<h1>Bench page {n}</h1>{''.join(body)}</article></body></html>").encode()


def corpus_pages(corpus: Path) -> list[bytes]:
    return [gzip.decompress(p.read_bytes()) for p in sorted((corpus / "pages").glob("*.html.gz"))]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Sites:
    """Pages served from four loopback addresses; every URL is unique (no reuse across runs)."""

    def __init__(self) -> None:
        self.servers = [PageServer(host) for host in SITES]
        for server in self.servers:
            server.start()
        self.n = 0

    def add(self, body: bytes) -> str:
        server = self.servers[self.n % len(self.servers)]
        path = f"/p{self.n}.html"
        self.n += 1
        server.pages[path] = (200, "text/html; charset=utf-8", body)
        return server.url(path)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def floor(bodies: list[bytes], sites: Sites, workdir: Path, database_url: str,
          embedder: Embedder) -> list[float]:
    settings = Settings(fetch_allow_networks=["127.0.0.0/8"])
    fetcher = Fetcher(FetchLimits.from_settings(settings))
    catalog = Catalog(database_url)
    files = LocalObjectStore(workdir / "floor-objects")
    vectors = VectorStore(path=workdir / "floor-qdrant")
    times = []
    for body in bodies:
        url = sites.add(body)
        started = time.perf_counter()
        c = canonicalize(url)
        doc = extract_content(fetcher.fetch(c.url), pdf_max_pages=settings.pdf_max_pages)
        doc.url = c.url
        e = enrich(doc, canonical_url=c.url, partition_key=partition_key(c), domain=c.host,
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
            canonical_url=c.url, url=c.url, domain=c.host, partition_key=partition_key(c),
            title=e.title, author=None, published=None, language=e.language, summary=e.summary,
            keywords=e.keywords, tier=e.tier, quality_score=e.quality_score,
            word_count=e.word_count, content_hash=e.content_hash, final_url=c.url,
            status_code=200, content_type="text/html", etag=None, last_modified=None,
            object_keys={}, chunk_count=len(e.chunks), embedding_model=e.embedding_model,
            run_id=None))
        times.append(time.perf_counter() - started)
    catalog.close()
    return times


def ingest(api: str, url: str, runs: list[tuple[str, float, float]] | None = None) -> float:
    started, posted = time.perf_counter(), time.time()
    job = httpx.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=60).json()
    with httpx.stream("GET", job["stream_url"], timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("event:") and line.split(":", 1)[1].strip() in (
                    "job_completed", "error", "job_cancelled"):
                if "job_completed" not in line:
                    raise RuntimeError(f"{url} did not complete: {line}")
                break
    if runs is not None:
        done = time.time()
        # The job's id is Librarian's; its record names the run that did the work.
        run_id = httpx.get(job["status_url"], timeout=30).json()["run_id"]
        runs.append((run_id, posted, done))
    return time.perf_counter() - started


PHASES = [("POST → RUN_ENQUEUED", "post", "PIPELINE_ENQUEUED"),
          ("queued (→ RUN_STARTING)", "PIPELINE_ENQUEUED", "PIPELINE_STARTING"),
          ("worker start (→ RUN_START)", "PIPELINE_STARTING", "PIPELINE_START"),
          ("RUN_START → first step", "PIPELINE_START", "STEP_START:extract"),
          ("extract", "STEP_START:extract", "STEP_SUCCESS:extract"),
          ("transform", "STEP_START:transform", "STEP_SUCCESS:transform"),
          ("load", "STEP_START:load", "STEP_SUCCESS:load"),
          ("last step → RUN_SUCCESS", "STEP_SUCCESS:load", "PIPELINE_SUCCESS"),
          ("RUN_SUCCESS → client sees job_completed", "PIPELINE_SUCCESS", "done")]


def timeline(dagster_dsn: str, runs: list[tuple[str, float, float]]) -> dict[str, float]:
    """Median milliseconds per phase, from Dagster's own event timestamps."""
    per_phase: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    with psycopg2.connect(dagster_dsn) as conn, conn.cursor() as cur:
        for run_id, posted, done in runs:
            cur.execute("SELECT dagster_event_type, step_key, extract(epoch from timestamp) "
                        "FROM event_logs WHERE run_id = %s AND dagster_event_type IS NOT NULL "
                        "ORDER BY id", (run_id,))
            marks: dict[str, float] = {"post": posted, "done": done}
            for kind, step, at in cur.fetchall():
                marks.setdefault(f"{kind}:{step}" if step else kind, float(at))
            for name, start, end in PHASES:
                if start in marks and end in marks:
                    per_phase[name].append((marks[end] - marks[start]) * 1000)
    return {name: round(statistics.median(v)) for name, v in per_phase.items() if v}


@dataclass
class WorkerSample:
    cpu: float = 0.0
    rss_hwm_kb: int = 0
    private_kb: int = 0
    polls: int = 0


@dataclass
class WorkerSampler:
    """Run workers are the processes that appear under ``root`` after start: sample them."""

    root: int
    # Reading /proc costs the machine under test: a full scan every 0.5 s, and the private
    # memory (smaps_rollup: the kernel walks the page tables) once per worker per second.
    interval: float = 0.5
    seen: dict[int, WorkerSample] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._baseline = set(_descendants(self.root))
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self.interval):
            for pid in _descendants(self.root):
                if pid in self._baseline:
                    continue
                sample = self.seen.setdefault(pid, WorkerSample())
                sample.polls += 1
                fields = proc_stat(pid)
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                if fields is None:
                    continue
                sample.cpu = (int(fields[11]) + int(fields[12])) / tick
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        sample.rss_hwm_kb = int(line.split()[1])
                if sample.polls % 2:
                    sample.private_kb = max(sample.private_kb, private_memory_kb(pid) or 0)

    def summary(self) -> dict[str, float]:
        # Workers that lived long enough to be sampled doing a run (not the PDF helper).
        workers = [s for s in self.seen.values() if s.cpu > 0.2 and s.private_kb]
        if not workers:
            return {}
        return {"workers_sampled": len(workers),
                "worker_cpu_s_p50": round(statistics.median(s.cpu for s in workers), 2),
                "worker_rss_hwm_mb_p50": round(statistics.median(
                    s.rss_hwm_kb for s in workers) / 1024),
                "worker_private_mb_p50": round(statistics.median(
                    s.private_kb for s in workers) / 1024)}


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = proc_stat(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def wait_for_runs(dsn: str, since: float, count: int, timeout: float) -> tuple[float, dict]:
    """Poll Dagster's run table until ``count`` runs created after ``since`` have ended."""
    deadline = time.time() + timeout
    with psycopg2.connect(dsn) as conn:
        conn.autocommit = True
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT status, count(*), max(extract(epoch from update_timestamp))"
                            " FROM runs WHERE create_timestamp >= to_timestamp(%s) "
                            "GROUP BY status", (since,))
                rows = cur.fetchall()
            statuses = {status: n for status, n, _ in rows}
            ended = sum(n for status, n, _ in rows if status in TERMINAL)
            if ended >= count or time.time() > deadline:
                last = max((at for status, _, at in rows if status in TERMINAL), default=since)
                return float(last), statuses
            time.sleep(0.5)


def run_launcher(launcher: str, args: argparse.Namespace, pg_base: str, redis_url: str,
                 work: Path, sites: Sites, latency: list[bytes], many: list[bytes],
                 ) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    admin = psycopg2.connect(pg_base.replace("+psycopg2", "") + "/postgres")
    admin.autocommit = True
    dbs = [f"bench_{tag}_catalog", f"bench_{tag}_dagster"]
    with admin.cursor() as cur:
        for db in dbs:
            cur.execute(f'CREATE DATABASE "{db}"')
    migrate(f"{pg_base}/{dbs[0]}")
    dagster_dsn = f"{pg_base.replace('+psycopg2', '')}/{dbs[1]}"
    data = work / f"stack-{launcher}"
    env = {"LIBRARIAN_DATABASE_URL": f"{pg_base}/{dbs[0]}",
           "LIBRARIAN_DAGSTER_DATABASE_URL": f"{pg_base}/{dbs[1]}",
           "LIBRARIAN_REDIS_URL": redis_url, "LIBRARIAN_REDIS_PREFIX": f"bench:{tag}:",
           "LIBRARIAN_FETCH_ALLOW_NETWORKS": '["127.0.0.0/8"]',
           "LIBRARIAN_WATCHLIST_PATH": str(data / "watchlist.txt"),
           "LIBRARIAN_WATCHLIST_INTERVAL_SECONDS": "2",
           # The pipeline is measured, not authentication (the stack is on loopback).
           "LIBRARIAN_AUTH": "off"}
    stack = Stack(data, env=env, ports=StackPorts(free_port(), free_port(), free_port()),
                  launcher=launcher)  # type: ignore[arg-type]
    report: dict[str, object] = {}
    try:
        stack.start()
        api = f"http://127.0.0.1:{stack.ports.api}"
        root = stack.procs["run-pool" if launcher == "warm" else "code-server"].pid
        sampler = WorkerSampler(root)
        sampler.start()
        ingest(api, sites.add(latency[0]))  # warm-up: the first run pays one-off lazy imports
        seq_runs: list[tuple[str, float, float]] = []
        seq = [ingest(api, sites.add(body), seq_runs) for body in latency[:args.runs]]
        report["post_to_completed_ms_p50"] = round(statistics.median(seq) * 1000)
        report["post_to_completed_ms_p95"] = round(pct(seq, .95) * 1000)
        report["phases_ms"] = timeline(dagster_dsn, seq_runs)
        print(launcher, "latency", json.dumps(report), flush=True)  # kept if a later part fails

        if many:
            urls = [sites.add(body) for body in many]
            since = time.time() - 1
            embedder_pid = stack.procs["embedder"].pid
            busy, embedding = machine_busy_s(), process_cpu_s(embedder_pid)
            started = time.time()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda chunk: httpx.post(f"{api}/api/v1/ingest/batch",
                                                       json={"urls": chunk}, timeout=600),
                              [urls[i:i + 50] for i in range(0, len(urls), 50)]))
            submitted = time.time() - started
            last, statuses = wait_for_runs(dagster_dsn, since, len(urls), 1800)
            report["batch_submit_s"] = round(submitted, 1)
            report["batch_urls_per_min"] = round(len(urls) / (last - started) * 60, 1)
            report["batch_statuses"] = statuses
            # All CPU the machine spent per URL (every process of the stack, PostgreSQL, the
            # page servers); and the part of it the embedding service spent.
            report["batch_machine_cpu_s_per_url"] = round(
                (machine_busy_s() - busy) / len(urls), 2)
            report["batch_embedder_cpu_s_per_url"] = round(
                (process_cpu_s(embedder_pid) - embedding) / len(urls), 2)
            print(launcher, "batch", report["batch_urls_per_min"], statuses, flush=True)

            urls = [sites.add(body) for body in many]
            since = time.time() - 1
            started = time.time()
            with open(data / "watchlist.txt", "a") as fh:
                fh.write("".join(u + "\n" for u in urls))
            last, statuses = wait_for_runs(dagster_dsn, since, len(urls), 1800)
            report["sensor_urls_per_min"] = round(len(urls) / (last - started) * 60, 1)
            report["sensor_statuses"] = statuses
            with psycopg2.connect(dagster_dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM runs WHERE status IN "
                            "('STARTED', 'STARTING', 'QUEUED', 'NOT_STARTED', 'CANCELING')")
                report["runs_left_unfinished"] = cur.fetchone()[0]  # type: ignore[index]
        sampler.stop()
        report.update(sampler.summary())
        if launcher == "warm":
            exited = request(stack.pool_socket, {"op": "stats"})["exited"]
            runs = [e for e in exited if e["exitcode"] == 0]
            if runs:
                report["pool_worker_cpu_s_p50"] = statistics.median(e["cpu_seconds"] for e in runs)
                report["pool_worker_private_mb_p50"] = round(statistics.median(
                    e["peak_uss_kb"] for e in runs) / 1024)
    finally:
        stack.stop()
        with admin.cursor() as cur:
            for db in dbs:
                cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21, help="sequential single-URL runs")
    parser.add_argument("--many", type=int, default=200, help="URLs for batch and for sensor")
    parser.add_argument("--baseline-many", type=int, default=60,
                        help="URLs for batch and for sensor with the stock launcher (slow)")
    parser.add_argument("--launchers", default="default,warm")
    parser.add_argument("--prose", action="store_true", help="dense generated 50 KB pages")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    # Stopped with SIGTERM: still stop the stack and drop the databases (the finally clauses).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="librarian-bench-"))
    servers: list[EmbeddedPostgres | EmbeddedRedis] = []
    if port_open("127.0.0.1", 5432):
        pg_base = "postgresql+psycopg2://postgres@127.0.0.1:5432"
    else:
        pg = EmbeddedPostgres(work / "pg", free_port())
        pg.start()
        servers.append(pg)
        pg_base = pg.admin_url  # a superuser: the bench makes and drops databases
    if port_open("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
    else:
        rs = EmbeddedRedis(work / "redis", free_port())
        rs.start()
        servers.append(rs)
        redis_url = rs.url

    corpus = corpus_pages(args.corpus) if (args.corpus / "pages").is_dir() else []
    if args.prose or not corpus:
        latency = [prose_page(n) for n in range(args.runs + 1)]
        many = [prose_page(1000 + n) for n in range(args.many)]
    else:
        mid = [b for b in corpus if 45_000 <= len(b) <= 55_000]
        latency = [mid[n % len(mid)] for n in range(args.runs + 1)]
        many = [corpus[n % len(corpus)] for n in range(args.many)]
    sites = Sites()
    tag = uuid.uuid4().hex[:8]
    admin = psycopg2.connect(pg_base.replace("+psycopg2", "") + "/postgres")
    admin.autocommit = True
    floor_db = f"bench_{tag}_floor"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{floor_db}"')
    results: dict[str, object] = {}
    try:
        migrate(f"{pg_base}/{floor_db}")
        # The pipeline's model (the int8-MatMul copy), loaded once, before the clock starts.
        embedder = Embedder(cache_dir=work / "floor-onnx", quantize=True)
        floor(latency[:1], sites, work, f"{pg_base}/{floor_db}", embedder)
        floor_times = floor(latency[1:args.runs + 1], sites, work, f"{pg_base}/{floor_db}",
                            embedder)
        results["floor"] = {"ms_p50": round(statistics.median(floor_times) * 1000),
                            "ms_p95": round(pct(floor_times, .95) * 1000),
                            "urls_per_min_one_process": round(
                                60 / statistics.mean(floor_times), 1)}
        for launcher in args.launchers.split(","):
            count = args.baseline_many if launcher == "default" else args.many
            results[launcher] = run_launcher(launcher, args, pg_base, redis_url, work, sites,
                                             latency[1:], many[:count])
            results[launcher]["many"] = count  # type: ignore[index]
            print(launcher, json.dumps(results[launcher]), flush=True)
    finally:
        sites.stop()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{floor_db}" WITH (FORCE)')
        for server in servers:
            server.stop()

    floor_p50 = results["floor"]["ms_p50"]  # type: ignore[index]
    print(f"\npages: {'generated 50 KB prose' if args.prose or not corpus else 'WCXB corpus'}; "
          f"floor p50 {floor_p50} ms, p95 {results['floor']['ms_p95']} ms")  # type: ignore[index]
    for launcher in args.launchers.split(","):
        r = results[launcher]
        assert isinstance(r, dict)
        print(f"\n[{launcher}]")
        for key, value in r.items():
            if key != "phases_ms":
                print(f"  {key:32} {value}")
        print(f"  {'ratio p50 to floor':32} {r['post_to_completed_ms_p50'] / floor_p50:.2f}")
        for name, ms in r["phases_ms"].items():
            print(f"    {name:40} {ms}")
    names = args.launchers.split(",")
    if "default" in names and "warm" in names:
        d, w = results["default"], results["warm"]
        assert isinstance(d, dict) and isinstance(w, dict)
        print("\nwarm vs default: p50 latency "
              f"{d['post_to_completed_ms_p50'] / w['post_to_completed_ms_p50']:.2f}× faster")
        for key in ("batch_urls_per_min", "sensor_urls_per_min"):
            if key in d and key in w:
                print(f"  {key}: {w[key] / d[key]:.2f}×")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
