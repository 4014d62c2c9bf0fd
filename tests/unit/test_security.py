"""The rules behind the request guards and the stored files' headers, and the web page's
promise to its Content-Security-Policy: no inline code, no markup built from data."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pydantic import ValidationError

from librarian.settings import Settings
from librarian_api.security import HostRule, normalized_origin, stored_file_headers

STATIC = Path(__file__).resolve().parents[2] / "librarian_api" / "static"


def test_allowed_hosts_default_to_loopback_and_read_a_comma_separated_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().allowed_hosts == ["localhost", "127.0.0.1", "::1"]
    assert Settings().allowed_origins == [] and Settings().max_body_bytes == 1024 * 1024
    monkeypatch.setenv("LIBRARIAN_ALLOWED_HOSTS", " librarian.lan, *.home.example ,")
    monkeypatch.setenv("LIBRARIAN_ALLOWED_ORIGINS", '["https://ui.example"]')  # JSON works too
    settings = Settings()
    assert settings.allowed_hosts == ["librarian.lan", "*.home.example"]
    assert settings.allowed_origins == ["https://ui.example"]
    with pytest.raises(ValidationError, match="ALLOWED_HOSTS is empty"):
        Settings(allowed_hosts=[])
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(allowed_origins=["ui.example/app"])


def test_host_names_match_exactly_by_subdomain_pattern_or_not_at_all() -> None:
    rule = HostRule(["localhost", "[::1]", "*.lan.example"])
    assert rule.allows("localhost:8000") and rule.allows("LocalHost")
    assert rule.allows("[::1]:8000") and rule.allows("box.lan.example:80")
    for host in ("", "evil.example", "localhost.evil.example", "lan.example",
                 "localhost:notaport", "localhost/path", "user@localhost", "evil.lan.example.x"):
        assert not rule.allows(host), host
    assert rule.allows("10.0.0.5:8000", bound="10.0.0.5")
    assert not rule.allows("10.0.0.5:8000", bound="0.0.0.0")
    assert HostRule(["*"]).allows("anything.example")


def test_origins_compare_by_scheme_host_and_port() -> None:
    assert normalized_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert normalized_origin("HTTPS://UI.example") == "https://ui.example:443"
    assert normalized_origin("http://[::1]:8000") == "http://[::1]:8000"
    for origin in ("null", "file://", "chrome-extension://abc", "http://x:99999", ""):
        assert normalized_origin(origin) is None, origin


def test_a_stored_files_name_is_safe_ascii_with_the_exact_name_beside_it() -> None:
    headers = stored_file_headers("müller.example-straße-v1.html", download=True)
    assert headers["content-disposition"] == (
        'attachment; filename="m_ller.example-stra_e-v1.html"; '
        "filename*=UTF-8''m%C3%BCller.example-stra%C3%9Fe-v1.html")
    injected = stored_file_headers('a"; evil=1\r\nSet-Cookie: x.md', download=False)
    assert injected["content-disposition"].startswith('inline; filename="a_evil_1_Set-Cookie_x.md"')
    assert "\r" not in injected["content-disposition"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"].startswith("sandbox; default-src 'none'")


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self._in_script = tag == "script"
        if tag == "script" and not names.get("src"):
            self.problems.append("a script without src")
        if tag == "style":
            self.problems.append("a <style> element")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag} {name}=")
            if (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"{tag} {name}=javascript:")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script text")


def test_the_page_runs_only_its_own_files_and_never_turns_data_into_markup() -> None:
    """What its CSP (``script-src 'self'``, ``style-src 'self'``) needs, and what keeps a
    stored page's text from becoming markup on the API's origin."""
    markup = _Markup()
    markup.feed((STATIC / "index.html").read_text())
    assert markup.problems == []
    script = (STATIC / "app.js").read_text()
    sinks = re.findall(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|"
                       r"new Function|setAttribute\(\s*[\"']on)", script)
    assert sinks == []
