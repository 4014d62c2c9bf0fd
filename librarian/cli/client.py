"""The ``librarian`` commands that talk to a running API: ingest, status, jobs, retry, cancel,
search, API tokens, and the watchlist. Human output by default; ``--json`` prints the API's
JSON.

Every request carries ``Authorization: Bearer`` with ``LIBRARIAN_API_TOKEN``, or, for an API on
this machine, the admin token ``librarian run`` keeps in ``<data dir>/admin.token`` (see
:mod:`librarian.cli.admin_token`). ``librarian token`` manages tokens through the API (an admin
token), or, with ``--database``, directly in the catalog database of ``LIBRARIAN_DATABASE_URL``:
the way to make the first token of a deployment whose API has none.

Titles, URLs, messages and snippets come from fetched pages: every human line goes out through
:func:`~librarian.cli.printable.printable` (``--json`` is escaped by JSON itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from librarian.canonical_url import canonicalize
from librarian.cli.admin_token import token_for
from librarian.cli.printable import printable
from librarian.errors import InvalidURL
from librarian.jobs.events import TERMINAL_EVENTS

TERMINAL = {kind.value for kind in TERMINAL_EVENTS}


class ApiClient:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Streams (stream_url) are on the same API: the header goes with them too.
        self.http = httpx.Client(base_url=self.base, timeout=60, headers=headers)
        self.has_token = token is not None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, "/api/v1" + path, **kwargs)
        except httpx.HTTPError as exc:
            raise SystemExit(printable(f"cannot reach the Librarian API at {self.base}: {exc}")
                             ) from exc
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            error = body.get("error", {})
            hint = ""
            if response.status_code == 401 and not self.has_token:
                hint = ("\nset LIBRARIAN_API_TOKEN to an API token (librarian run keeps an "
                        "admin token in <data dir>/admin.token)")
            raise SystemExit(printable(f"error {response.status_code}: {error.get('code')}: "
                                       f"{error.get('message')}") + hint)
        return body


def follow(client: ApiClient, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One progress bar per job from its SSE stream; returns each job's terminal event."""
    from rich.progress import BarColumn, Progress, TextColumn

    finals: list[dict[str, Any]] = [{} for _ in jobs]
    # markup=False: a page's "[link=…]" in a URL or message is text, not Rich markup.
    with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[status]}", markup=False)) as progress:
        def watch(index: int, job: dict[str, Any]) -> None:
            task = progress.add_task(printable(job["url"])[-50:], total=100, status="queued")
            with connect_sse(client.http, "GET", job["stream_url"], timeout=None) as source:
                for sse in source.iter_sse():
                    if sse.event == "heartbeat":
                        continue
                    event = json.loads(sse.data)
                    stage = event.get("stage")
                    if event.get("job_percent") is not None:  # the whole job's, on the event
                        progress.update(task, completed=event["job_percent"])
                    if event.get("message") or stage:
                        status = printable(f"{stage or ''} {event.get('message', '')}")
                        progress.update(task, status=status.strip()[:60])
                    if sse.event in TERMINAL:
                        finals[index] = event
                        progress.update(task, completed=100 if sse.event == "job_completed"
                                        else progress.tasks[task].completed,
                                        status=sse.event)
                        return

        threads = [threading.Thread(target=watch, args=(i, job), daemon=True)
                   for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return finals


def cmd_ingest(client: ApiClient, args: argparse.Namespace) -> int:
    body = client.call("POST", "/ingest/batch", json={"urls": args.urls})
    jobs = [r for r in body["results"] if r.get("job_id")]
    failed = [r for r in body["results"] if not r.get("job_id")]
    if args.json and not args.follow:
        print(json.dumps(body, indent=2))
        return 1 if failed else 0
    for r in failed:
        print(printable(f"✗ {r['url']}: {r['error']['code']}: {r['error']['message']}"),
              file=sys.stderr)
    if not args.follow:
        for job in jobs:
            print(printable(f"{job['job_id']}  {job['status']:9}  {job['url']}"))
        return 1 if failed else 0
    finals = follow(client, jobs)
    for job, final in zip(jobs, finals, strict=True):
        if final.get("type") == "job_completed":
            result = final.get("result") or {}
            line = f"✓ {job['url']} → {result.get('title')} (tier {result.get('tier')})"
        else:
            error = final.get("error") or {}
            line = f"✗ {job['url']}: {error.get('code', final.get('type'))}: " \
                   f"{error.get('message', '')}"
            failed.append(job)
        print(json.dumps(final) if args.json else printable(line))
    return 1 if failed else 0


def cmd_status(client: ApiClient, args: argparse.Namespace) -> int:
    record = client.call("GET", f"/ingest/{args.job}")
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(printable(f"{record['job_id']}  {record['status']}  {record.get('percent', 0)}%  "
                        f"{record.get('stage') or ''}  {record.get('url')}"))
        if record.get("error"):
            e = record["error"]
            print(printable(f"  error: {e['code']} in {e['stage']}: {e['message']}"))
        if record.get("result"):
            r = record["result"]
            print(printable(f"  item {r['item_id']}: {r.get('title')} (tier {r.get('tier')})"))
    return 1 if record["status"] == "failed" else 0


# A filtered listing examines a bounded slice of the jobs per request and may answer a page
# short with a cursor: follow it this many times at most for the jobs asked for.
MAX_JOB_PAGES = 50


def cmd_jobs(client: ApiClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.failed:
        params["status"] = "failed"
    jobs: list[dict[str, Any]] = []
    for _ in range(MAX_JOB_PAGES):
        body = client.call("GET", "/jobs", params={**params, "limit": args.limit - len(jobs)})
        jobs.extend(body["jobs"])
        if len(jobs) >= args.limit or not body.get("next_cursor"):
            break
        params["cursor"] = body["next_cursor"]
    if args.json:
        print(json.dumps({"jobs": jobs, "next_cursor": body.get("next_cursor")}, indent=2))
        return 0
    for job in jobs:
        code = (job.get("error") or {}).get("code", "")
        print(printable(f"{job['job_id']}  {job['status']:9}  {code:16}  {job.get('url', '')}"))
    return 0


def cmd_control(client: ApiClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/ingest/{args.job}/{args.command}")
    print(json.dumps(body, indent=2) if args.json else printable(f"{args.job}: {body['status']}"))
    return 0


def cmd_search(client: ApiClient, args: argparse.Namespace) -> int:
    body = client.call("GET", "/search", params={"q": args.query, "limit": args.limit})
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    import re

    for rank, result in enumerate(body["results"], 1):
        print(printable(f"{rank:2}. {result.get('title')}  [tier {result.get('tier')}]  "
                        f"{result['url']}"))
        for passage in result["passages"][:1]:
            text = printable(re.sub(r"</?mark>", "*", passage["highlight"]))
            print(f"    {' '.join(text.split())[:200]}")
    return 0


def cmd_reembed(client: ApiClient, args: argparse.Namespace) -> int:
    body = client.call("POST", "/library/reembed")
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(printable(f"{body['stale']} item(s) embedded with another model than "
                        f"{body['model']}; {body['accepted']} refresh run(s) submitted, "
                        f"{body['remaining']} left for the next call"))
    return 0 if body["remaining"] == 0 or body["accepted"] else 1


def cmd_token(client: ApiClient, args: argparse.Namespace) -> int:
    """``librarian token create|list|revoke``, through the API or (``--database``) directly."""
    if args.database:
        body = _token_in_database(args)
    elif args.action == "create":
        body = client.call("POST", "/tokens", json={"name": args.name, "scope": args.scope})
    elif args.action == "list":
        body = client.call("GET", "/tokens")
    else:
        body = client.call("DELETE", f"/tokens/{args.id}")
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.action == "create":
        print(printable(f"token {body['id']} {body['name']!r} ({body['scope']}):"))
        print(body["token"])
        print("It is shown only this once: keep it somewhere safe.", file=sys.stderr)
    elif args.action == "list":
        for t in body["tokens"]:
            state = f"revoked {t['revoked_at'][:19]}" if t["revoked_at"] else "valid"
            used = (t["last_used_at"] or "never")[:19]
            print(printable(f"{t['id']:>4}  {t['scope']:5}  {state:27}  last used {used:19}  "
                            f"{t['name']}"))
    else:
        print(printable(f"token {body['id']} {body['name']!r} revoked"))
    return 0


def _token_in_database(args: argparse.Namespace) -> dict[str, Any]:
    import sqlalchemy as sa

    from librarian.settings import Settings
    from librarian.storage.tokens import ApiTokens

    engine = sa.create_engine(Settings().database_url)
    tokens = ApiTokens(engine)
    try:
        if args.action == "create":
            try:
                info, token = tokens.create(args.name, args.scope)
            except ValueError as exc:
                raise SystemExit(str(exc)) from exc
            return {**info.as_json(), "token": token}
        if args.action == "list":
            return {"tokens": [t.as_json() for t in tokens.all()]}
        revoked = tokens.revoke(args.id)
        if revoked is None:
            raise SystemExit(f"error: token_not_found: no token {args.id}")
        return revoked.as_json()
    finally:
        engine.dispose()


def cmd_watch(args: argparse.Namespace) -> int:
    from librarian.settings import Settings

    path: Path = Settings().resolved_watchlist_path
    lines = path.read_text().splitlines() if path.exists() else []
    urls = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if args.action == "list":
        print(json.dumps(urls) if args.json else "\n".join(printable(u) for u in urls))
        return 0
    try:
        wanted = [canonicalize(u).url for u in args.urls]
    except InvalidURL as exc:
        raise SystemExit(printable(f"{exc.url}: {exc.message}")) from exc
    if args.action == "add":
        new = [u for u in wanted if u not in urls]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:  # append: the sensor picks up appended lines in order
            fh.writelines(u + "\n" for u in new)
        print(printable(f"added {len(new)} URL(s) to {path}"))
    else:
        kept = [line for line in lines if line.strip() not in wanted]
        path.write_text("".join(line + "\n" for line in kept))
        print(printable(f"removed {len(lines) - len(kept)} URL(s) from {path}"))
    return 0


def add_commands(sub: Any) -> None:
    def api_command(name: str, help: str, parent: Any = sub) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=help)
        parser.add_argument("--api", default=os.environ.get("LIBRARIAN_API_URL",
                                                            "http://127.0.0.1:8000"))
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        return parser

    p = api_command("ingest", "submit URLs (and follow their progress)")
    p.add_argument("urls", nargs="+")
    p.add_argument("--follow", action="store_true")
    p.set_defaults(api_func=cmd_ingest)
    p = api_command("status", "show one job")
    p.add_argument("job")
    p.set_defaults(api_func=cmd_status)
    p = api_command("jobs", "list recent jobs")
    p.add_argument("--failed", action="store_true")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(api_func=cmd_jobs)
    for name in ("retry", "cancel"):
        p = api_command(name, f"{name} a job")
        p.add_argument("job")
        p.set_defaults(api_func=cmd_control)
    p = api_command("search", "search the library")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(api_func=cmd_search)
    p = api_command("reembed", "refresh items whose vectors come from another model")
    p.set_defaults(api_func=cmd_reembed)
    p = sub.add_parser("token", help="create, list or revoke API tokens (admin)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, help in (("create", "make a token; it is printed once"),
                         ("list", "every token (never the tokens themselves)"),
                         ("revoke", "revoke a token by its id")):
        a = api_command(action, help, parent=actions)
        a.add_argument("--database", action="store_true",
                       help="use the catalog database (LIBRARIAN_DATABASE_URL) instead of the "
                            "API: for the first token of a deployment")
        a.set_defaults(api_func=cmd_token)
        if action == "create":
            a.add_argument("--name", required=True, help="what the token is for")
            a.add_argument("--scope", choices=["read", "write", "admin"], default="read")
        elif action == "revoke":
            a.add_argument("id", type=int)
    p = sub.add_parser("watch", help="edit the watchlist the sensor reads")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("urls", nargs="*")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_watch)


def run_api_command(args: argparse.Namespace) -> int:
    code: int = args.api_func(ApiClient(args.api, token_for(args.api)), args)
    return code
