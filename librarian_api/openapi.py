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

from librarian.jobs.events import EventType
from librarian_api.auth import CSRF_HEADER, PUBLIC, ROUTE_SCOPES, SESSION_COOKIE, api_routes
from librarian_api.security import STATE_CHANGING

ERROR = {"$ref": "#/components/schemas/Error"}
# Every job id is a UUID (the API's, or a run's); anything else is no job (404).
JOB_ID = {"name": "job_id", "in": "path", "required": True,
          "schema": {"type": "string", "format": "uuid"}}
ITEM_ID = {"name": "item_id", "in": "path", "required": True,
           "schema": {"type": "string", "format": "uuid"}}
FILTERS = [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
    ("tier", "A, B or C; comma-separated for several"), ("language", "ISO 639-1 code"),
    ("domain", "host name"), ("page_type", "article, documentation, forum, product, listing…"))]
# A Redis stream entry id (empty: from the start).
ENTRY_ID = {"type": "string", "pattern": "^([0-9]{1,19}-[0-9]{1,19})?$"}
_STATUS = "(queued|running|completed|failed|cancelled)"
# Job statuses, comma-separated (empty parts are ignored).
STATUS_LIST = f"^,*({_STATUS}(,+{_STATUS})*)?,*$"
# An ISO date (or date and time); empty is no bound.
DAY = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"},
                 {"type": "string", "maxLength": 0}]}
PAGING = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                      "maximum": 100}},
          {"name": "cursor", "in": "query", "schema": {"type": "string"}}]


# Every 429 and 503 says when to come back.
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "required": True, "schema": {"type": "integer", "minimum": 1}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": _json(ERROR)}


def _response(code: str, text: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response; ``content`` is its body by media type (an error's body by default for a 4xx
    or 5xx, none otherwise)."""
    response: dict[str, Any] = {"description": text}
    if content is None and code[0] in "45":
        content = _json(ERROR)
    if content:
        response["content"] = content
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
        body: str | None = None, content: dict[str, dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    """An operation; ``content`` gives the body of each status that has one of its own (a
    status missing from it has none, or the error's body for a 4xx or 5xx)."""
    content = content or {}
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {code: _response(code, text, content.get(code))
                      for code, text in responses.items()},
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
# A job Redis does not hold is looked up in Dagster (README "Using the API").
JOB_LOOKUP_503 = ("the job is not in Redis and Dagster cannot be asked "
                  "(orchestrator_unavailable)")

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/ingest", "post"): _op("Submit a URL", {
        "202": "job created", "200": "the URL already has a queued or running job",
        "422": "invalid URL", "429": RATE_LIMITED, "503": SUBMIT_503}, body="url", content={
        "202": _json(_ref("Submission")), "200": _json(_ref("Submission"))}),
    ("/api/v1/ingest/batch", "post"): _op("Submit many URLs; one result per URL, each URL "
                                          "counted against the submission rate", {
        "202": "at least one accepted",
        "422": "none accepted (the results say why), or the body is not a list of 1 to 500 URLs"
               ", or more URLs than the submission rate's burst",
        "429": RATE_LIMITED, "503": SUBMIT_503 + "; a batch is refused whole"}, body="urls",
        content={"202": _json(_ref("BatchResult")),
                 "422": _json({"anyOf": [_ref("BatchResult"), ERROR]})}),
    ("/api/v1/ingest/{job_id}", "get"): _op("The job record", {
        "200": "job record", "404": "unknown job", "503": JOB_LOOKUP_503}, [JOB_ID],
        content={"200": _json(_ref("Job"))}),
    ("/api/v1/ingest/{job_id}/cancel", "post"): _op("Cancel a queued or running job", {
        "202": "cancelling", "404": "unknown job", "409": "already finished",
        "503": JOB_LOOKUP_503 + ", or Dagster cannot be asked to end the run"}, [JOB_ID],
        content={"202": _json(_ref("JobAction"))}),
    ("/api/v1/ingest/{job_id}/retry", "post"): _op("Retry a failed job from its failed stage", {
        "202": "retrying under the same job id, or (a job that never got a run) its URL "
               "submitted again as a new job",
        "200": "a job that never got a run: its URL already has a queued or running job",
        "404": "unknown job", "409": "not failed", "429": RATE_LIMITED,
        "503": SUBMIT_503 + "; or " + JOB_LOOKUP_503}, [JOB_ID],
        content={"202": _json(_ref("JobAction")), "200": _json(_ref("JobAction"))}),
    ("/api/v1/jobs", "get"): _op(
        "Jobs, newest first. At most 1,000 jobs are examined per request: a page may hold "
        "fewer than limit jobs (even none) with a next_cursor; the listing ends when "
        "next_cursor is null", {
            "200": "jobs, next_cursor, examined",
            "422": "unknown status (invalid_status), limit (invalid_limit) or cursor "
                   "(invalid_cursor)"}, [
            {"name": "status", "in": "query", "schema": {"type": "string",
                                                         "pattern": STATUS_LIST},
             "description": "queued, running, completed, failed or cancelled; comma-separated "
                            "for several"}, *PAGING],
        content={"200": _json(_ref("JobList"))}),
    ("/api/v1/stream/{job_id}", "get"): {
        **_op("The job's events as Server-Sent Events (replay, then live)", {
            "200": "text/event-stream", "204": "finished, nothing after Last-Event-ID",
            "400": "Last-Event-ID is not a stream entry id (invalid_last_event_id), or the Host "
                   "header is not one this API answers to (untrusted_host)",
            "404": "unknown job",
            "429": "the caller has LIBRARIAN_SSE_MAX_STREAMS_PER_CALLER streams open "
                   "(too_many_streams)",
            "503": "this server has LIBRARIAN_SSE_MAX_STREAMS streams open (streams_full); or "
                   + JOB_LOOKUP_503},
            [JOB_ID, {"name": "Last-Event-ID", "in": "header", "schema": ENTRY_ID},
             {"name": "last_event_id", "in": "query", "schema": ENTRY_ID,
              "description": "the same, for a client that cannot set the header"}],
            content={"200": {"text/event-stream": {"schema": _ref("StreamEvent")}}})},
    ("/api/v1/library", "get"): _op("Library items, newest first", {
        "200": "items",
        "422": "invalid limit, cursor, date, filter (invalid_filter: more than 20 values, or "
               "one longer than 200 characters) or q (invalid_query: over 1,000 characters)"}, [
        *FILTERS, {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 1000}},
        {"name": "since", "in": "query", "schema": DAY, "description": "from this day on"},
        {"name": "until", "in": "query", "schema": DAY, "description": "before this day"},
        *PAGING], content={"200": _json(_ref("ItemList"))}),
    ("/api/v1/library/{item_id}", "get"): _op("One item: summary, metadata, versions, files", {
        "200": "item", "404": "unknown item"}, [ITEM_ID], content={"200": _json(_ref("Item"))}),
    ("/api/v1/library/{item_id}", "delete"): _op(
        "Delete an item, its files and vectors, and its Dagster partition", {
            "200": "deleted (what was left in place is in problems)", "404": "unknown item",
            "409": "a job of the item's URL is queued or running (job_in_progress)"}, [ITEM_ID],
        content={"200": _json(_ref("Deleted"))}),
    ("/api/v1/library/reembed", "post"): _op(
        "Refresh items embedded with another model than the configured one (up to 500 a call)",
        {"202": "runs submitted, or nothing stale",
         "503": "none could be submitted (submit_failed: the body has the members of the 202's "
                "as well, the results saying why), or the queue is full (queue_full)"},
        content={"202": _json(_ref("Reembed"))}),
    ("/api/v1/library/{item_id}/refresh", "post"): _op("Ingest the item's URL again", {
        "202": "job created", "200": "a job is already running", "404": "unknown item",
        "429": RATE_LIMITED, "503": SUBMIT_503}, [ITEM_ID], content={
        "202": _json(_ref("Submission")), "200": _json(_ref("Submission"))}),
    ("/api/v1/library/{item_id}/files/{version}/{kind}", "get"): _op(
        "A stored file of a version: markdown (text/plain) and metadata (JSON) shown inline, "
        "raw (the page as fetched) as a download; all sandboxed (CSP sandbox, nosniff)", {
            "200": "the file: markdown as text/plain, metadata as application/json, raw as the "
                   "media type it was fetched with (application/octet-stream if that is not a "
                   "well-formed one)", "404": "no such file"}, [
            ITEM_ID, {"name": "version", "in": "path", "required": True,
                      "schema": {"type": "integer", "minimum": 1}},
            {"name": "kind", "in": "path", "required": True, "schema": {
                "type": "string", "enum": ["markdown", "raw", "metadata"]}}],
        content={"200": {"text/plain": {"schema": {"type": "string"}},
                         "application/json": {"schema": {}}, "*/*": {"schema": {}}}}),
    ("/api/v1/search", "get"): _op("Hybrid search over chunks, grouped by item", {
        "200": "results", "422": "invalid query, mode, limit or filter",
        "429": "the caller's search rate is used up (too_many_requests)"}, [
        {"name": "q", "in": "query", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": 1000}},
        {"name": "mode", "in": "query", "schema": {"type": "string",
                                                   "enum": ["hybrid", "dense", "sparse"]}},
        *FILTERS, PAGING[0]], content={"200": _json(_ref("SearchResults"))}),
    ("/api/v1/session", "post"): {
        **_op("Sign in with an API token: sets the session cookie (HttpOnly, SameSite=Strict), "
              "answers the session's CSRF token", {
                  "201": "signed in", "401": "the token is not valid",
                  "415": "the body is not sent as application/json (unsupported_media_type)",
                  "422": "no token in the body"}, content={"201": _json(_ref("SignedIn"))}),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["token"], "properties": {
                "token": {"type": "string"}}}}}}},
    ("/api/v1/session", "get"): _op("Who is signed in, and the session's CSRF token", {
        "200": "the token's name and scope; csrf_token for a cookie session"},
        content={"200": _json(_ref("Session"))}),
    ("/api/v1/session", "delete"): _op("Sign out: ends the session", {"204": "signed out"}),
    ("/api/v1/tokens", "get"): _op("API tokens (never the tokens themselves)", {
        "200": "tokens"}, content={"200": _json(_ref("TokenList"))}),
    ("/api/v1/tokens", "post"): {
        **_op("Create an API token; the answer is the only time it is shown", {
            "201": "the token, once",
            "415": "the body is not sent as application/json (unsupported_media_type)",
            "422": "no name, or an unknown scope"}, content={"201": _json(_ref("NewToken"))}),
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["name"], "properties": {
                # 1 to 100 printable characters, not all spaces.
                "name": {"type": "string", "minLength": 1, "maxLength": 100,
                         "pattern": "[^\\s]"},
                "scope": {"type": "string", "enum": ["read", "write", "admin"],
                          "default": "read"}}}}}}},
    ("/api/v1/tokens/{token_id}", "delete"): _op(
        "Revoke a token (and the sessions signed in with it): at once in this process, within "
        "LIBRARIAN_AUTH_CACHE_SECONDS in others", {"200": "revoked", "404": "unknown token"},
        [{"name": "token_id", "in": "path", "required": True,
          "schema": {"type": "integer", "format": "int64", "minimum": 1}}],
        content={"200": _json(_ref("Token"))}),
    ("/api/v1/health", "get"): _op("Health of Redis, the catalog and Dagster: the status alone "
                                   "without credentials; with any token or session, each "
                                   "check, the mirror and the embedding service", {
        "200": "all up", "503": "something is down"},
        content={"200": _json(_ref("Health")), "503": _json(_ref("Health"))}),
    ("/api/v1/openapi.json", "get"): _op("This document", {"200": "OpenAPI document"},
                                         content={"200": _json({"type": "object"})}),
}


ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "request_id"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "stage": {"type": "string"},
        # Also in the X-Request-ID header; the server's log names it with the details.
        "request_id": {"type": "string"}}}}}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    # Open objects: a client must ignore members it does not know, so new ones can be added.
    return {"type": "object", "required": required, "properties": properties}


STRING, INTEGER, NUMBER = {"type": "string"}, {"type": "integer"}, {"type": "number"}
JOB_STATUS = {"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]}
SCOPE = {"type": "string", "enum": ["read", "write", "admin"]}
JOB_LINKS = {"status_url": STRING, "stream_url": STRING}
# The item as the library lists it (librarian.storage.catalog.Catalog.list_items).
ITEM_FIELDS = {
    "id": {"type": "string", "format": "uuid"}, "url": STRING, "canonical_url": STRING,
    "domain": STRING, "title": _nullable("string"), "language": _nullable("string"),
    "summary": _nullable("string"), "keywords": {"type": "array"}, "tier": _nullable("string"),
    "quality_score": _nullable("number"), "word_count": _nullable("integer"),
    "page_type": _nullable("string"), "current_version": _nullable("integer"),
    "created_at": STRING, "updated_at": STRING,
    "links": _object(["self", "original"], {"self": STRING, "original": STRING})}

# What each handler answers on success (librarian_api/*.py), by name.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": ERROR_SCHEMA,
    "Submission": _object(["job_id", "status", "url", "status_url", "stream_url"], {
        "job_id": STRING, "status": JOB_STATUS, "url": STRING, **JOB_LINKS}),
    "BatchResult": _object(["accepted", "results"], {
        "accepted": {"type": "integer", "minimum": 0},
        "results": {"type": "array", "items": _ref("BatchOutcome")}}),
    "BatchOutcome": {"anyOf": [
        {"allOf": [_object(["url", "status_code"], {"url": STRING, "status_code": INTEGER}),
                   _ref("Submission")]},
        _object(["url", "status_code", "error"], {
            "url": STRING, "status_code": INTEGER, "error": _object(["code", "message"], {
                "code": STRING, "message": STRING})})]},
    "JobError": _object(["stage", "code", "message"], {
        "stage": STRING, "code": STRING, "message": STRING}),
    "JobResult": _object(["item_id", "url"], {
        "item_id": STRING, "url": STRING, "title": STRING, "tier": STRING,
        "quality_score": NUMBER, "word_count": INTEGER, "object_key": STRING,
        "version": INTEGER, "changed": {"type": "boolean"}}),
    # librarian.jobs.events.JobRecord without its unset members, and the job's links.
    "Job": _object(["job_id", "status", "url", "percent", "attempt", "status_url",
                    "stream_url"], {
        "job_id": STRING, "status": JOB_STATUS, "url": STRING, "canonical_url": STRING,
        "partition_key": STRING, "run_id": STRING, "stage": STRING, "percent": INTEGER,
        "message": STRING, "attempt": INTEGER, "created_at": NUMBER, "started_at": NUMBER,
        "finished_at": NUMBER, "updated_at": NUMBER, "error": _ref("JobError"),
        "result": _ref("JobResult"), **JOB_LINKS}),
    "JobList": _object(["jobs", "next_cursor", "examined"], {
        "jobs": {"type": "array", "items": _ref("Job")}, "next_cursor": _nullable("string"),
        "examined": {"type": "integer", "minimum": 0}}),
    # A cancel or a retry: the job, what it is now, and (a retry of a job that never got a
    # run) the URL's job it became.
    "JobAction": _object(["job_id", "status", "status_url", "stream_url"], {
        "job_id": STRING, "status": {"type": "string", "enum": [
            "queued", "running", "cancelling", "cancelled"]}, "run_id": STRING, "url": STRING,
        "retry_of": STRING, **JOB_LINKS}),
    "ItemSummary": _object(list(ITEM_FIELDS), ITEM_FIELDS),
    "ItemList": _object(["items", "next_cursor", "limit"], {
        "items": {"type": "array", "items": _ref("ItemSummary")},
        "next_cursor": _nullable("string"), "limit": INTEGER}),
    "Version": _object(["version", "content_hash", "fetched_at", "object_keys", "files"], {
        "version": INTEGER, "content_hash": STRING, "fetched_at": STRING,
        "final_url": _nullable("string"), "status_code": _nullable("integer"),
        "content_type": _nullable("string"), "etag": _nullable("string"),
        "last_modified": _nullable("string"), "object_keys": {"type": "object"},
        "quality_score": _nullable("number"), "tier": _nullable("string"),
        "word_count": _nullable("integer"), "chunk_count": _nullable("integer"),
        "embedding_model": _nullable("string"), "run_id": _nullable("string"),
        # Each kind of file: a link to it (the API's, or a signed one of an S3 store).
        "files": {"type": "object", "additionalProperties": STRING}}),
    "Item": {"allOf": [_ref("ItemSummary"), _object(["versions"], {
        "partition_key": STRING, "author": _nullable("string"),
        "published": _nullable("string"), "last_checked_at": _nullable("string"),
        "versions": {"type": "array", "items": _ref("Version")}})]},
    # One Server-Sent Event of a job's stream (OpenAPI 3.1: the schema of each event). Its
    # data is a JSON job event (librarian.jobs.events.JobEvent); its id, the Redis entry's.
    "StreamEvent": _object(["event", "data"], {
        "event": {"type": "string", "enum": [*(t.value for t in EventType), "server_shutdown"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"}}),
    "Deleted": _object(["deleted", "files_deleted", "partition_deleted", "problems"], {
        "deleted": STRING, "files_deleted": {"type": "integer", "minimum": 0},
        "partition_deleted": {"type": "boolean"},
        "problems": {"type": "array", "items": STRING}}),
    "Reembed": _object(["model", "stale", "accepted", "remaining", "results"], {
        "model": STRING, "stale": {"type": "integer", "minimum": 0},
        "accepted": {"type": "integer", "minimum": 0}, "remaining": INTEGER,
        "results": {"type": "array", "items": _ref("BatchOutcome")}}),
    "SearchResult": _object(["item_id", "score", "passages"], {
        "item_id": STRING, "url": _nullable("string"), "title": _nullable("string"),
        "tier": _nullable("string"), "language": _nullable("string"),
        "domain": _nullable("string"), "score": NUMBER, "passages": {
            "type": "array", "items": _object(["score", "heading_path", "highlight"], {
                "chunk_index": _nullable("integer"), "score": NUMBER,
                "heading_path": {"type": "array", "items": STRING},
                # HTML-escaped text, the query's words in <mark>.
                "highlight": STRING})}}),
    "SearchResults": _object(["query", "mode", "results"], {
        "query": STRING, "mode": {"type": "string", "enum": ["hybrid", "dense", "sparse"]},
        "results": {"type": "array", "items": _ref("SearchResult")}}),
    "Session": _object(["name", "scope", "via", "csrf_token"], {
        "name": STRING, "scope": SCOPE,
        "via": {"type": "string", "enum": ["bearer", "cookie", "local"]},
        "csrf_token": _nullable("string")}),
    "SignedIn": {"allOf": [_ref("Session"), _object(["csrf_token", "expires_in"], {
        "csrf_token": STRING, "expires_in": INTEGER})]},
    "Token": _object(["id", "name", "scope", "created_at", "last_used_at", "revoked_at"], {
        "id": INTEGER, "name": STRING, "scope": SCOPE, "created_at": STRING,
        "last_used_at": _nullable("string"), "revoked_at": _nullable("string")}),
    "NewToken": {"allOf": [_ref("Token"), _object(["token"], {"token": STRING})]},
    "TokenList": _object(["tokens"], {"tokens": {"type": "array", "items": _ref("Token")}}),
    # Without credentials the status alone; with any, every member that applies.
    "Health": _object(["status"], {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "down": {"type": "array", "items": {"type": "string", "enum": [
            "redis", "catalog", "dagster"]}},
        "checks": {"type": "object", "additionalProperties": STRING},
        "mirror": {"type": "object", "additionalProperties": NUMBER},
        "embedding_service": _object(["status"], {"status": STRING}),
        "streams": _object(["open", "max"], {"open": INTEGER, "max": INTEGER}),
        "request_id": STRING, "restarts": {"type": "object"}}),
}

# Every operation but these two needs Redis or the catalog (the operation itself, or the
# credentials it is sent with); health answers an outage with its own body.
OWN_OUTAGE_ANSWER = {("/api/v1/health", "get"), ("/api/v1/openapi.json", "get")}
STORES_UNAVAILABLE = {"503": _response("503", (
    "the job store (Redis) or the catalog (PostgreSQL) is unavailable (redis_unavailable, "
    "catalog_unavailable)"))}


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
        stores = STORES_UNAVAILABLE if (path, method) not in OWN_OUTAGE_ANSWER else {}
        paths.setdefault(path, {})[method] = {**op, **auth, "responses": _merged(
            guards, auth["responses"], op["responses"], stores)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Librarian", "version": "1",
                 "description": "Turn URLs into a searchable knowledge library."},
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES,
                       "schemas": SCHEMAS},
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(build(request.app.routes))
