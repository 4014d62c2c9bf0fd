"""One error tree for the whole of Librarian, and the one list of stable error codes.

    LibrarianError                   code (ErrorCode), stage, message, url
    ├── InvalidURL                   submit     invalid_url
    ├── FetchError                   extract    blocked_address, dns_error, connect_error, timeout,
    │                                           too_large, too_many_redirects, not_found,
    │                                           rate_limited, http_error, incomplete_response,
    │                                           blocked_by_robots
    ├── ContentError                 extract    unsupported_type, empty_content, decode_error,
    │                                           corrupt_document, encrypted_document,
    │                                           blocked_by_site, not_found
    ├── EnrichmentError              transform  embedding_error
    │   └── EmbeddingServiceUnavailable         (the caller embeds locally instead)
    ├── StorageError                 load       storage_error
    ├── OrchestratorUnavailable      submit     orchestrator_unavailable
    ├── RunPoolError                 launch     run_pool_unavailable
    │   ├── PoolUnavailable                     nothing reached the pool (the launcher falls back)
    │   └── PoolError                           the pool took the request but did not answer
    ├── LocalServerError             startup    local_server_failed
    └── ApiError (librarian_api.errors)  request  the API's own request errors

Transient errors (timeouts, 429, 5xx, storage) carry ``transient=True`` and are retried inside
the run. Codes are stable strings: they reach the job's ``error`` event and record, the API's
JSON errors and the Dagster UI (as failure metadata); the README's error tables list every one
(tested both ways). Messages are for people.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    # A URL, before any fetch.
    INVALID_URL = "invalid_url"
    # Fetching (stage extract).
    BLOCKED_ADDRESS = "blocked_address"
    BLOCKED_BY_ROBOTS = "blocked_by_robots"
    DNS_ERROR = "dns_error"
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    HTTP_ERROR = "http_error"
    INCOMPLETE_RESPONSE = "incomplete_response"
    # Content (stage extract).
    DECODE_ERROR = "decode_error"
    UNSUPPORTED_TYPE = "unsupported_type"
    CORRUPT_DOCUMENT = "corrupt_document"
    ENCRYPTED_DOCUMENT = "encrypted_document"
    BLOCKED_BY_SITE = "blocked_by_site"
    EMPTY_CONTENT = "empty_content"
    # Later stages.
    EMBEDDING_ERROR = "embedding_error"
    STORAGE_ERROR = "storage_error"
    # Runs.
    PARTITION_MISMATCH = "partition_mismatch"
    RUN_FAILED = "run_failed"
    INTERNAL_ERROR = "internal_error"
    ORCHESTRATOR_UNAVAILABLE = "orchestrator_unavailable"
    RUN_REFUSED = "run_refused"
    RUN_POOL_UNAVAILABLE = "run_pool_unavailable"
    LOCAL_SERVER_FAILED = "local_server_failed"
    # The API's request errors.
    INVALID_REQUEST = "invalid_request"
    INVALID_LIMIT = "invalid_limit"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_DATE = "invalid_date"
    INVALID_STATUS = "invalid_status"
    INVALID_QUERY = "invalid_query"
    INVALID_MODE = "invalid_mode"
    INVALID_LAST_EVENT_ID = "invalid_last_event_id"
    INVALID_FILTER = "invalid_filter"
    JOB_NOT_FOUND = "job_not_found"
    ITEM_NOT_FOUND = "item_not_found"
    FILE_NOT_FOUND = "file_not_found"
    JOB_FINISHED = "job_finished"
    JOB_NOT_FAILED = "job_not_failed"
    JOB_IN_PROGRESS = "job_in_progress"
    SUBMIT_FAILED = "submit_failed"
    REDIS_UNAVAILABLE = "redis_unavailable"
    CATALOG_UNAVAILABLE = "catalog_unavailable"
    TOKEN_NOT_FOUND = "token_not_found"
    # The router's own refusals: a path the API does not have, a method its path does not take.
    NO_SUCH_PATH = "no_such_path"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # Authentication and authorisation (librarian_api.auth).
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INVALID_CSRF_TOKEN = "invalid_csrf_token"
    # The API's request guards (librarian_api.security, and JSON bodies).
    UNTRUSTED_HOST = "untrusted_host"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    # The API's limits (librarian_api.rate_limits, .stream_slots, the queue cap). Not
    # ``rate_limited``: that one is a site answering a fetch with 429.
    TOO_MANY_REQUESTS = "too_many_requests"
    QUEUE_FULL = "queue_full"
    TOO_MANY_STREAMS = "too_many_streams"
    STREAMS_FULL = "streams_full"


class LibrarianError(Exception):
    stage: ClassVar[str] = "pipeline"

    def __init__(self, code: ErrorCode, message: str, *, url: str | None = None,
                 transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.url = url
        self.transient = transient
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r},"
                f" url={self.url!r})")


class InvalidURL(LibrarianError):
    stage = "submit"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_URL, message, url=url)


class FetchError(LibrarianError):
    stage = "extract"


class ContentError(LibrarianError):
    stage = "extract"


class EnrichmentError(LibrarianError):
    stage = "transform"


class EmbeddingServiceUnavailable(EnrichmentError):
    """No answer, a broken answer or a refusal from the embedding service: the caller embeds
    locally instead, so this never fails a job."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.EMBEDDING_ERROR, message, transient=True)


class StorageError(LibrarianError):
    stage = "load"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(ErrorCode.STORAGE_ERROR, message, url=url, transient=True)


class OrchestratorUnavailable(LibrarianError):
    """Dagster could not be reached or refused the request."""

    stage = "submit"

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.ORCHESTRATOR_UNAVAILABLE, message, transient=True)


class RunRefused(LibrarianError):
    """Dagster answered and would not create the run: trying again changes nothing."""

    stage = "submit"

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.RUN_REFUSED, message)


class RunPoolError(LibrarianError):
    stage = "launch"

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.RUN_POOL_UNAVAILABLE, message, transient=True)


class PoolUnavailable(RunPoolError):
    """Nothing reached the warm run pool: the launcher may start the run another way."""


class PoolError(RunPoolError):
    """The pool took the request but did not answer: the run may have started."""


class LocalServerError(LibrarianError):
    """A private PostgreSQL or Redis server of the embedded mode could not start."""

    stage = "startup"

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.LOCAL_SERVER_FAILED, message)
