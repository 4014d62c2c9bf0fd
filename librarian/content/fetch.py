"""The one HTTP client of the extract stage: timeouts, a streamed byte cap, checked redirects,
conditional requests, optional robots.txt, and an SSRF guard on unless a network is allow-listed.

The guard has two layers. Every URL (and every redirect hop) is resolved and refused if any
address is not public before a request is built; and the connection itself is made by
:class:`GuardedBackend`, which resolves the host again, checks each address and connects to
exactly the address it checked, so a DNS answer that changes in between (rebinding) never
reaches a private address and no request is ever sent to one.

One total time limit covers the whole fetch: name lookups, connect, TLS, sending the request,
the response headers, every redirect hop, the body and robots.txt. Every network operation on a
guarded connection is given at most what is left of it (:class:`Deadline`), so a server that
trickles its headers or body a byte at a time cannot stretch a fetch past the limit: each read
returns early with what came, and the first one that would start past the deadline fails at
once.

Bodies are decoded here, not by httpx, so the byte cap bounds the *decoded* size while it is
produced (a gzip or brotli bomb stops at the cap instead of filling memory).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib import robotparser
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from librarian.canonical_url import canonicalize
from librarian.content.page_signals import is_challenge
from librarian.errors import ErrorCode, FetchError, InvalidURL
from librarian.settings import Settings

Progress = Callable[[int, str], None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


@dataclass(frozen=True)
class FetchLimits:
    """What the fetcher may do; the values come from :class:`~librarian.settings.Settings`."""

    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_bytes: int
    max_redirects: int
    user_agent: str
    allow_networks: tuple[str, ...]
    respect_robots: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        return cls(connect_timeout=settings.fetch_connect_timeout,
                   read_timeout=settings.fetch_read_timeout,
                   total_timeout=settings.fetch_total_timeout,
                   max_bytes=settings.fetch_max_bytes,
                   max_redirects=settings.fetch_max_redirects,
                   user_agent=settings.fetch_user_agent,
                   allow_networks=tuple(settings.fetch_allow_networks),
                   respect_robots=settings.fetch_respect_robots)


@dataclass
class FetchedResponse:
    url: str
    final_url: str
    status_code: int
    content_type: str
    charset: str | None
    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    redirects: list[str] = field(default_factory=list)

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


def is_blocked_address(ip: IPAddress) -> bool:
    """True for every address that is not plainly public unicast."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_blocked_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_blocked_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _SIX_TO_FOUR:
            return is_blocked_address(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
        if ip in _SITE_LOCAL:
            return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


class Deadline:
    """The one total time limit of a fetch, shared by every network operation it makes."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.reached = False

    def passed(self) -> bool:
        return self.reached or time.monotonic() >= self.at

    def bound(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` cut to what is left; ``error`` at once when nothing is."""
        left = self.at - time.monotonic()
        if left <= 0:
            self.reached = True
            raise error("total time limit reached")
        return left if timeout is None else min(timeout, left)


# The deadline of the fetch running in this thread (or task). A pooled connection may outlive
# the fetch that opened it, so each operation looks up the deadline of the fetch using it now.
_current_deadline: ContextVar[Deadline | None] = ContextVar("librarian_fetch_deadline",
                                                            default=None)


def _within_deadline(operation: Callable[[float | None], T], timeout: float | None,
                     error: type[Exception]) -> T:
    deadline = _current_deadline.get()
    if deadline is None:
        return operation(timeout)
    bounded = deadline.bound(timeout, error)
    try:
        return operation(bounded)
    except httpcore.TimeoutException:
        if bounded != timeout:  # the deadline ran out, not the operation's own limit
            deadline.reached = True
        raise


def _getaddrinfo(host: str, port: int) -> list[Any]:
    """``socket.getaddrinfo``, ended by the fetch's deadline: a site's own name server can be as
    slow as its owner likes. The lookup runs in a daemon thread, left to finish on its own
    (within the resolver's timeouts) when the deadline comes first."""
    deadline = _current_deadline.get()
    if deadline is None or _is_ip_literal(host):  # nothing to wait for
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    left = deadline.bound(None, TimeoutError)
    answer: list[Any] = []
    failure: list[Exception] = []

    def lookup() -> None:
        try:
            answer.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:
            failure.append(exc)

    thread = threading.Thread(target=lookup, name="librarian-dns", daemon=True)
    thread.start()
    thread.join(left)
    if thread.is_alive():
        deadline.reached = True
        raise TimeoutError(f"no answer for {host}")
    if failure:
        raise failure[0]
    return answer


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AddressGuard:
    def __init__(self, allow_networks: Iterable[str]) -> None:
        self._allow = [ipaddress.ip_network(n, strict=False) for n in allow_networks]

    def check(self, address: str, url: str | None = None) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self._allow):
            return
        if is_blocked_address(ip):
            raise FetchError(ErrorCode.BLOCKED_ADDRESS,
                             f"refusing to fetch from non-public address {ip}", url=url)

    def resolve(self, host: str, port: int, url: str | None = None) -> list[str]:
        """Every address of ``host``, all checked; raises if any is not allowed."""
        try:
            infos = _getaddrinfo(host, port)
        except TimeoutError as exc:
            raise FetchError(ErrorCode.TIMEOUT, f"total time limit reached looking up {host}",
                             url=url, transient=True) from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(ErrorCode.DNS_ERROR, f"cannot resolve {host}: {exc}", url=url) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            self.check(address, url)
        return addresses


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the fetch's deadline.

    httpcore gives each socket operation its own timeout, which a server resets with every byte
    it sends; cutting each timeout to what is left of the total makes the total hold anyway.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within_deadline(lambda t: self._stream.read(max_bytes, t), timeout,
                                httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within_deadline(lambda t: self._stream.write(buffer, t), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return DeadlineStream(_within_deadline(
            lambda t: self._stream.start_tls(ssl_context, server_hostname, t), timeout,
            httpcore.ConnectTimeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to addresses the guard has just approved (no rebinding window), within the
    fetch's deadline."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.guard.resolve(host, port):
            connect = partial(super().connect_tcp, address, port, local_address=local_address,
                              socket_options=socket_options)
            try:
                return DeadlineStream(_within_deadline(connect, timeout, httpcore.ConnectTimeout))
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpx has no parameter for the network backend of its pool; the pool has.
        self._pool._network_backend = GuardedBackend(guard)  # type: ignore[union-attr]


class _BoundedDecoder:
    """Content-Encoding decoder whose output never exceeds the bytes still allowed."""

    def __init__(self, encoding: str, url: str) -> None:
        self.encoding = encoding
        self.url = url
        self._zlib: Any = None
        self._brotli: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        elif encoding == "br":
            import brotli

            self._brotli = brotli.Decompressor()
        elif encoding not in ("", "identity"):
            raise FetchError(ErrorCode.DECODE_ERROR, f"unsupported content encoding {encoding!r}",
                             url=url)

    def decode(self, data: bytes, room: int) -> bytes:
        """Decode ``data``; output longer than ``room`` means the cap was passed."""
        try:
            if self._zlib is not None:
                out = bytes(self._zlib.decompress(data, room + 1))
                if self._zlib.unconsumed_tail:
                    return out + b"\0"  # more output waiting: over the cap for sure
                return out
            if self._brotli is not None:
                return bytes(self._brotli.process(data, output_buffer_limit=room + 1))
        except (zlib.error, Exception) as exc:  # brotli.error has no importable base
            if isinstance(exc, FetchError):
                raise
            raise FetchError(ErrorCode.DECODE_ERROR,
                             f"cannot decode the {self.encoding} body: {exc}",
                             url=self.url) from exc
        return data


class Fetcher:
    def __init__(self, limits: FetchLimits, transport: httpx.BaseTransport | None = None) -> None:
        self.limits = limits
        self.guard = AddressGuard(limits.allow_networks)
        self._client = httpx.Client(
            transport=transport or GuardedTransport(self.guard),
            follow_redirects=False,
            timeout=httpx.Timeout(limits.read_timeout, connect=limits.connect_timeout),
            headers={"User-Agent": limits.user_agent,
                     "Accept": "text/html,application/xhtml+xml,application/pdf,text/plain;q=0.9,"
                               "text/markdown;q=0.9,*/*;q=0.5",
                     "Accept-Encoding": "gzip, deflate, br"},
            trust_env=False,  # a proxy from the environment would bypass the address checks
        )
        self._robots: dict[str, robotparser.RobotFileParser] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, progress: Progress | None = None, *, etag: str | None = None,
              last_modified: str | None = None) -> FetchedResponse:
        """GET ``url``; with validators, a 304 comes back as ``not_modified`` with no body.

        Everything, robots.txt and every redirect included, ends within the total time limit.
        """
        deadline = Deadline(self.limits.total_timeout)
        token = _current_deadline.set(deadline)
        try:
            return self._fetch(url, progress, deadline, etag, last_modified)
        finally:
            _current_deadline.reset(token)

    def _fetch(self, url: str, progress: Progress | None, deadline: Deadline,
               etag: str | None, last_modified: str | None) -> FetchedResponse:
        redirects: list[str] = []
        current = url
        conditional = {k: v for k, v in (("If-None-Match", etag),
                                         ("If-Modified-Since", last_modified)) if v}
        while True:
            self._check_url(current)
            if self.limits.respect_robots:
                self._check_robots(current, deadline)
            response = self._open(current, deadline, conditional)
            if response.has_redirect_location:
                location = response.headers.get("location", "")
                response.close()
                if len(redirects) >= self.limits.max_redirects:
                    raise FetchError(ErrorCode.TOO_MANY_REDIRECTS,
                                     f"more than {self.limits.max_redirects} redirects", url=url)
                redirects.append(current)
                current = urljoin(current, location)
                continue
            try:
                body = b"" if response.status_code == 304 else self._read_body(
                    response, url, deadline, progress)
            finally:
                response.close()
            if response.status_code in (403, 429, 503) and is_challenge(body):
                raise FetchError(ErrorCode.BLOCKED_BY_SITE, f"HTTP {response.status_code}: the site"
                                 " answered with a bot check or captcha", url=url)
            check_status(response.status_code, response.headers, url)
            content_type = response.headers.get("content-type", "").partition(";")[0]
            return FetchedResponse(
                url=url, final_url=current, status_code=response.status_code,
                content_type=content_type.strip().lower(), charset=response.charset_encoding,
                body=body, etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"), redirects=redirects,
            )

    # -- steps ---------------------------------------------------------------------------------

    def _check_url(self, url: str) -> None:
        try:
            canonical = canonicalize(url)
        except InvalidURL as exc:
            raise FetchError(ErrorCode.INVALID_URL, exc.message, url=url) from exc
        self.guard.resolve(canonical.host, urlsplit(canonical.url).port or 443, url)

    def _check_robots(self, url: str, deadline: Deadline) -> None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        parser = self._robots.get(origin)
        if parser is None:
            parser = robotparser.RobotFileParser()
            try:
                response = self._open(origin + "/robots.txt", deadline, {})
                try:
                    text = b"" if response.status_code >= 400 else self._read_body(
                        response, url, deadline, None, cap=512 * 1024)
                finally:
                    response.close()
                parser.parse(text.decode("utf-8", "replace").splitlines())
            except FetchError as exc:
                if exc.code == ErrorCode.TIMEOUT and deadline.passed():
                    # Not "no robots.txt": the fetch as a whole is out of time.
                    raise FetchError(ErrorCode.TIMEOUT, "total time limit reached while reading"
                                     " robots.txt", url=url, transient=True) from exc
                parser.parse([])  # no readable robots.txt: everything is allowed
            self._robots[origin] = parser
        if not parser.can_fetch(self.limits.user_agent, url):
            raise FetchError(ErrorCode.BLOCKED_BY_ROBOTS, "robots.txt disallows this URL", url=url)

    def _open(self, url: str, deadline: Deadline, headers: dict[str, str]) -> httpx.Response:
        if deadline.passed():
            raise FetchError(ErrorCode.TIMEOUT, "total time limit reached", url=url, transient=True)
        request = self._client.build_request("GET", url, headers=headers)
        try:
            return self._client.send(request, stream=True)
        except FetchError:
            raise
        except httpx.TimeoutException as exc:
            if deadline.passed():
                raise FetchError(ErrorCode.TIMEOUT, "total time limit reached before the response"
                                 " headers arrived", url=url, transient=True) from exc
            doing = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting"
            raise FetchError(ErrorCode.TIMEOUT, f"timed out {doing}: {exc}", url=url,
                             transient=True) from exc
        except httpx.ConnectError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, FetchError):  # refused by the guarded backend
                raise FetchError(cause.code, cause.message, url=url,
                                 transient=cause.transient) from exc
            raise FetchError(ErrorCode.CONNECT_ERROR, f"cannot connect: {exc}", url=url) from exc
        except httpx.HTTPError as exc:
            raise FetchError(ErrorCode.HTTP_ERROR, f"request failed: {exc}", url=url) from exc

    def _read_body(self, response: httpx.Response, url: str, deadline: Deadline,
                   progress: Progress | None, cap: int | None = None) -> bytes:
        cap = cap or self.limits.max_bytes
        declared = response.headers.get("content-length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > cap and not response.headers.get("content-encoding"):
            raise FetchError(ErrorCode.TOO_LARGE,
                             f"Content-Length {total} exceeds the {cap}-byte limit",
                             url=url)
        # A response built from bytes (a test transport) was read and decoded by httpx already.
        preread = hasattr(response, "_content")
        decoder = _BoundedDecoder("" if preread else response.headers.get(
            "content-encoding", "").strip().lower(), url)
        stream: Iterable[bytes] = [response.content] if preread else response.iter_raw()
        chunks: list[bytes] = []
        size = raw_size = 0
        last_report = -1
        try:
            for raw in stream:
                raw_size += len(raw)
                chunk = decoder.decode(raw, cap - size)
                size += len(chunk)
                if size > cap:
                    raise FetchError(ErrorCode.TOO_LARGE, f"response exceeds the {cap}-byte limit",
                                     url=url)
                if deadline.passed():
                    raise FetchError(ErrorCode.TIMEOUT,
                                     "total time limit reached while downloading",
                                     url=url, transient=True)
                chunks.append(chunk)
                if progress and total:
                    pct = min(99, raw_size * 100 // max(total, 1))
                    if pct // 10 > last_report:
                        last_report = pct // 10
                        progress(pct, f"downloaded {raw_size:,} of {total:,} bytes")
        except FetchError:
            raise
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            if deadline.passed():
                raise FetchError(ErrorCode.TIMEOUT, "total time limit reached while downloading",
                                 url=url, transient=True) from exc
            if isinstance(exc, httpx.TimeoutException):
                raise FetchError(ErrorCode.TIMEOUT, f"timed out reading: {exc}", url=url,
                                 transient=True) from exc
            if isinstance(exc, httpx.RemoteProtocolError):
                raise FetchError(ErrorCode.INCOMPLETE_RESPONSE,
                                 f"the server broke off the response: {exc}", url=url,
                                 transient=True) from exc
            raise FetchError(ErrorCode.HTTP_ERROR, f"download failed: {exc}", url=url,
                             transient=True) from exc
        if progress:
            progress(100, f"downloaded {size:,} bytes")
        return b"".join(chunks)


def check_status(status: int, headers: httpx.Headers, url: str) -> None:
    if status < 400:
        return
    if status in (404, 410):
        raise FetchError(ErrorCode.NOT_FOUND, f"HTTP {status}: the page does not exist", url=url)
    if status == 429:
        retry_after = headers.get("retry-after", "")
        raise FetchError(ErrorCode.RATE_LIMITED, "HTTP 429: the site asks us to slow down", url=url,
                         transient=True,
                         retry_after=float(retry_after) if retry_after.isdigit() else None)
    if status >= 500:
        raise FetchError(ErrorCode.HTTP_ERROR,
                         f"HTTP {status} from the server", url=url, transient=True)
    raise FetchError(ErrorCode.HTTP_ERROR, f"HTTP {status}", url=url)
