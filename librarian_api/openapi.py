"""``GET /api/v1/openapi.json``: the API described as OpenAPI 3.1, built from the real routes.

Paths and methods come from the application's routing table, so the document cannot list a
route that does not exist; each route's summary, parameters and responses come from
:data:`OPERATIONS`, and a route missing from it is an error (tested). Who may call each route
comes from the one table of scopes, :data:`librarian_api.auth.ROUTE_SCOPES`: its security
requirement (a Bearer token or the session cookie, with the scope as the role OpenAPI 3.1
allows), and its 401 and 403 answers.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian_api.auth import CSRF_HEADER, PUBLIC, ROUTE_SCOPES, SESSION_COOKIE, api_routes
from librarian_api.security import STATE_CHANGING

ERROR = {"$ref": "#/components/schemas/Error"}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
ITEM_ID = {"name": "item_id", "in": "path", "required": True,
           "schema": {"type": "string", "format": "uuid"}}
FILTERS = [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
    ("tier", "A, B or C; comma-separated for several"), ("language", "ISO 639-1 code"),
    ("domain", "host name"), ("page_type", "article, documentation, forum, product, listing…"))]
PAGING = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                      "maximum": 100}},
          {"name": "cursor", "in": "query", "schema": {"type": "string"}}]


# Every 429 and 503 says when to come back.
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": ERROR}}}


def _response(code: str, text: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": text}
    if code[0] in "45":
        response["content"] = {"application/json": {"schema": ERROR}}
    if code in ("429", "503"):
        response["headers"] = RETRY_AFTER
    return response


# What the request guards (librarian_api.security) answer, on every route they cover.
GUARDED = {"400": _error("the Host header is not one this API answers to (untrusted_host)")}
STATE_CHANGING_GUARDED = {
    "403": _error("sent by a page of another origin (forbidden_origin)"),
    "413": _error("the body is larger than LIBRARIAN_MAX_BODY_BYTES (body_too_large)"),
}


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "lbr_…", "description": (
        "An API token (`librarian token create`), sent as `Authorization: Bearer <token>`. "
        "Its scope is read, write or admin; each operation names the one it needs.")},
    "cookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE, "description": (
        "The web page's session, set by POST /api/v1/session. A POST, PUT, PATCH or DELETE "
        f"authenticated by it must also send the session's CSRF token in `{CSRF_HEADER}`.")},
}
UNAUTHENTICATED = _error("no credentials, or a token or session that is not valid "
                         "(unauthorized); the answer carries WWW-Authenticate: Bearer")
FORBIDDEN = _error("the token's scope does not cover this operation (forbidden)")
CSRF_FORBIDDEN = _error(f"signed in by cookie without the session's {CSRF_HEADER} header "
                        "(invalid_csrf_token)")


def _security(path: str, method: str) -> dict[str, Any]:
    """The operation's security requirement and the answers authentication adds."""
    needed = ROUTE_SCOPES[(path, method)]
    if needed is PUBLIC:
        # Credentials optional: health says more to an authenticated client.
        return {"security": [{}, {"bearer": []}, {"cookie": []}], "responses": {}}
    responses = {"401": UNAUTHENTICATED, "403": FORBIDDEN}
    if method.upper() in STATE_CHANGING:
        responses["403"] = _merged({"403": FORBIDDEN}, {"403": CSRF_FORBIDDEN})["403"]
    return {"security": [{"bearer": [needed.value]}, {"cookie": [needed.value]}],
            "x-required-scope": needed.value, "responses": responses}


def _op(summary: str, responses: dict[str, str], params: list[dict[str, Any]] | None = None,
        body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {code: _response(code, text) for code, text in responses.items()},
    }
    if body:
        op["responses"]["415"] = _error("the body is not sent as application/json "
                                        "(unsupported_media_type)")
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": [body], "properties": {body: {
                "type": "array", "items": {"type": "string"}} if body == "urls" else {
                "type": "string", "format": "uri"}}}}}}
    return op


# The limits' answers (README "Limits"), shared by the routes that submit work.
RATE_LIMITED = "the caller's submission rate is used up (too_many_requests)"
SUBMIT_503 = ("the queue is full (queue_full: nothing accepted), or Dagster has been "
              "unavailable past the grace period (orchestrator_unavailable)")

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/ingest", "post"): _op("Submit a URL", {
        "202": "job created", "200": "the URL already has a queued or running job",
        "422": "invalid URL", "429": RATE_LIMITED, "503": SUBMIT_503}, body="url"),
    ("/api/v1/ingest/batch", "post"): _op("Submit many URLs; one result per URL, each URL "
                                          "counted against the submission rate", {
        "202": "at least one accepted",
        "422": "none accepted, or more URLs than the submission rate's burst",
        "429": RATE_LIMITED, "503": SUBMIT_503 + "; a batch is refused whole"}, body="urls"),
    ("/api/v1/ingest/{job_id}", "get"): _op("The job record", {
        "200": "job record", "404": "unknown job"}, [JOB_ID]),
    ("/api/v1/ingest/{job_id}/cancel", "post"): _op("Cancel a queued or running job", {
        "202": "cancelling", "404": "unknown job", "409": "already finished"}, [JOB_ID]),
    ("/api/v1/ingest/{job_id}/retry", "post"): _op("Retry a failed job from its failed stage", {
        "202": "retrying under the same job id", "404": "unknown job",
        "409": "not failed", "429": RATE_LIMITED, "503": SUBMIT_503}, [JOB_ID]),
    ("/api/v1/jobs", "get"): _op(
        "Jobs, newest first. At most 1,000 jobs are examined per request: a page may hold "
        "fewer than limit jobs (even none) with a next_cursor; the listing ends when "
        "next_cursor is null", {
            "200": "jobs, next_cursor, examined",
            "422": "unknown status (invalid_status), limit (invalid_limit) or cursor "
                   "(invalid_cursor)"}, [
            {"name": "status", "in": "query", "schema": {"type": "string"}}, *PAGING]),
    ("/api/v1/stream/{job_id}", "get"): {
        **_op("The job's events as Server-Sent Events (replay, then live)", {
            "200": "text/event-stream", "204": "finished, nothing after Last-Event-ID",
            "400": "Last-Event-ID is not a stream entry id (invalid_last_event_id), or the Host "
                   "header is not one this API answers to (untrusted_host)",
            "404": "unknown job",
            "429": "the caller has LIBRARIAN_SSE_MAX_STREAMS_PER_CALLER streams open "
                   "(too_many_streams)",
            "503": "this server has LIBRARIAN_SSE_MAX_STREAMS streams open (streams_full)"},
            [JOB_ID, {"name": "Last-Event-ID", "in": "header",
                      "schema": {"type": "string"}}])},
    ("/api/v1/library", "get"): _op("Library items, newest first", {
        "200": "items",
        "422": "invalid limit, cursor, date, filter (invalid_filter: more than 20 values, or "
               "one longer than 200 characters) or q (invalid_query: over 1,000 characters)"}, [
        *FILTERS, {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 1000}},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date"}},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date"}},
        *PAGING]),
    ("/api/v1/library/{item_id}", "get"): _op("One item: summary, metadata, versions, files", {
        "200": "item", "404": "unknown item"}, [ITEM_ID]),
    ("/api/v1/library/{item_id}", "delete"): _op(
        "Delete an item, its files and vectors, and its Dagster partition", {
            "200": "deleted (what was left in place is in problems)", "404": "unknown item",
            "409": "a job of the item's URL is queued or running (job_in_progress)"}, [ITEM_ID]),
    ("/api/v1/library/reembed", "post"): _op(
        "Refresh items embedded with another model than the configured one (up to 500 a call)",
        {"202": "runs submitted, or nothing stale",
         "503": "none could be submitted, or the queue is full (queue_full)"}),
    ("/api/v1/library/{item_id}/refresh", "post"): _op("Ingest the item's URL again", {
        "202": "job created", "200": "a job is already running", "404": "unknown item",
        "429": RATE_LIMITED, "503": SUBMIT_503}, [ITEM_ID]),
    ("/api/v1/library/{item_id}/files/{version}/{kind}", "get"): _op(
        "A stored file of a version: markdown (text/plain) and metadata (JSON) shown inline, "
        "raw (the page as fetched) as a download; all sandboxed (CSP sandbox, nosniff)", {
            "200": "the file", "404": "no such file"}, [
            ITEM_ID, {"name": "version", "in": "path", "required": True,
                      "schema": {"type": "integer"}},
            {"name": "kind", "in": "path", "required": True, "schema": {
                "type": "string", "enum": ["markdown", "raw", "metadata"]}}]),
    ("/api/v1/search", "get"): _op("Hybrid search over chunks, grouped by item", {
        "200": "results", "422": "invalid query, mode, limit or filter",
        "429": "the caller's search rate is used up (too_many_requests)"}, [
        {"name": "q", "in": "query", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": 1000}},
        {"name": "mode", "in": "query", "schema": {"type": "string",
                                                   "enum": ["hybrid", "dense", "sparse"]}},
        *FILTERS, PAGING[0]]),
    ("/api/v1/session", "post"): {
        **_op("Sign in with an API token: sets the session cookie (HttpOnly, SameSite=Strict), "
              "answers the session's CSRF token", {
                  "201": "signed in", "401": "the token is not valid",
                  "415": "the body is not sent as application/json (unsupported_media_type)",
                  "422": "no token in the body"}),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["token"], "properties": {
                "token": {"type": "string"}}}}}}},
    ("/api/v1/session", "get"): _op("Who is signed in, and the session's CSRF token", {
        "200": "the token's name and scope; csrf_token for a cookie session"}),
    ("/api/v1/session", "delete"): _op("Sign out: ends the session", {"204": "signed out"}),
    ("/api/v1/tokens", "get"): _op("API tokens (never the tokens themselves)", {
        "200": "tokens"}),
    ("/api/v1/tokens", "post"): {
        **_op("Create an API token; the answer is the only time it is shown", {
            "201": "the token, once",
            "415": "the body is not sent as application/json (unsupported_media_type)",
            "422": "no name, or an unknown scope"}),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "maxLength": 100},
                "scope": {"type": "string", "enum": ["read", "write", "admin"],
                          "default": "read"}}}}}}},
    ("/api/v1/tokens/{token_id}", "delete"): _op(
        "Revoke a token (and the sessions signed in with it): at once in this process, within "
        "LIBRARIAN_AUTH_CACHE_SECONDS in others", {"200": "revoked", "404": "unknown token"},
        [{"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer"}}]),
    ("/api/v1/health", "get"): _op("Health of Redis, the catalog and Dagster: the status alone "
                                   "without credentials; with any token or session, each "
                                   "check, the mirror and the embedding service", {
        "200": "all up", "503": "something is down"}),
    ("/api/v1/openapi.json", "get"): _op("This document", {"200": "OpenAPI document"}),
}


ERROR_SCHEMA = {"type": "object", "properties": {"error": {
    "type": "object", "required": ["code", "message", "request_id"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "stage": {"type": "string"},
        # Also in the X-Request-ID header; the server's log names it with the details.
        "request_id": {"type": "string"}}}}}


def _merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Responses of the guards, authentication and the operation: one status that several
    give (a 403 for another origin, a scope, a CSRF token) lists every reason."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for status, response in layer.items():
            if status in merged and merged[status] is not response:
                response = {**merged[status], "description": merged[status]["description"]
                            + "; or " + response["description"]}
            merged[status] = response
    return merged


def build(routes: list[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method in api_routes(routes):
        op = OPERATIONS[(path, method)]
        guards = {**GUARDED, **(STATE_CHANGING_GUARDED if method.upper() in STATE_CHANGING
                                else {})}
        auth = _security(path, method)
        paths.setdefault(path, {})[method] = {**op, **auth, "responses": _merged(
            guards, auth["responses"], op["responses"])}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Librarian", "version": "1",
                 "description": "Turn URLs into a searchable knowledge library."},
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES,
                       "schemas": {"Error": ERROR_SCHEMA}},
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(build(request.app.routes))
