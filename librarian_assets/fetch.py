"""The one HTTP client of the extract stage: timeouts, a streamed byte cap, checked redirects,
and an SSRF guard that is on unless a network is explicitly allow-listed.

Every hop is validated (scheme, resolved addresses) before it is requested, and the address the
socket actually connected to is checked again before any body is read, so a DNS answer that
changes between our lookup and the connection (rebinding) cannot reach a private address.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from librarian.canonical_url import canonicalize
from librarian.errors import FetchError, InvalidURL

Progress = Callable[[int, str], None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = "Librarian/0.1"
    allow_networks: tuple[str, ...] = ()


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
    elapsed_ms: int = 0


class Fetcher:
    def __init__(self, limits: FetchLimits, transport: httpx.BaseTransport | None = None) -> None:
        self.limits = limits
        self._allow = [ipaddress.ip_network(n, strict=False) for n in limits.allow_networks]
        self._check_connected = transport is None  # a test transport has no socket to check
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(limits.read_timeout, connect=limits.connect_timeout),
            headers={"User-Agent": limits.user_agent,
                     "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5"},
            trust_env=False,  # a proxy from the environment would bypass the address checks
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, progress: Progress | None = None) -> FetchedResponse:
        started = time.monotonic()
        deadline = started + self.limits.total_timeout
        redirects: list[str] = []
        current = url
        while True:
            self._check_url(current)
            response = self._open(current, deadline)
            if response.is_redirect:
                location = response.headers.get("location", "")
                response.close()
                if len(redirects) >= self.limits.max_redirects:
                    raise FetchError("too_many_redirects",
                                     f"more than {self.limits.max_redirects} redirects", url=url)
                redirects.append(current)
                current = urljoin(current, location)
                continue
            try:
                body = self._read_body(response, url, deadline, progress)
            finally:
                response.close()
            self._check_status(response, url)
            content_type, _, _params = response.headers.get("content-type", "").partition(";")
            return FetchedResponse(
                url=url, final_url=current, status_code=response.status_code,
                content_type=content_type.strip().lower(), charset=response.charset_encoding,
                body=body, etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"), redirects=redirects,
                elapsed_ms=int((time.monotonic() - started) * 1000),
            )

    # -- steps ---------------------------------------------------------------------------------

    def _check_url(self, url: str) -> None:
        try:
            canonical = canonicalize(url)
        except InvalidURL as exc:
            raise FetchError("invalid_url", exc.message, url=url) from exc
        host = canonical.host
        port = urlsplit(canonical.url).port or 443
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError("dns_error", f"cannot resolve {host}: {exc}", url=url) from exc
        for info in infos:
            self._check_address(str(info[4][0]), url)

    def _check_address(self, address: str, url: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self._allow):
            return
        if is_blocked_address(ip):
            raise FetchError("blocked_address",
                             f"refusing to fetch from non-public address {ip}", url=url)

    def _open(self, url: str, deadline: float) -> httpx.Response:
        if time.monotonic() > deadline:
            raise FetchError("timeout", "total time limit reached", url=url, transient=True)
        request = self._client.build_request("GET", url)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"timed out connecting: {exc}", url=url,
                             transient=True) from exc
        except httpx.ConnectError as exc:
            raise FetchError("connect_error", f"cannot connect: {exc}", url=url) from exc
        except httpx.HTTPError as exc:
            raise FetchError("http_error", f"request failed: {exc}", url=url) from exc
        if self._check_connected:
            stream = response.extensions.get("network_stream")
            peer = stream.get_extra_info("server_addr") if stream is not None else None
            if peer:
                try:
                    self._check_address(str(peer[0]), url)
                except FetchError:
                    response.close()
                    raise
        return response

    def _read_body(self, response: httpx.Response, url: str, deadline: float,
                   progress: Progress | None) -> bytes:
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > cap:
            raise FetchError("too_large", f"Content-Length {total} exceeds the {cap}-byte limit",
                             url=url)
        chunks: list[bytes] = []
        size = 0
        last_report = -1
        try:
            # iter_bytes decodes gzip/deflate/brotli: the cap counts decoded bytes (bomb-safe).
            for chunk in response.iter_bytes(64 * 1024):
                size += len(chunk)
                if size > cap:
                    raise FetchError("too_large", f"response exceeds the {cap}-byte limit", url=url)
                if time.monotonic() > deadline:
                    raise FetchError("timeout", "total time limit reached while downloading",
                                     url=url, transient=True)
                chunks.append(chunk)
                if progress and total:
                    pct = min(99, size * 100 // max(total, 1))
                    if pct // 10 > last_report:
                        last_report = pct // 10
                        progress(pct, f"downloaded {size:,} of {total:,} bytes")
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"timed out reading: {exc}", url=url,
                             transient=True) from exc
        except httpx.DecodingError as exc:
            raise FetchError("decode_error", f"cannot decode the response: {exc}", url=url) from exc
        except httpx.HTTPError as exc:
            raise FetchError("http_error", f"download failed: {exc}", url=url,
                             transient=True) from exc
        if progress:
            progress(100, f"downloaded {size:,} bytes")
        return b"".join(chunks)

    @staticmethod
    def _check_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status in (404, 410):
            raise FetchError("not_found", f"HTTP {status}: the page does not exist", url=url)
        if status == 429:
            retry_after = response.headers.get("retry-after", "")
            raise FetchError("rate_limited", "HTTP 429: the site asks us to slow down", url=url,
                             transient=True,
                             retry_after=float(retry_after) if retry_after.isdigit() else None)
        if status >= 500:
            raise FetchError("http_error", f"HTTP {status} from the server", url=url,
                             transient=True)
        raise FetchError("http_error", f"HTTP {status}", url=url)


def is_blocked_address(ip: IPAddress) -> bool:
    """True for every address that is not plainly public unicast."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_blocked_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_blocked_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _SIX_TO_FOUR:
            return is_blocked_address(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified
