// Librarian's page: sign in with an API token, submit URLs, follow each job live over
// Server-Sent Events, browse and search the library. Plain browser APIs only (fetch,
// EventSource): no build step.
"use strict";

const API = "/api/v1";
// The session's CSRF token: in memory only (never in storage another script could read), sent
// on every request that changes something. After a reload, GET /session gives it again.
let csrfToken = null;
const ERROR_WORDS = {
  unauthorized: "Sign in again.",
  forbidden: "Your token's scope does not allow this.",
  invalid_csrf_token: "Reload the page and try again.",
  invalid_url: "That is not a web address Librarian can fetch.",
  blocked_address: "The address points into a private network, which is not allowed.",
  dns_error: "The site's name could not be found.",
  connect_error: "The site could not be reached.",
  timeout: "The site took too long to answer.",
  too_large: "The page is larger than the size limit.",
  too_many_redirects: "The page redirects too many times.",
  not_found: "The page does not exist (404).",
  rate_limited: "The site asked us to slow down; try again later.",
  http_error: "The site answered with an error.",
  unsupported_type: "This kind of file cannot be added (HTML, PDF, text and Markdown can).",
  empty_content: "No readable text was found on the page.",
  blocked_by_site: "The site blocked automated access (bot check or captcha).",
  encrypted_document: "The PDF is password-protected.",
  corrupt_document: "The file is damaged and cannot be read.",
  storage_error: "Saving to the library failed; try again.",
  run_failed: "The job stopped unexpectedly.",
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
};

async function api(path, { signingIn = false, ...options } = {}) {
  const method = (options.method || "GET").toUpperCase();
  const headers = { "Content-Type": "application/json" };
  if (csrfToken && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(API + path, { ...options, headers, credentials: "same-origin" });
  const body = response.status === 204 ? null : await response.json();
  // Not signed in, or the session ended (expired, signed out elsewhere, token revoked).
  if (response.status === 401 && !signingIn) showSignIn();
  if (!response.ok) throw Object.assign(new Error(body?.error?.message || response.statusText),
                                        { code: body?.error?.code });
  return body;
}

// -- signing in ------------------------------------------------------------------------------

// Open job streams: closed on sign-out, with what the page showed of the library.
const streams = new Set();

function showSignIn(message = "") {
  csrfToken = null;
  for (const stream of streams) stream.close();
  streams.clear();
  for (const id of ["jobs", "items", "item"]) $(id).replaceChildren();
  $("item-panel").hidden = true;
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("sign-in-error").textContent = message;
  $("sign-in-panel").hidden = false;
  $("token").focus();
}

function showApp(session) {
  csrfToken = session.csrf_token;
  $("who").textContent = session.via === "local" ? "" : `${session.name} (${session.scope})`;
  $("sign-out").hidden = session.via !== "cookie";
  $("sign-in-panel").hidden = true;
  $("app").hidden = false;
  loadLibrary();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    const session = await api("/session", { method: "POST", signingIn: true,
                                            body: JSON.stringify({ token: $("token").value.trim() }) });
    $("token").value = "";
    showApp(session);
  } catch (error) {
    $("sign-in-error").textContent = error.code === "unauthorized"
      ? "That token is not valid (unknown or revoked)." : explain(error);
  }
});

$("sign-out").onclick = async () => {
  try { await api("/session", { method: "DELETE" }); } finally { showSignIn(); }
};

function explain(error) {
  return `${ERROR_WORDS[error.code] || error.message} (${error.code}${error.stage ? ", " + error.stage : ""})`;
}

// -- jobs ------------------------------------------------------------------------------------

function followJob(job, url) {
  if (document.querySelector(`[data-job="${job.job_id}"]`)) return;
  const bar = el("div");
  // Stages appear as the job reaches them: their names come from the events, not from here.
  const stages = el("div", { class: "stages" });
  const stageNode = (stage) => card.querySelector(`[data-stage="${stage}"]`)
    || stages.appendChild(el("span", { class: "stage", "data-stage": stage }, stage));
  const status = el("div", { class: "status" }, "queued");
  const card = el("li", { class: "job queued", "data-job": job.job_id },
    el("div", { class: "url" }, url), el("div", { class: "bar" }, bar), stages, status);
  $("jobs").prepend(card);
  const setStatus = (kind, text) => { card.className = `job ${kind}`; status.textContent = text; };
  const stream = new EventSource(job.stream_url);
  streams.add(stream);
  const on = (type, handler) => stream.addEventListener(type, (e) => handler(JSON.parse(e.data)));
  on("job_started", () => setStatus("running", "started"));
  // Each event carries the whole job's percent (job_percent): nothing is recomputed here.
  const advance = (e) => { if (e.job_percent != null) bar.style.width = `${e.job_percent}%`; };
  on("stage_started", (e) => {
    stageNode(e.stage).classList.add("active");
    advance(e);
    setStatus("running", `${e.stage}…`);
  });
  on("stage_progress", (e) => {
    advance(e);
    if (e.message) setStatus("running", `${e.stage}: ${e.message}`);
  });
  on("stage_completed", (e) => {
    const node = stageNode(e.stage);
    node.classList.remove("active"); node.classList.add("done");
    node.textContent = `${e.stage} ${(e.duration_ms / 1000).toFixed(1)} s`;
    advance(e);
  });
  on("job_completed", (e) => {
    bar.style.width = "100%";
    setStatus("completed", "completed");
    const r = e.result || {};
    status.append(" — ", el("a", { href: "#", "data-item": r.item_id }, r.title || r.url || "open"),
                  " ", el("span", { class: "tier" }, `tier ${r.tier || "?"}`));
    status.querySelector("a").onclick = (ev) => { ev.preventDefault(); showItem(r.item_id); };
    stream.close();
    loadLibrary();
  });
  stream.addEventListener("error", (e) => {
    if (e.data !== undefined) {  // the job's error event
      const event = JSON.parse(e.data);
      setStatus("failed", "failed: " + explain(event.error || event));
      stream.close();
    } else if (stream.readyState === EventSource.CLOSED) {
      // Refused (a 401 when the session ended): asking who is signed in shows the sign-in box.
      api("/session").catch(() => {});
    }
  });
  on("job_cancelled", () => { setStatus("cancelled", "cancelled"); stream.close(); });
}


$("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("submit-error").textContent = "";
  const urls = $("urls").value.split(/\s+/).filter(Boolean);
  try {
    const body = await api("/ingest/batch", { method: "POST", body: JSON.stringify({ urls }) });
    for (const r of body.results) {
      if (r.job_id) followJob(r, r.url);
      else $("submit-error").textContent += `${r.url}: ${explain(r.error)}\n`;
    }
    $("urls").value = "";
  } catch (error) {
    $("submit-error").textContent = explain(error);
  }
});

// -- library ---------------------------------------------------------------------------------

let nextCursor = null;

// A search passage comes HTML-escaped with <mark> around the query's words: it is rebuilt as
// text and <mark> nodes, never parsed as HTML (nothing a stored page holds becomes markup).
const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'" };
const unescape = (text) => text.replace(/&(amp|lt|gt|quot|#x27);/g, (entity) => ENTITIES[entity]);

function passage(highlight) {
  const node = el("div", { class: "passage" });
  let marked = false;
  for (const part of (highlight || "").split(/(<\/?mark>)/)) {
    if (part === "<mark>" || part === "</mark>") marked = part === "<mark>";
    else if (part) node.append(marked ? el("mark", {}, unescape(part)) : unescape(part));
  }
  return node;
}

function itemRow(item) {
  const title = el("a", { href: "#" }, item.title || item.url);
  title.onclick = (ev) => { ev.preventDefault(); showItem(item.item_id || item.id); };
  const row = el("li", { class: "item" }, title, " ", el("span", { class: "tier" }, `tier ${item.tier || "?"}`),
    el("div", { class: "muted" }, `${item.domain || ""} ${item.language ? "· " + item.language : ""}`));
  if (item.passages) {
    for (const p of item.passages) row.append(passage(p.highlight));
  } else if (item.summary) {
    row.append(el("div", {}, item.summary));
  }
  return row;
}

async function loadLibrary(more = false) {
  const params = new URLSearchParams({ limit: "20" });
  if ($("tier").value) params.set("tier", $("tier").value);
  if (more && nextCursor) params.set("cursor", nextCursor);
  const body = await api(`/library?${params}`);
  if (!more) $("items").replaceChildren();
  body.items.forEach((item) => $("items").append(itemRow(item)));
  nextCursor = body.next_cursor;
  $("more").hidden = !nextCursor;
}

$("more").onclick = () => loadLibrary(true);

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) return loadLibrary();
  const params = new URLSearchParams({ q, limit: "20" });
  if ($("tier").value) params.set("tier", $("tier").value);
  const body = await api(`/search?${params}`);
  $("items").replaceChildren(...body.results.map(itemRow));
  $("more").hidden = true;
});

async function showItem(id) {
  const item = await api(`/library/${id}`);
  const current = item.versions[0] || {};
  const files = current.files || {};
  $("item").replaceChildren(
    el("h2", {}, item.title || item.url),
    el("p", {}, el("a", { href: item.canonical_url, rel: "noopener", target: "_blank" }, "Original page"),
       " · ", el("a", { href: files.markdown || "#", target: "_blank" }, "Stored copy (Markdown)")),
    el("p", {}, item.summary || ""),
    el("p", { class: "muted" }, `Tier ${item.tier} · quality ${item.quality_score?.toFixed(2)} · ` +
       `${item.word_count} words · ${item.language || "?"} · version ${item.current_version} · ` +
       `${(item.keywords || []).join(", ")}`));
  $("item-panel").hidden = false;
  $("item-panel").scrollIntoView();
}

$("close-item").onclick = () => { $("item-panel").hidden = true; };

api("/health").then((h) => { $("health").textContent = h.status; })
  .catch((e) => { $("health").textContent = "unavailable: " + e.message; });
// Signed in already (the session cookie, or authentication off on this machine)?
api("/session").then(showApp).catch((e) => {
  if (e.code !== "unauthorized") $("health").textContent = "unavailable: " + e.message;
});
