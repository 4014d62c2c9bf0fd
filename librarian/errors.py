"""One error hierarchy for the whole pipeline and API.

    LibrarianError                 code, stage, message, url
    ├── InvalidURL                 invalid_url            (submit / extract)
    ├── FetchError                 stage extract: blocked_address, dns_error, connect_error,
    │   │                          timeout, too_large, too_many_redirects, not_found,
    │   │                          rate_limited, http_error
    │   └── (transient: timeout, connect_error, rate_limited, 5xx -> retried by the op)
    ├── ContentError               stage extract: unsupported_type, empty_content, decode_error
    ├── EnrichmentError            stage transform: embedding_error
    └── StorageError               stage load: storage_error

Codes are stable strings: they reach the job's ``error`` event and record, the API's JSON errors
and the Dagster UI (as failure metadata). Messages are for people.
"""

from __future__ import annotations

from typing import ClassVar


class LibrarianError(Exception):
    stage: ClassVar[str] = "pipeline"

    def __init__(self, code: str, message: str, *, url: str | None = None,
                 transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.url = url
        self.transient = transient
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code!r}, message={self.message!r},"
                f" url={self.url!r})")


class InvalidURL(LibrarianError):
    stage = "submit"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__("invalid_url", message, url=url)


class FetchError(LibrarianError):
    stage = "extract"


class ContentError(LibrarianError):
    stage = "extract"


class EnrichmentError(LibrarianError):
    stage = "transform"


class StorageError(LibrarianError):
    stage = "load"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__("storage_error", message, url=url, transient=True)
