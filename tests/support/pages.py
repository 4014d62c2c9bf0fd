"""Pages served from 127.0.0.1 for the pipeline and end-to-end tests."""

from __future__ import annotations

import hashlib
import time
from http.server import BaseHTTPRequestHandler

from tests.support.local_server import LocalServer

ARTICLE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Growing Tomatoes at Home</title><meta name="author" content="Jane Roe">
<meta name="description" content="How to grow tomatoes in a home garden.">
</head><body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>Growing Tomatoes at Home</h1>
<p>Tomatoes are among the most rewarding plants to grow in a home garden. They need plenty of
sun, regular watering and a rich soil to produce a generous harvest through the summer.</p>
<h2>Choosing a variety</h2>
<p>Cherry tomatoes are forgiving and fast, while beefsteak varieties need a longer season.
Heirloom tomatoes offer unusual colours and flavours but resist disease less well than hybrids.</p>
<h2>Planting</h2>
<p>Plant seedlings deep, burying part of the stem, because tomatoes grow roots along the buried
stem. Space plants about sixty centimetres apart so air moves between them after rain.</p>
<p>Water at the base of the plant in the morning. Mulch keeps the soil moist and stops
soil-borne diseases from splashing onto the leaves during heavy rain.</p>
<h2>Harvest</h2><ul><li>Pick when fully coloured.</li><li>Store at room temperature.</li></ul>
</article><footer>Copyright 2026 Garden Notes</footer></body></html>"""

TEXT = """Notes on sourdough baking

A sourdough starter is a culture of wild yeast and lactic acid bacteria. Feed it flour and water
every day and keep it warm; after a week it rises reliably and smells pleasantly sour.

Bake with a long cold fermentation for a more open crumb and a deeper flavour."""




def hostile_page(beacon: str) -> bytes:
    """An article whose markup tries to run script three ways (an inline script, an image's
    ``onerror`` and, as text in its body, a tag that runs if the text is ever parsed as HTML);
    each would load ``beacon`` with a query saying which way ran."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Pruning Apple Trees in Winter</title>
<script>window.pwned = "inline"; new Image().src = "{beacon}?inline";</script>
</head><body><article><h1>Pruning Apple Trees in Winter</h1>
<img src="/no-such-image.png"
     onerror="window.pwned = 'onerror'; new Image().src = '{beacon}?onerror'">
<p>Winter is the right season to prune apple trees: the tree is dormant, the branches are bare
and the cuts heal quickly once the sap rises again in spring. Start by removing dead, diseased
and crossing branches, then open the centre of the tree so light and air reach the fruit.</p>
<p>Never remove more than a quarter of the canopy in one year. Cut just above an outward-facing
bud with a clean, sloping cut, and step back often to look at the shape of the whole tree.</p>
<p>A note for web developers who paste markup into articles:
&lt;img src=x onerror="window.pwned = 'markdown'; new Image().src = '{beacon}?markdown'"&gt;
is the kind of tag a careless viewer would run.</p>
<h2>Tools</h2><p>Sharp bypass secateurs for thin shoots, a pruning saw for thick limbs and a
pair of gloves are all you need; clean the blades between trees to avoid spreading canker.</p>
</article></body></html>""".encode()


class PageServer(LocalServer):
    """A threaded HTTP server with fixed routes; ``pages`` can be extended by tests."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.pages: dict[str, tuple[int, str, bytes]] = {
            "/article.html": (200, "text/html; charset=utf-8", ARTICLE.encode()),
            "/notes.txt": (200, "text/plain; charset=utf-8", TEXT.encode()),
            "/missing": (404, "text/html", b"<html><body>Not found</body></html>"),
            "/binary.bin": (200, "application/octet-stream", bytes(range(256)) * 64),
            # Answers after ?seconds (default 2): a page to catch a run in the middle of extract.
            "/slow": (200, "text/html; charset=utf-8", ARTICLE.encode()),
            "/flaky": (200, "text/plain; charset=utf-8", TEXT.encode()),
        }
        self.hits: dict[str, int] = {}
        self.not_modified = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                if path == "/slow":
                    time.sleep(float(self.path.partition("?")[2] or 2))
                if path == "/flaky" and server.hits[path] <= 2:
                    # Rate-limited twice, then the page: a transient failure to retry.
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path.startswith("/redirect/"):
                    hops = int(path.rsplit("/", 1)[1])
                    self.send_response(302)
                    self.send_header("Location", f"/redirect/{hops - 1}" if hops > 1
                                     else "/article.html")
                    self.end_headers()
                    return
                status, ctype, body = server.pages.get(path, server.pages["/missing"])
                if path not in server.pages:
                    status = 404
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if status == 200 and self.headers.get("If-None-Match") == etag:
                    server.not_modified += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("ETag", etag)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler, host)

    def add_text(self, path: str, text: str) -> str:
        """Serve ``text`` as a plain-text page at ``path``; returns its URL."""
        self.pages[path] = (200, "text/plain; charset=utf-8", text.encode())
        return self.url(path)
