"""Page-derived text printed by the CLI: escape sequences, control characters and bidi overrides
are removed, by ``printable`` and on the CLI's real printing path (an API answered by httpx's
MockTransport)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from librarian.cli import client as cli_client
from librarian.cli.main import main
from librarian.cli.printable import printable

ESC = "\x1b"
HOSTILE = {
    "clear screen": (f"Title{ESC}[2J{ESC}[H here", "Title here"),
    "colours": (f"{ESC}[1;31mred{ESC}[0m text", "red text"),
    "OSC 8 link, ST": (f"{ESC}]8;;https://evil.example/{ESC}\\click me{ESC}]8;;{ESC}\\",
                       "click me"),
    "OSC 8 link, BEL": (f"{ESC}]8;;https://evil.example/\x07click me{ESC}]8;;\x07", "click me"),
    "window title": (f"{ESC}]0;pwned\x07page", "page"),
    "OSC 52 clipboard": (f"a{ESC}]52;c;Y3VybCBldmlsIHwgc2g=\x07b", "ab"),
    "8-bit CSI": ("x\x9b2Jy\x9b31mz", "xyz"),
    "8-bit OSC": ("x\x9d0;t\x9cy", "xy"),
    "reset (ESC c)": (f"a{ESC}cb", "ab"),
    "cut-short CSI": (f"tail{ESC}[31", "tail"),
    "carriage return": ("safe\rEVIL", "safe EVIL"),
    "bidi override": ("invoice\u202eexe.pdf", "invoiceexe.pdf"),
    "bidi isolates": ("a\u2066b\u2067c\u2068d\u2069e", "abcde"),
    "NUL, BEL, BS, DEL": ("a\x00b\x07c\x08d\x7fe", "abcde"),
    "C1 NEL": ("one\x85two", "one two"),
    "line separator": ("one\u2028two", "one two"),
    "newline and tab": ("first\nsecond\tthird", "first second third"),
}


@pytest.mark.parametrize(("raw", "clean"), HOSTILE.values(), ids=HOSTILE.keys())
def test_escape_sequences_and_controls_are_removed(raw: str, clean: str) -> None:
    assert printable(raw) == clean


def test_multiline_keeps_newlines_and_tabs_only() -> None:
    raw = f"line one\r\nline{ESC}[2K two\tend\rX\u202e\n"
    assert printable(raw, multiline=True) == "line one\nline two\tendX\n"


@pytest.mark.parametrize("text", ["Crème brûlée", "東京の天気", "مرحبا\u200fبالعالم",
                                  "a [link=x]b[/link] c", "https://example.com/a?b=1#c"])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert printable(text) == text


def test_no_control_character_survives() -> None:
    every = "".join(chr(c) for c in range(0xA0)) + "\u202a\u202b\u202c\u202d\u202e"
    for multiline in (False, True):
        allowed = {"\n", "\t"} if multiline else set()
        left = {ch for ch in printable(every * 2, multiline=multiline)
                if (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0x202A <= ord(ch) <= 0x202E)}
        assert left <= allowed


# -- through the CLI ---------------------------------------------------------------------------

TITLE = f"Nice{ESC}[2J{ESC}]8;;https://evil.example/{ESC}\\ title{ESC}]8;;{ESC}\\\u202e"
URL = "https://pages.example/a"
MESSAGE = f"HTTP 500\r{ESC}[32mall good\x9b0m"
JOB = "6f1c0a52-3b8e-4a8f-9d7e-2f4b1c9e8a10"


def _api(monkeypatch: pytest.MonkeyPatch, answer: Callable[[httpx.Request], httpx.Response]
         ) -> None:
    """The CLI's own ApiClient, talking to ``answer`` instead of a server."""
    real = cli_client.ApiClient.__init__

    def init(self: cli_client.ApiClient, base: str, token: str | None = None) -> None:
        real(self, base, token)
        self.http = httpx.Client(base_url=self.base, transport=httpx.MockTransport(answer))

    monkeypatch.setattr(cli_client.ApiClient, "__init__", init)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    if isinstance(info.value.code, str):  # SystemExit's message goes to stderr
        err += info.value.code
    return out, err


def _assert_safe(text: str) -> None:
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", text), repr(text)


def _record(**changes: Any) -> dict[str, Any]:
    return {"job_id": JOB, "status": "failed", "percent": 40, "stage": "extract", "url": URL,
            "error": {"code": "http_error", "stage": "extract", "message": MESSAGE},
            "result": {"item_id": "i1", "title": TITLE, "tier": "A"}, **changes}


def test_status_jobs_and_search_print_page_text_safely(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/ingest/"):
            return httpx.Response(200, json=_record())
        if request.url.path == "/api/v1/jobs":
            return httpx.Response(200, json={"jobs": [_record(url=URL + "\x1b[2J")]})
        return httpx.Response(200, json={"results": [{
            "title": TITLE, "tier": "A", "url": URL,
            "passages": [{"highlight": f"<mark>tomatoes</mark>{ESC}]0;owned\x07 grow\rX"}]}]})

    _api(monkeypatch, answer)
    out, _ = _run(["status", JOB], capsys)
    _assert_safe(out)
    assert "Nice title" in out and "HTTP 500 all good" in out
    out, _ = _run(["jobs"], capsys)
    _assert_safe(out)
    assert URL in out
    out, _ = _run(["search", "tomatoes"], capsys)
    _assert_safe(out)
    assert "*tomatoes* grow X" in out and "Nice title" in out
    # --json is for scripts and already safe: JSON escapes every control character.
    out, _ = _run(["status", JOB, "--json"], capsys)
    _assert_safe(out)
    assert json.loads(out)["result"]["title"] == TITLE


def test_errors_and_failed_urls_print_safely(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/ingest/batch":
            return httpx.Response(200, json={"results": [
                {"url": URL + "\u202e", "error": {"code": "invalid_url", "message": MESSAGE}}]})
        return httpx.Response(503, json={"error": {"code": "http_error", "message": MESSAGE}})

    _api(monkeypatch, answer)
    _out, err = _run(["ingest", URL], capsys)
    _assert_safe(err)
    assert "invalid_url: HTTP 500 all good" in err
    _out, err = _run(["status", JOB], capsys)
    _assert_safe(err)
    assert "error 503: http_error: HTTP 500 all good" in err


def test_following_a_job_prints_its_progress_and_result_safely(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    events = [("stage_progress", {"type": "stage_progress", "stage": "extract",
                                  "job_percent": 40, "message": MESSAGE}),
              ("job_completed", {"type": "job_completed",
                                 "result": {"title": TITLE, "tier": "A"}})]
    stream = "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/ingest/batch":
            return httpx.Response(200, json={"results": [{
                "job_id": JOB, "status": "queued", "url": URL + "[red]x[/red]\x1b[2J",
                "stream_url": f"http://api.test/api/v1/stream/{JOB}"}]})
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    _api(monkeypatch, answer)
    out, err = _run(["ingest", URL, "--follow"], capsys)
    _assert_safe(out + err)
    assert f"✓ {URL}[red]x[/red] → Nice title (tier A)" in out
    # The progress bar's label is the URL as text, not Rich markup.
    assert out.count("[red]x[/red]") == 2
