"""Pages that answer but are not content: bot challenges, captchas and soft 404s.

Such pages must never be stored as the content of a URL: a challenge becomes
``blocked_by_site``, a "page not found" served with status 200 becomes ``not_found``.
"""

from __future__ import annotations

import re

_CHALLENGE_MARKERS = (
    "/cdn-cgi/challenge-platform/", "cf-browser-verification", "cf_chl_opt", "challenge-form",
    "g-recaptcha", "h-captcha", "hcaptcha.com/1/api.js", "px-captcha", "_incapsula_resource",
    "datadome", "are you a robot", "verify you are human", "enable javascript and cookies to "
    "continue", "checking your browser before accessing", "attention required! | cloudflare",
    "ddos protection by", "request unsuccessful. incapsula incident",
)
_CHALLENGE_TITLES = re.compile(
    r"^\s*(just a moment\.*|attention required!.*|access denied|please wait\.*.*cloudflare.*|"
    r"security check|captcha|are you a robot\??|one more step|ddos-guard)\s*$", re.I)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_H1 = re.compile(rb"<h1[^>]*>(.*?)</h1>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")
_NOT_FOUND = re.compile(
    r"\b(404|page not found|not found|page (does not|doesn't|cannot be|can't be) (exist|found)|"
    r"no longer (exists|available)|seite nicht gefunden|page introuvable|"
    r"página no encontrada)\b", re.I)


def _title(body: bytes) -> str:
    match = _TITLE.search(body[:200_000])
    return " ".join(_TAGS.sub(" ", match.group(1).decode("utf-8", "replace")).split()) if match \
        else ""


def is_challenge(body: bytes) -> bool:
    """A bot-protection interstitial or captcha page rather than the page asked for."""
    if _CHALLENGE_TITLES.match(_title(body)):
        return True
    head = body[:300_000].decode("utf-8", "replace").lower()
    hits = sum(marker in head for marker in _CHALLENGE_MARKERS)
    # One marker can sit on a real page (a comment form's captcha); a challenge page is small
    # and says so more than once, or is almost nothing but the marker.
    return hits >= 2 or (hits == 1 and len(body) < 20_000)


def is_soft_404(body: bytes, extracted_words: int) -> bool:
    """A "not found" page served with a success status."""
    if extracted_words > 300:
        return False
    h1 = _H1.search(body[:300_000])
    heading = " ".join(_TAGS.sub(" ", h1.group(1).decode("utf-8", "replace")).split()) if h1 \
        else ""
    return any(_NOT_FOUND.search(text) for text in (_title(body), heading) if text)
