"""Soak: thousands of URLs through batch submit and the watchlist while a random process of the
stack is killed with SIGKILL every minute; every job must end in its true terminal state.

    .venv/bin/python bench/soak.py [--urls 2000] [--kill-every 60] [--out soak.json]

Starts its own ``librarian run`` (private PostgreSQL and Redis, free ports, a temporary data
folder) and serves the pages itself on four loopback addresses (four sites): 90 % good pages of
their own text, 10 % failing in five ways (404, 410, a binary file, an empty page, a server
error that stays an error). Three quarters of the URLs go through ``POST /ingest/batch`` (500
per call), the rest are appended to the watchlist. Prints, at the end: how many jobs completed,
failed as the page says they should, failed because a kill took their run down (Dagster's last
run says failed too), and are stuck (goal 0); jobs whose record disagrees with Dagster (goal 0);
the kills; and the resident memory of every process at the start and the end. """

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from librarian.cli.local_servers import free_port

FAILING = {"missing": 404, "gone": 410, "binary": 200, "empty": 200, "broken": 500}
DAGSTER_TERMINAL = {"SUCCESS": "completed", "FAILURE": "failed", "CANCELED": "cancelled"}
VICTIMS = {"mirror": "librarian mirror", "api": "uvicorn", "daemon": "dagster-daemon",
           "webserver": "dagster-webserver", "code-server": "code-server start",
           "run-pool": "librarian run-pool", "embedder": "librarian embed-server",
           "redis": "redis-server", "postgres": "postmaster"}
RUNS = """query Runs($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}, limit: 5000) {
    ... on Runs { results { runId status tags { key value } } } } }"""


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        kind, _, name = self.path.strip("/").partition("/")
        status = FAILING.get(kind, 200)
        ctype, body = "text/html; charset=utf-8", b""
        if kind == "binary":
            ctype, body = "application/octet-stream", bytes(range(256)) * 16
        elif kind == "empty":
            body = b"<html><head><title>x</title></head><body></body></html>"
        elif status == 200:
            rng = random.Random(name)
            words = "soil water seed root leaf stem flower garden harvest prune".split()
            paras = "".join("<p>" + " ".join(rng.choice(words) for _ in range(80)) + ".</p>"
                            for _ in range(5))
            body = (f"<html lang=en><head><title>Note {name}</title></head><body><article>"
                    f"<h1>Note {name}</h1>{paras}</article></body></html>").encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append((int(entry.name),
                                  (entry / "cmdline").read_text().replace("\0", " ")))
    return found


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def postmaster(data: Path) -> int:
    location = data / "postgres" / "LOCATION"
    home = Path(location.read_text().strip()) if location.exists() else data / "postgres"
    return int((home / "pgdata" / "postmaster.pid").read_text().split()[0])


def memory(pid: int, data: Path) -> dict[str, float]:
    out = {}
    for name, words in VICTIMS.items():
        if name == "postgres":
            with contextlib.suppress(OSError, ValueError):
                out[name] = round(rss_mb(postmaster(data)), 1)
            continue
        for child, cmd in children(pid):
            if words in cmd:
                out[name] = round(rss_mb(child), 1)
    return out


def healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/api/v1/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def runs_of(graphql: str, key: str, value: str) -> list[dict[str, Any]]:
    response = httpx.post(graphql, json={"query": RUNS, "variables": {"key": key,
                                                                       "value": value}},
                          timeout=60)
    return list(response.json()["data"]["runsOrError"]["results"])


UNFINISHED = '["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]'


def count_runs(graphql: str, statuses: str) -> int:
    query = f"{{ runsOrError(filter: {{statuses: {statuses.replace(chr(39), '')}}}) " \
            "{ ... on Runs { count } } }"
    response = httpx.post(graphql, json={"query": query.replace('"', "")}, timeout=60)
    return int(response.json()["data"]["runsOrError"]["count"])


def ended(api: str, graphql: str, jobs: dict[str, str], by_watchlist: list[str]
          ) -> dict[str, str]:
    """Each URL's job state as the API reports it, for the jobs that ended."""
    done: dict[str, str] = {}
    for url, job in jobs.items():
        status = httpx.get(f"{api}/api/v1/ingest/{job}", timeout=30).json().get("status")
        if status in ("completed", "failed", "cancelled"):
            done[url] = status
    # The sensor's runs, newest first: each URL's first run is its job.
    first: dict[str, str] = {}
    for r in runs_of(graphql, "librarian/source", "watchlist"):
        tags = {t["key"]: t["value"] for t in r["tags"]}
        first[tags.get("librarian/url", "")] = r["runId"]
    for url in by_watchlist:
        if url in first:
            record = httpx.get(f"{api}/api/v1/ingest/{first[url]}", timeout=30).json()
            if record.get("status") in ("completed", "failed", "cancelled"):
                done[url] = record["status"]
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--kill-every", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=5400.0)
    parser.add_argument("--out", type=Path, default=Path("soak.json"))
    args = parser.parse_args()

    # Four sites (loopback addresses): at most two runs per site at once, as in production.
    site = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Pages)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    bases = [f"http://127.0.0.{n}:{site.server_address[1]}" for n in (1, 2, 3, 4)]
    ports = {n: free_port() for n in ("api", "dagster", "code", "postgres", "redis")}
    data = Path("/tmp") / f"librarian-soak-{ports['api']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIBRARIAN_", "DAGSTER_"))}
    env.update({"LIBRARIAN_FETCH_ALLOW_NETWORKS": '["127.0.0.0/29"]',
                "LIBRARIAN_WATCHLIST_PATH": str(data / "watchlist.txt"),
                # Loopback only; the soak measures recovery, not sign-in.
                "LIBRARIAN_AUTH": "off"})
    librarian = str(Path(sys.executable).parent / "librarian")
    proc = subprocess.Popen(
        [librarian, "run", "--data-dir", str(data), "--api-port", str(ports["api"]),
         "--dagster-port", str(ports["dagster"]), "--code-server-port", str(ports["code"]),
         "--postgres-port", str(ports["postgres"]), "--redis-port", str(ports["redis"])],
        env=env, stdout=open(f"{data}.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True)
    api, graphql = f"http://127.0.0.1:{ports['api']}", f"http://127.0.0.1:{ports['dagster']}/graphql"
    rng = random.Random(2000)
    kills: list[dict[str, Any]] = []
    try:
        while not healthy(api):
            assert proc.poll() is None, "librarian run stopped"
            time.sleep(1)
        start_memory = memory(proc.pid, data)
        urls = []
        for i in range(args.urls):
            kind = list(FAILING)[i // 10 % len(FAILING)] if i % 10 == 9 else "page"
            urls.append(f"{bases[i % len(bases)]}/{kind}/{i}")
        rng.shuffle(urls)
        by_batch, by_watchlist = urls[: args.urls * 3 // 4], urls[args.urls * 3 // 4:]
        jobs: dict[str, str] = {}  # url → job id (batch submissions)
        started = time.monotonic()
        for i in range(0, len(by_batch), 500):
            chunk = by_batch[i:i + 500]
            while True:
                try:
                    response = httpx.post(f"{api}/api/v1/ingest/batch", json={"urls": chunk},
                                          timeout=30)
                    if response.status_code == 202:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            jobs.update({r["url"]: r["job_id"] for r in response.json()["results"]})
        (data / "watchlist.txt").write_text("".join(u + "\n" for u in by_watchlist))
        print(f"submitted {len(urls)} URLs in {time.monotonic() - started:.1f} s", flush=True)

        next_kill = time.monotonic() + args.kill_every
        done: dict[str, str] = {}
        unfinished, idle = -1, 0
        while len(done) < len(urls) and time.monotonic() - started < args.timeout:
            if time.monotonic() >= next_kill:
                name = rng.choice(list(VICTIMS))
                with contextlib.suppress(StopIteration, OSError, ValueError):
                    victim = (postmaster(data) if name == "postgres" else
                              next(p for p, cmd in children(proc.pid) if VICTIMS[name] in cmd))
                    os.kill(victim, signal.SIGKILL)
                    killed = time.monotonic()
                    while not healthy(api) and time.monotonic() - killed < 120:
                        time.sleep(0.25)
                    kills.append({"process": name, "healthy_after_s":
                                  round(time.monotonic() - killed, 1),
                                  "at_s": round(killed - started)})
                    print(f"killed {name}; healthy after {kills[-1]['healthy_after_s']} s",
                          flush=True)
                next_kill = time.monotonic() + args.kill_every
            # Cheap while it runs (one query): how many runs are still queued or running.
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, TypeError):
                unfinished = count_runs(graphql, UNFINISHED)
                if unfinished == 0:
                    done = ended(api, graphql, jobs, by_watchlist)
                    idle += 1
                    if idle >= 4:  # Dagster idle for a minute: what has not ended is stuck
                        break
                else:
                    idle = 0
            print(f"{time.monotonic() - started:7.0f} s: {unfinished} runs unfinished,"
                  f" {len(done)}/{len(urls)} jobs seen ended", flush=True)
            time.sleep(15)
        elapsed = time.monotonic() - started
        done = ended(api, graphql, jobs, by_watchlist)
        # The truth for every job: its last Dagster run.
        disagree, by_fault = [], []
        for url in urls:
            runs = runs_of(graphql, "librarian/url", url)
            truth = DAGSTER_TERMINAL.get(runs[0]["status"]) if runs else None
            if url in done and done[url] != truth:
                disagree.append((url, done[url], truth))
            kind = url.split("/")[3]
            if done.get(url) == "failed" and kind == "page":
                by_fault.append(url)
        end_memory = memory(proc.pid, data)
        report = {
            "urls": len(urls), "elapsed_s": round(elapsed), "kills": kills,
            "completed": sum(s == "completed" for s in done.values()),
            "failed_as_designed": sum(1 for u, s in done.items()
                                      if s == "failed" and u.split("/")[3] != "page"),
            "failing_pages": sum(1 for u in urls if u.split("/")[3] != "page"),
            "failed_by_fault": len(by_fault),
            "stuck": len(urls) - len(done),
            "record_disagrees_with_dagster": disagree[:20],
            "rss_mb_start": start_memory, "rss_mb_end": end_memory,
        }
        args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2), flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(90)
        site.shutdown()


if __name__ == "__main__":
    main()
