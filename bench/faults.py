"""Faults against a running ``librarian run``: ``kill -9`` of each process while jobs are in flight.

    LIBRARIAN_FETCH_ALLOW_NETWORKS='["127.0.0.1/32"]' make run      # in one shell
    .venv/bin/python bench/faults.py [--data-dir data] [--jobs 10]  # in another

Serves generated pages on 127.0.0.1, then for each process of the stack (the private Redis and
PostgreSQL too): submits ``--jobs`` pages in one batch, kills the process 0.3 s later, waits
until health is ok again and every job has ended, and reads each job's stream from the start.
Prints, per process: seconds until healthy, jobs completed / failed / stuck, streams with
exactly one terminal event, streams whose event ids are in order. The baseline is the same
batch with nothing killed (first row).
"""

from __future__ import annotations

import argparse
import http.server
import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx

from librarian.cli.admin_token import admin_token_path, read_admin_token

TERMINAL = {"job_completed", "error", "job_cancelled"}
# Authenticated as the stack's admin (LIBRARIAN_API_TOKEN, else <data dir>/admin.token).
session = httpx.Client()
PROCESSES = {"none": None, "mirror": "librarian mirror", "api": "uvicorn",
             "daemon": "dagster-daemon", "webserver": "dagster-webserver",
             "code-server": "code-server start", "run-pool": "librarian run-pool",
             "embedder": "librarian embed-server", "redis": "redis-server",
             "postgres": "postmaster"}
WORDS = ("soil water sun compost seed root leaf stem fruit flower pot balcony garden harvest "
         "prune feed grow light warm cold rain wind frost mulch").split()


def serve_pages() -> str:
    rng = random.Random(7)

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            n = self.path.strip("/").removesuffix(".html")
            paras = "".join("<p>" + " ".join(rng.choice(WORDS) for _ in range(60)) + ".</p>"
                            for _ in range(6))
            body = (f"<html lang=en><head><title>Garden note {n}</title></head><body>"
                    f"<article><h1>Garden note {n}</h1>{paras}</article></body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append((int(entry.name),
                              (entry / "cmdline").read_text().replace("\0", " ")))
        except (OSError, IndexError, ValueError):
            continue
    return found


def stack_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_text().replace("\0", " ")
            except OSError:
                continue
            if "bin/librarian run" in cmd or " -m librarian run" in cmd:
                return int(entry.name)
    raise SystemExit("no `librarian run` is running")


def postmaster(data_dir: Path) -> int:
    location = data_dir / "postgres" / "LOCATION"
    home = Path(location.read_text().strip()) if location.exists() else data_dir / "postgres"
    return int((home / "pgdata" / "postmaster.pid").read_text().split()[0])


def healthy(api: str) -> bool:
    try:
        return session.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stream(api: str, job_id: str) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    with session.stream("GET", f"{api}/stream/{job_id}",
                      timeout=httpx.Timeout(10, read=15)) as response:
        if response.status_code != 200:
            return events
        for line in response.iter_lines():
            if line.startswith("id:"):
                event["id"] = line[3:].strip()
            elif line.startswith("event:"):
                event["event"] = line[6:].strip()
            elif line == "" and event:
                events.append(event)
                if event.get("event") in TERMINAL:
                    break
                event = {}
    return events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", default="http://127.0.0.1:8000/api/v1")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    token = (os.environ.get("LIBRARIAN_API_TOKEN")
             or read_admin_token(admin_token_path(args.data_dir)))
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    pages, run_pid, page = serve_pages(), stack_pid(), 0
    print(f"{'killed':12} {'healthy s':>9} {'completed':>9} {'failed':>6} {'stuck':>5}"
          f" {'1 terminal':>10} {'ids in order':>12}", flush=True)
    for name, words in PROCESSES.items():
        while not healthy(args.api):
            time.sleep(0.5)
        urls = [f"{pages}/{page + i}.html" for i in range(args.jobs)]
        page += args.jobs
        results = session.post(f"{args.api}/ingest/batch", json={"urls": urls},
                             timeout=300).json()["results"]
        jobs = [r["job_id"] for r in results if "job_id" in r]
        time.sleep(0.3)
        started = time.monotonic()
        if words is not None:
            victim = (postmaster(args.data_dir) if name == "postgres"
                      else next(p for p, cmd in children(run_pid) if words in cmd))
            os.kill(victim, signal.SIGKILL)
            time.sleep(0.5)
        while not healthy(args.api):
            time.sleep(0.25)
        back = time.monotonic() - started if words is not None else 0.0
        statuses: dict[str, str | None] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = {j: session.get(f"{args.api}/ingest/{j}", timeout=10).json().get("status")
                        for j in jobs}
            if all(s in ("completed", "failed", "cancelled") for s in statuses.values()):
                break
            time.sleep(1)
        one_terminal = in_order = 0
        for job in jobs:
            events = stream(args.api, job)
            one_terminal += sum(e.get("event") in TERMINAL for e in events) == 1
            ids = [tuple(int(x) for x in e["id"].split("-")) for e in events if "id" in e]
            in_order += ids == sorted(set(ids))
        done = sum(s == "completed" for s in statuses.values())
        failed = sum(s == "failed" for s in statuses.values())
        print(f"{name:12} {back:9.1f} {done:9d} {failed:6d} {len(jobs) - done - failed:5d}"
              f" {one_terminal:10d} {in_order:12d}", flush=True)
        time.sleep(2)


if __name__ == "__main__":
    main()
