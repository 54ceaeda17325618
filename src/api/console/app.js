// Tenantry console: a client of the public HTTP API, same origin. Every string from the server
// is tenant data (titles, snippets, answers): it is only ever set as text (textContent, or text
// nodes), never parsed as HTML. The API key lives in this tab's sessionStorage only.
"use strict";

const KEY = "tenantry.key";
// `view` counts page renders: a timer from an earlier page sees a newer count and stops.
const state = { who: null, blobs: [], view: 0 };

// Run `f` after `ms` only if no other page (or the same page again) was shown meanwhile.
function later(ms, f) {
  const view = state.view;
  setTimeout(() => { if (state.view === view) f(); }, ms);
}

// ---------- DOM helpers ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k === "text") e.textContent = String(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function main() { return document.getElementById("main"); }

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  m.focus();
}

function toast(msg) {
  const t = el("div", { text: msg });
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 5000);
}

// The API's timestamps are Unix seconds.
function when(secs) {
  return secs ? new Date(secs * 1000).toLocaleString() : "";
}

// The last 30 UTC days, as the usage endpoints take them.
function last30Days() {
  const to = new Date(), from = new Date(Date.now() - 29 * 86400000);
  const day = (d) => d.toISOString().slice(0, 10);
  return { from, to, day, query: `from=${day(from)}&to=${day(to)}` };
}

function ago(secs) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - secs));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1 << 20)).toFixed(1)} MB`;
}

// A snippet is escaped text with matched terms in <b>…</b> (the API's format). It is rebuilt
// as text nodes and <mark> elements: nothing in it is ever interpreted as markup.
function snippetNodes(snippet) {
  const unescape = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  const out = [];
  const parts = String(snippet).split(/(<b>|<\/b>)/);
  let bold = false;
  for (const p of parts) {
    if (p === "<b>") { bold = true; continue; }
    if (p === "</b>") { bold = false; continue; }
    if (!p) continue;
    const t = unescape(p);
    out.push(bold ? el("mark", { text: t }) : document.createTextNode(t));
  }
  return out;
}

// ---------- API ----------
class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body, opts) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: "omit", cache: "no-store", ...(opts || {}) });
  // `raw`: the caller reads the body itself (a stream, HTML); errors are handled here alike.
  if (opts && opts.raw && r.ok) return r;
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    const err = (json && json.error) || {};
    const retry = Number(r.headers.get("Retry-After")) || 0;
    if (r.status === 401 && path !== "/v1/whoami") signOut("Your key was refused; sign in again.");
    throw new ApiError(r.status, err.code || `http_${r.status}`, err.message || r.statusText, retry);
  }
  return json;
}

function errorBox(e) {
  const code = e instanceof ApiError ? `${e.code}: ` : "";
  return el("p", { class: "error", role: "alert", text: `${code}${e.message}` });
}

// ---------- sign-in ----------
function signOut(msg) {
  sessionStorage.removeItem(KEY);
  state.who = null;
  renderChrome();
  location.hash = "#/signin";
  if (msg) toast(msg);
}

function signInPage() {
  const input = el("input", { type: "password", id: "key", name: "key", autocomplete: "off", required: true, class: "wide", "aria-label": "API key" });
  const status = el("div");
  const form = el("form", { class: "row", on: { submit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = "";
    try {
      state.who = await api("GET", "/v1/whoami");
      renderChrome();
      location.hash = state.who.kind === "admin" ? "#/tenants" : "#/documents";
    } catch (e) {
      sessionStorage.removeItem(KEY);
      status.replaceChildren(errorBox(e));
    }
  } } },
    el("label", {}, "API key (a tenant's key, or the admin key)", input),
    el("button", { type: "submit", id: "signin" }, "Sign in"));
  show(el("h1", { text: "Sign in" }),
    el("p", { class: "muted", text: "The key stays in this tab only (session storage) and is sent to this server alone. What you see follows the key's tenant and role; the API enforces it." }),
    form, status);
  input.focus();
}

// ---------- chrome ----------
const TENANT_PAGES = [
  ["documents", "Documents", "reader"],
  ["upload", "Upload", "writer"],
  ["jobs", "Jobs", "reader"],
  ["search", "Search", "reader"],
  ["answer", "Answer", "reader"],
  ["threads", "Threads", "reader"],
  ["usage", "Usage", "tenant_admin"],
  ["keys", "Keys", "tenant_admin"],
];
const ADMIN_PAGES = [["tenants", "Tenants", null], ["activity", "Latency & errors", null], ["queue", "Ingestion queue", null], ["reports", "Reports", null]];
const RANK = { reader: 0, writer: 1, tenant_admin: 2 };

function pagesFor(who) {
  if (!who) return [];
  if (who.kind === "admin") return ADMIN_PAGES;
  return TENANT_PAGES.filter(([, , min]) => RANK[who.role] >= RANK[min]);
}

function renderChrome() {
  const nav = document.getElementById("nav");
  const current = (location.hash.slice(2) || "").split("/")[0];
  nav.replaceChildren(...pagesFor(state.who).map(([id, name]) =>
    el("a", { href: `#/${id}`, "aria-current": id === current ? "page" : false, text: name })));
  const who = document.getElementById("who");
  who.textContent = !state.who ? "" : state.who.kind === "admin" ? "operator (admin key)" : `tenant ${state.who.tenant} · ${state.who.role}`;
  document.getElementById("signout").hidden = !state.who;
}

// ---------- tenant pages ----------
async function documentsPage() {
  show(el("h1", { text: "Documents" }), el("p", { class: "muted", text: "Loading…" }));
  const rows = [];
  let after = null;
  try {
    do {
      const page = await api("GET", `/v1/documents?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      rows.push(...page.documents);
      after = page.next_after;
    } while (after && rows.length < 10000);
  } catch (e) { return show(el("h1", { text: "Documents" }), errorBox(e)); }
  const canWrite = RANK[state.who.role] >= RANK.writer;
  if (!rows.length) {
    return show(el("h1", { text: "Documents" }), el("p", { class: "empty", text: canWrite ? "No documents yet. Upload some on the Upload page." : "No documents yet." }));
  }
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ["Title", "Id", "Status", "Version", "Chunks", "Size", "Updated", ""].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((d) => el("tr", { "data-doc": d.id },
      el("td", { class: "title" }, d.version ? el("a", { href: `#/doc/${encodeURIComponent(d.id)}`, text: d.title }) : el("span", { text: d.title })),
      el("td", { text: d.id }),
      el("td", { class: d.status === "failed" ? "error" : "", text: d.status }),
      el("td", { text: d.version ?? "" }),
      el("td", { text: d.chunk_count }),
      el("td", { text: bytes(d.byte_size) }),
      el("td", { text: when(d.updated_at) }),
      el("td", {}, canWrite ? el("button", { class: "danger", type: "button", "aria-label": `Delete ${d.title}`, on: { click: async () => {
        if (!confirm(`Delete "${d.title}"?`)) return;
        try { await api("DELETE", `/v1/documents/${encodeURIComponent(d.id)}`); toast(`Deleted ${d.title}`); documentsPage(); }
        catch (e) { toast(e.message); }
      } } }, "Delete") : null)))));
  show(el("h1", { text: "Documents" }), el("p", { class: "muted", text: `${rows.length} document(s)` }), el("div", { class: "table-wrap" }, table));
}

async function filesOf(dataTransfer) {
  const out = [];
  const walk = (entry) => new Promise((resolve) => {
    if (entry.isFile) return entry.file((f) => { out.push(f); resolve(); }, () => resolve());
    if (!entry.isDirectory) return resolve();
    const reader = entry.createReader();
    const batch = () => reader.readEntries(async (entries) => {
      if (!entries.length) return resolve();
      for (const e of entries) await walk(e);
      batch();
    }, () => resolve());
    batch();
  });
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (entries.length) { for (const e of entries) await walk(e); return out; }
  return [...dataTransfer.files];
}

function uploadPage() {
  const list = el("tbody");
  const summary = el("div", { role: "status" });
  const files = el("input", { type: "file", id: "files", multiple: true, "aria-label": "Files" });
  const folder = el("input", { type: "file", id: "folder", webkitdirectory: true, "aria-label": "A folder" });
  const drop = el("div", { class: "drop", id: "drop", tabindex: "0" }, "Drop files or folders here");
  const start = (fl) => upload([...fl], list, summary);
  files.addEventListener("change", () => start(files.files));
  folder.addEventListener("change", () => start(folder.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => { e.preventDefault(); drop.classList.remove("over"); start(await filesOf(e.dataTransfer)); });
  show(el("h1", { text: "Upload" }),
    el("p", { class: "muted", text: "PDF, Markdown, HTML and plain text. Each file becomes a document (its name is the id); uploading a file again replaces it." }),
    drop,
    el("div", { class: "row" }, el("label", {}, "Files", files), el("label", {}, "A folder", folder)),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["File", "Stage", "Progress", "Result"].map((h) => el("th", { scope: "col", text: h })))), list)),
    summary);
}

function docIdOf(name) {
  const base = name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+/, "").slice(0, 128);
  return base || "document";
}

async function upload(files, list, summary) {
  files = files.filter((f) => f.size > 0);
  const results = [];
  let next = 0;
  const one = async (f) => {
    const stage = el("td", { text: "queued" });
    const bar = el("progress", { max: 1, value: 0, "aria-label": `Progress of ${f.name}` });
    const result = el("td");
    list.append(el("tr", { "data-file": f.name }, el("td", { text: f.webkitRelativePath || f.name }), stage, el("td", {}, bar), result));
    const form = new FormData();
    form.append("id", docIdOf(f.name));
    form.append("title", f.name);
    form.append("file", f, f.name);
    let job;
    for (let attempt = 0; ; attempt++) {
      try { job = await api("POST", "/v1/documents", form); break; } catch (e) {
        if ((e.status === 429 || e.status === 503) && attempt < 20) { stage.textContent = `waiting ${e.retryAfter || 1} s (${e.code})`; await new Promise((r) => setTimeout(r, 1000 * (e.retryAfter || 1))); continue; }
        stage.textContent = "refused"; result.replaceChildren(errorBox(e)); results.push({ f, ok: false, code: e.code, message: e.message }); return;
      }
    }
    for (;;) {
      let j;
      try { j = await api("GET", `/v1/jobs/${encodeURIComponent(job.job_id)}`); } catch (e) { result.replaceChildren(errorBox(e)); results.push({ f, ok: false, code: e.code, message: e.message }); return; }
      stage.textContent = j.stage || j.status;
      if (j.chunks_total) { bar.max = j.chunks_total; bar.value = j.chunks_done; bar.title = `${j.chunks_done} / ${j.chunks_total} chunks`; }
      if (j.status === "succeeded") { stage.textContent = "succeeded"; bar.max = 1; bar.value = 1; result.replaceChildren(el("span", { class: "ok", text: `${j.chunks_done} chunks` })); results.push({ f, ok: true }); return; }
      if (j.status === "failed") { stage.textContent = "failed"; const err = j.error || {}; result.replaceChildren(el("span", { class: "error", text: `${err.code}: ${err.message}` })); results.push({ f, ok: false, code: err.code, message: err.message }); return; }
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const worker = async () => { while (next < files.length) await one(files[next++]); };
  summary.replaceChildren(el("p", { class: "muted", text: `Uploading ${files.length} file(s)…` }));
  await Promise.all([worker(), worker(), worker()]);
  const failed = results.filter((r) => !r.ok);
  summary.replaceChildren(el("p", { id: "upload-summary", text: `${results.length - failed.length} of ${results.length} succeeded.` }),
    failed.length ? el("ul", { class: "error" }, failed.map((r) => el("li", { text: `${r.f.name}: ${r.code}: ${r.message}` }))) : null);
}

function searchPage() {
  const q = el("input", { type: "search", id: "q", name: "q", required: true, "aria-label": "Query", placeholder: "Ask your documents" });
  const mode = el("select", { id: "mode", "aria-label": "Mode" }, ["hybrid", "dense", "bm25"].map((m) => el("option", { value: m, text: m })));
  const fusion = el("select", { id: "fusion", "aria-label": "Fusion" }, el("option", { value: "", text: "default" }), ["rrf", "dbsf", "convex"].map((m) => el("option", { value: m, text: m })));
  const topk = el("input", { type: "number", id: "topk", min: 1, max: 100, value: 10, "aria-label": "Top k" });
  const docs = el("input", { type: "text", id: "docs", placeholder: "doc ids, comma-separated", "aria-label": "Only these documents" });
  const out = el("div", { id: "results", "aria-live": "polite" });
  const form = el("form", { class: "row", on: { submit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren(el("p", { class: "muted", text: "Searching…" }));
    const body = { query: q.value, mode: mode.value, top_k: Number(topk.value) || 10 };
    if (fusion.value) body.fusion = { method: fusion.value };
    const ids = docs.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (ids.length) body.filter = { document_ids: ids };
    try {
      const r = await api("POST", "/v1/query", body);
      if (!r.results.length) return out.replaceChildren(el("p", { class: "empty", text: "No results." }));
      out.replaceChildren(el("p", { class: "muted", text: `${r.results.length} results in ${r.timings_ms.total.toFixed(1)} ms` }),
        ...r.results.map((h, i) => el("article", { class: "hit" },
          el("h2", {}, `${i + 1}. `, el("span", { class: "title", text: h.title })),
          el("div", { class: "meta" },
            el("span", { text: `document ${h.document_id}` }),
            h.page ? el("span", { text: `page ${h.page}` }) : null,
            (h.heading_path || []).length ? el("span", { text: h.heading_path.join(" › ") }) : null,
            el("span", { text: `score ${h.score.toFixed(4)}` }),
            el("span", { text: `dense rank ${h.dense_rank ?? "–"}` }),
            el("span", { text: `BM25 rank ${h.bm25_rank ?? "–"}` })),
          el("p", { class: "snippet" }, snippetNodes(h.snippet)),
          el("details", {}, el("summary", { text: "Open the chunk" }), el("p", { class: "snippet", text: h.text })),
          el("a", { class: "open-doc", href: `#/doc/${encodeURIComponent(h.document_id)}/${ordinalOf(h.chunk_id)}`, text: h.page ? `Open the document at page ${h.page}` : "Open the document at this chunk" }))));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } } },
    el("label", {}, "Query", q), el("label", {}, "Mode", mode), el("label", {}, "Fusion", fusion),
    el("label", {}, "Top k", topk), el("label", {}, "Documents", docs), el("button", { type: "submit", id: "search" }, "Search"));
  show(el("h1", { text: "Search" }), form, out);
  q.focus();
}

// A chunk id is `document#version-ordinal`.
function ordinalOf(chunkId) {
  const tail = String(chunkId).split("#").pop();
  return Number(tail.split("-").pop()) || 0;
}

// A document's live version in reading order, a page of chunks at a time, with page and
// heading marks; `at` (an ordinal) is highlighted and scrolled to.
async function docPage(id, at) {
  const docId = decodeURIComponent(id || "");
  // `at` is the ordinal of the chunk a hit came from (marked and scrolled to), or `pageN` for
  // the chunks from N on (nothing marked); absent: from the beginning.
  const per = 200;
  const paged = typeof at === "string" && at.startsWith("page");
  const target = !paged && at !== undefined && at !== "" ? Number(at) || 0 : -1;
  const offset = paged ? Math.max(0, Number(at.slice(4)) || 0) : Math.floor(Math.max(0, target) / per) * per;
  show(el("h1", { text: docId }), el("p", { class: "muted", text: "Loading…" }));
  let r;
  try { r = await api("GET", `/v1/documents/${encodeURIComponent(docId)}/chunks?offset=${offset}&limit=${per}`); }
  catch (e) { return show(el("h1", { text: docId }), errorBox(e)); }
  if (!r.total) return show(el("h1", { text: r.title }), el("p", { class: "empty", text: "This document has no live version (still ingesting, or its job failed: see Jobs)." }));
  const nav = el("div", { class: "row" },
    offset > 0 ? el("a", { class: "pill", href: `#/doc/${encodeURIComponent(docId)}/page${offset - per}`, text: "Earlier chunks" }) : null,
    el("span", { class: "muted", text: `chunks ${offset + 1}-${offset + r.chunks.length} of ${r.total} · version ${r.version} · ${r.content_type}` }),
    offset + per < r.total ? el("a", { class: "pill", href: `#/doc/${encodeURIComponent(docId)}/page${offset + per}`, text: "Later chunks" }) : null);
  let page = null, heading = null, focus = null;
  const body = [];
  for (const c of r.chunks) {
    if (c.page && c.page !== page) { page = c.page; body.push(el("h2", { class: "page-mark", id: `page-${page}`, text: `Page ${page}` })); }
    const h = (c.heading_path || []).join(" › ");
    if (h && h !== heading) { heading = h; body.push(el("p", { class: "muted heading-mark", text: h })); }
    const p = el("p", { class: c.ordinal === target ? "chunk target" : "chunk", "data-ordinal": c.ordinal, id: `chunk-${c.ordinal}`, text: c.text });
    if (c.ordinal === target) focus = p;
    body.push(p);
  }
  show(el("h1", { text: r.title }), nav, el("article", { class: "doc" }, body));
  if (focus && target > 0) focus.scrollIntoView({ block: "center" });
}

function answerPage(thread) {
  const q = el("input", { type: "search", id: "question", required: true, "aria-label": "Question", placeholder: "A question about your documents" });
  const tid = el("input", { type: "text", id: "thread", pattern: "[A-Za-z0-9._\\-]{1,128}", "aria-label": "Thread id (optional)", placeholder: "optional", value: thread ? decodeURIComponent(thread) : "" });
  const text = el("div", { class: "text", id: "answer-text", "aria-live": "polite" });
  const cites = el("div", { id: "citations" });
  const status = el("div");
  const form = el("form", { class: "row", on: { submit: async (ev) => {
    ev.preventDefault();
    text.textContent = ""; cites.replaceChildren(); status.replaceChildren(el("p", { class: "muted", text: "Answering…" }));
    try {
      const body = { question: q.value, stream: true };
      if (tid.value.trim()) body.thread_id = tid.value.trim();
      const r = await api("POST", "/v1/answer", body, { raw: true });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "", final = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = (block.match(/^event: (.*)$/m) || [])[1];
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;
          const d = JSON.parse(data);
          if (ev === "text") text.textContent += d.text;
          if (ev === "done") final = d;
          if (ev === "error") throw new ApiError(500, (d.error || d).code, (d.error || d).message);
        }
      }
      status.replaceChildren();
      if (!final) return;
      text.textContent = final.answer;
      if (!final.grounded) {
        status.replaceChildren(el("p", { class: "refusal", id: "refusal", text: `Not found in your documents (${final.code || "no evidence"}).` }));
      }
      cites.replaceChildren(el("h2", { text: "Citations" }), ...(final.citations.length ? final.citations.map((c) => el("div", { class: "citation" },
        el("strong", { text: `[${c.n}] ` }), el("span", { class: "title", text: c.title }),
        c.page ? el("span", { class: "muted", text: ` · page ${c.page}` }) : null,
        c.heading ? el("span", { class: "muted", text: ` · ${c.heading}` }) : null,
        el("div", { text: c.quote }))) : [el("p", { class: "muted", text: "No citations." })]));
    } catch (e) { status.replaceChildren(errorBox(e)); }
  } } }, el("label", {}, "Question", q), el("label", {}, "Thread", tid), el("button", { type: "submit", id: "ask" }, "Ask"));
  show(el("h1", { text: "Answer" }), form, status, el("div", { class: "answer" }, text, cites));
  q.focus();
}

function barChart(days, counter, label) {
  const w = 720, h = 220, pad = 36;
  const values = days.map((d) => d.counters[counter] || 0);
  const max = Math.max(1, ...values);
  const bw = (w - pad * 2) / Math.max(1, values.length);
  return svg("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": `${label} per day` },
    svg("title", {}, `${label} per day`),
    svg("line", { class: "axis", x1: pad, y1: h - pad, x2: w - pad, y2: h - pad }),
    svg("text", { x: 4, y: 14 }, `${label} (max ${max})`),
    values.map((v, i) => {
      const bh = ((h - pad * 2) * v) / max;
      return svg("g", {},
        svg("rect", { class: "bar", x: pad + i * bw + 2, y: h - pad - bh, width: Math.max(1, bw - 4), height: bh, "data-value": v }, svg("title", {}, `${days[i].day}: ${v}`)),
        i % Math.ceil(values.length / 8) === 0 ? svg("text", { x: pad + i * bw, y: h - pad + 14 }, days[i].day.slice(5)) : null);
    }));
}

// A usage response's 30 days, every day present (days without counters are zeros).
function usageDays(u) {
  const { from, to, day } = last30Days();
  const byDay = new Map(u.days.map((d) => [d.day, d]));
  const days = [];
  for (let t = from.getTime(); t <= to.getTime(); t += 86400000) { const k = day(new Date(t)); days.push(byDay.get(k) || { day: k, counters: {} }); }
  return days;
}

function usageCharts(u) {
  const days = usageDays(u);
  const total = (c) => days.reduce((s, d) => s + (d.counters[c] || 0), 0);
  return [el("p", {}, `Stored: ${u.stored.documents} documents, ${u.stored.chunks} chunks, ${bytes(u.stored.bytes)}. Last 30 days: ${total("queries")} queries, ${total("answers")} answers, ${total("chunks_ingested")} chunks ingested.`),
    barChart(days, "queries", "Queries"), barChart(days, "chunks_ingested", "Chunks ingested")];
}

async function usagePage() {
  show(el("h1", { text: "Usage" }), el("p", { class: "muted", text: "Loading…" }));
  try { show(el("h1", { text: "Usage" }), usageCharts(await api("GET", `/v1/usage?${last30Days().query}`))); }
  catch (e) { show(el("h1", { text: "Usage" }), errorBox(e)); }
}

async function keysPage() {
  show(el("h1", { text: "Keys" }), el("p", { class: "muted", text: "Loading…" }));
  const t = state.who.tenant;
  const render = async (created) => {
    let keys;
    try { keys = (await api("GET", `/v1/tenants/${encodeURIComponent(t)}/keys`)).keys; } catch (e) { return show(el("h1", { text: "Keys" }), errorBox(e)); }
    const role = el("select", { "aria-label": "Role" }, ["reader", "writer", "tenant_admin"].map((r) => el("option", { value: r, text: r })));
    const name = el("input", { type: "text", "aria-label": "Name", placeholder: "name" });
    show(el("h1", { text: "Keys" }),
      created ? el("p", { class: "ok", role: "alert" }, "New key (shown once): ", el("code", { text: created })) : null,
      el("form", { class: "row", on: { submit: async (ev) => { ev.preventDefault();
        try { const k = await api("POST", `/v1/tenants/${encodeURIComponent(t)}/keys`, { role: role.value, name: name.value }); render(k.api_key); } catch (e) { toast(e.message); } } } },
        el("label", {}, "Name", name), el("label", {}, "Role", role), el("button", { type: "submit" }, "Create key")),
      el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, ["Name", "Prefix", "Role", "Created", ""].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, keys.map((k) => el("tr", {},
          el("td", { text: k.name }), el("td", { text: k.prefix }), el("td", { text: k.role }), el("td", { text: when(k.created_at) }),
          el("td", {}, el("button", { class: "danger", type: "button", on: { click: async () => {
            if (!confirm(`Revoke ${k.prefix}…?`)) return;
            try { await api("DELETE", `/v1/keys/${encodeURIComponent(k.key_id)}`); render(); } catch (e) { toast(e.message); } } } }, "Revoke"))))))));
  };
  render();
}

function jobRow(j, withTenant) {
  const progress = j.chunks_total ? `${j.chunks_done} / ${j.chunks_total}` : j.status === "succeeded" ? String(j.chunks_done) : "";
  const cls = j.status === "failed" ? "error" : j.status === "succeeded" ? "ok" : "";
  return el("tr", { "data-job": j.id, "data-status": j.status },
    withTenant ? el("td", {}, el("a", { href: `#/tenant/${encodeURIComponent(j.tenant)}`, text: j.tenant })) : null,
    el("td", { class: "title", text: j.document_id }),
    el("td", { class: cls, text: j.stage ? `${j.status} · ${j.stage}` : j.status }),
    el("td", { text: progress }),
    el("td", { class: "error", text: j.error ? `${j.error.code}: ${j.error.message}` : "" }),
    withTenant ? el("td", { text: j.node || "" }) : null,
    el("td", { title: when(j.created_at), text: ago(j.created_at) }));
}

function jobTable(jobs, withTenant, id) {
  const heads = [withTenant ? "Tenant" : null, "Document", "Status", "Chunks", "Error", withTenant ? "Node" : null, "Submitted"].filter(Boolean);
  return el("div", { class: "table-wrap" }, el("table", { id },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, jobs.map((j) => jobRow(j, withTenant)))));
}

// Outcomes of a list of jobs by status, and failures by code, as bars.
function outcomeChart(jobs, label) {
  const counts = new Map();
  for (const j of jobs) {
    const k = j.status === "failed" ? `failed: ${(j.error || {}).code || "?"}` : j.status;
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  const rows = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  const w = 720, rh = 22, left = 220, h = rows.length * rh + 24;
  const max = Math.max(1, ...rows.map((r) => r[1]));
  return svg("svg", { class: "chart", id: "outcomes", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    rows.map(([k, n], i) => svg("g", {},
      svg("text", { x: 4, y: 16 + i * rh }, k),
      svg("rect", { class: k.startsWith("failed") ? "bar bad" : "bar", x: left, y: 4 + i * rh, width: Math.max(1, ((w - left - 60) * n) / max), height: rh - 6, "data-value": n, "data-key": k }, svg("title", {}, `${k}: ${n}`)),
      svg("text", { x: left + ((w - left - 60) * n) / max + 6, y: 16 + i * rh }, String(n)))));
}

// Pages through a job listing: `load(before)` returns { jobs, next_before }.
function pagedJobs(load, withTenant, id) {
  const box = el("div");
  const all = [];
  const more = el("button", { type: "button", class: "secondary", id: `${id}-more`, hidden: true }, "Older jobs");
  let next = null;
  const render = () => box.replaceChildren(all.length ? jobTable(all, withTenant, id) : el("p", { class: "empty", text: "No jobs yet." }));
  const fetchPage = async () => {
    try {
      const page = await load(next);
      all.push(...page.jobs);
      next = page.next_before || null;
      more.hidden = !next;
      render();
    } catch (e) { box.replaceChildren(errorBox(e)); }
  };
  more.addEventListener("click", fetchPage);
  const reset = () => { all.length = 0; next = null; };
  return { node: el("div", {}, box, more), first: fetchPage, reset, all };
}

async function jobsPage() {
  const list = pagedJobs((before) => api("GET", `/v1/jobs?limit=50${before ? `&before=${encodeURIComponent(before)}` : ""}`), false, "jobs");
  const chart = el("div");
  show(el("h1", { text: "Jobs" }),
    el("p", { class: "muted", text: "Every upload is a job: queued, then parsing, embedding and indexing, then succeeded or failed with a stable code. Newest first." }),
    chart, list.node);
  const refresh = async () => {
    await list.first();
    if (list.all.length) chart.replaceChildren(outcomeChart(list.all, "Outcomes of the jobs shown"));
    // While some are unfinished, look again (only while this page is shown).
    if (list.all.some((j) => j.status === "queued" || j.status === "running")) {
      later(2000, () => { list.reset(); refresh(); });
    }
  };
  await refresh();
}

async function threadsPage(id) {
  if (id) return threadPage(decodeURIComponent(id));
  show(el("h1", { text: "Threads" }), el("p", { class: "muted", text: "Loading…" }));
  let threads;
  try { threads = (await api("GET", "/v1/threads?limit=200")).threads; } catch (e) { return show(el("h1", { text: "Threads" }), errorBox(e)); }
  show(el("h1", { text: "Threads" }),
    el("p", { class: "muted", text: "Conversations begun with this key (a thread belongs to the key or token that started it). Ask in a thread from the Answer page." }),
    threads.length ? el("div", { class: "table-wrap" }, el("table", { id: "threads" },
      el("thead", {}, el("tr", {}, ["Thread", "First question", "Turns", "Updated"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, threads.map((t) => el("tr", { "data-thread": t.id },
        el("td", {}, el("a", { href: `#/threads/${encodeURIComponent(t.id)}`, text: t.id })),
        el("td", { class: "title", text: t.first_question }),
        el("td", { text: t.turns }),
        el("td", { title: when(t.updated_at), text: ago(t.updated_at) })))))) :
      el("p", { class: "empty", text: "No threads yet. Give a thread id on the Answer page to start one." }));
}

async function threadPage(id) {
  let t;
  try { t = await api("GET", `/v1/threads/${encodeURIComponent(id)}`); } catch (e) { return show(el("h1", { text: `Thread ${id}` }), errorBox(e)); }
  show(el("h1", { text: `Thread ${id}` }),
    el("div", { class: "row" },
      el("a", { href: `#/answer/${encodeURIComponent(id)}`, class: "button", text: "Continue this thread" }),
      el("button", { type: "button", class: "danger", on: { click: async () => {
        if (!confirm(`Delete thread ${id}?`)) return;
        try { await api("DELETE", `/v1/threads/${encodeURIComponent(id)}`); location.hash = "#/threads"; } catch (e) { toast(e.message); } } } }, "Delete thread")),
    t.turns.map((turn) => el("article", { class: "hit turn" },
      el("h2", { text: turn.question }),
      turn.standalone_question && turn.standalone_question !== turn.question ? el("p", { class: "muted", text: `searched as: ${turn.standalone_question}` }) : null,
      el("p", { class: turn.grounded ? "text" : "refusal", text: turn.answer }),
      turn.citations.length ? el("ol", { class: "muted" }, turn.citations.map((c) => el("li", { text: `${c.title}${c.page ? ` · page ${c.page}` : ""}: ${c.quote}` }))) : null,
      el("div", { class: "meta", text: when(turn.created_at) }))));
}

// ---------- operator pages ----------
async function tenantsPage() {
  show(el("h1", { text: "Tenants" }), el("p", { class: "muted", text: "Loading…" }));
  let tenants;
  try { tenants = (await api("GET", "/v1/tenants")).tenants; } catch (e) { return show(el("h1", { text: "Tenants" }), errorBox(e)); }
  const { query } = last30Days();
  const usage = await Promise.all(tenants.map((t) => api("GET", `/v1/tenants/${encodeURIComponent(t.id)}/usage?${query}`).catch(() => null)));
  const id = el("input", { type: "text", id: "new-tenant", required: true, pattern: "[a-z0-9][a-z0-9_\\-]{0,62}", "aria-label": "New tenant id" });
  const created = el("div");
  const sum = (u, c) => (u ? u.days.reduce((s, d) => s + (d.counters[c] || 0), 0) : "");
  show(el("h1", { text: "Tenants" }),
    el("form", { class: "row", on: { submit: async (ev) => { ev.preventDefault();
      try { const k = await api("POST", "/v1/tenants", { id: id.value }); await tenantsPage(); main().prepend(el("p", { class: "ok", role: "alert" }, `Tenant ${k.id || id.value} created; its tenant_admin key (shown once): `, el("code", { text: k.api_key }))); }
      catch (e) { created.replaceChildren(errorBox(e)); } } } },
      el("label", {}, "New tenant id", id), el("button", { type: "submit" }, "Create tenant")), created,
    tenants.length ? el("div", { class: "table-wrap" }, el("table", { id: "tenants" },
      el("thead", {}, el("tr", {}, ["Tenant", "Documents", "Chunks", "Stored", "Queries (30 d)", "Chunks ingested (30 d)", ""].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, tenants.map((t, i) => el("tr", { "data-tenant": t.id },
        el("td", {}, el("a", { href: `#/tenant/${encodeURIComponent(t.id)}`, text: t.id })),
        el("td", { text: t.documents }),
        el("td", { text: usage[i] ? usage[i].stored.chunks : "" }),
        el("td", { text: usage[i] ? bytes(usage[i].stored.bytes) : "" }),
        el("td", { class: "queries", text: sum(usage[i], "queries") }),
        el("td", { text: sum(usage[i], "chunks_ingested") }),
        el("td", {}, el("button", { class: "danger", type: "button", on: { click: async () => {
          if (!confirm(`Delete tenant ${t.id} and all its data?`)) return;
          try { await api("DELETE", `/v1/tenants/${encodeURIComponent(t.id)}`); tenantsPage(); } catch (e) { toast(e.message); } } } }, "Delete"))))))) :
      el("p", { class: "empty", text: "No tenants yet." }));
}

// A line chart over time: `series` = [{ name, cls, points: [[unixSecs, value], ...] }].
function lineChart(series, from, to, label, unit) {
  // The legend has its own column right of the plot, so no line runs under it.
  const w = 720, h = 220, left = 48, right = 150, top = 22, bottom = 28;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (t) => left + ((w - left - right) * (t - from)) / Math.max(1, to - from);
  const y = (v) => h - bottom - ((h - top - bottom) * v) / max;
  const tick = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return svg("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { class: "axis", x1: left, y1: h - bottom, x2: w - right, y2: h - bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: h - bottom }),
    svg("text", { x: 4, y: 14 }, `${label} (max ${max.toFixed(1)} ${unit})`),
    svg("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, max.toFixed(0)),
    svg("text", { x: left - 4, y: h - bottom, "text-anchor": "end" }, "0"),
    [0, 0.5, 1].map((f) => svg("text", { x: x(from + f * (to - from)), y: h - 8, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, tick(from + f * (to - from)))),
    series.map((s, i) => svg("g", { class: `series ${s.cls || ""}`, "data-series": s.name, "data-points": s.points.length },
      svg("polyline", { points: s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }),
      s.points.map(([t, v]) => svg("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, svg("title", {}, `${s.name} ${tick(t)}: ${v.toFixed(1)} ${unit}`))),
      svg("text", { x: w - right + 12, y: top + 10 + i * 14, class: "legend" }, `— ${s.name}`))));
}

function statsCharts(t, from, to) {
  const pts = (k) => t.minutes.filter((m) => m[k] !== undefined && m[k] !== null).map((m) => [m.minute, m[k]]);
  return [
    lineChart([{ name: "p50", cls: "p50", points: pts("query_p50_ms") }, { name: "p95", cls: "p95", points: pts("query_p95_ms") }, { name: "p99", cls: "p99", points: pts("query_p99_ms") }],
      from, to, `Query latency of ${t.tenant || "all tenants"} per minute`, "ms"),
    lineChart([{ name: "requests", cls: "p50", points: pts("requests") },
      { name: "errors (4xx, 5xx)", cls: "p99", points: t.minutes.map((m) => [m.minute, m.client_errors + m.server_errors]) },
      { name: "throttled (429)", cls: "p95", points: pts("throttled") }],
      from, to, `Requests and errors of ${t.tenant || "all tenants"} per minute`, "req"),
  ];
}

function statsSummary(t) {
  const sum = (k) => t.minutes.reduce((s, m) => s + (m[k] || 0), 0);
  const worst = (k) => Math.max(0, ...t.minutes.map((m) => m[k] || 0));
  const req = sum("requests"), err = sum("client_errors") + sum("server_errors");
  return { req, err, rate: req ? (100 * err) / req : 0, throttled: sum("throttled"), server: sum("server_errors"), queries: sum("queries"), p50: worst("query_p50_ms"), p99: worst("query_p99_ms") };
}

async function activityPage(minutesArg) {
  const minutes = Number(minutesArg) || 60;
  show(el("h1", { text: "Latency & errors" }), el("p", { class: "muted", text: "Loading…" }));
  let st;
  try { st = await api("GET", `/v1/stats?minutes=${minutes}`); } catch (e) { return show(el("h1", { text: "Latency & errors" }), errorBox(e)); }
  const to = Math.floor(Date.now() / 60000) * 60, from = to - (minutes - 1) * 60;
  const rows = st.tenants.map((t) => ({ t, s: statsSummary(t) })).sort((a, b) => b.s.req - a.s.req);
  const pick = el("div", { class: "row" }, [15, 60, 180].map((m) => el("a", { href: `#/activity/${m}`, "aria-current": m === minutes ? "page" : false, class: "pill", text: `last ${m} min` })));
  show(el("h1", { text: "Latency & errors" }),
    el("p", { class: "muted", text: `Per tenant and minute, from the request metrics of node ${st.node} (each node keeps its own). Latency is of answered POST /v1/query; quantiles are histogram bucket bounds, at most 20% above the exact value.` }),
    pick,
    rows.length ? el("div", { class: "table-wrap" }, el("table", { id: "activity" },
      el("thead", {}, el("tr", {}, ["Tenant", "Requests", "Errors", "Error rate", "Throttled (429)", "5xx", "Queries", "Worst p50 (ms)", "Worst p99 (ms)"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map(({ t, s }) => el("tr", { "data-tenant": t.tenant },
        el("td", {}, t.tenant && t.tenant !== "_other" ? el("a", { href: `#/tenant/${encodeURIComponent(t.tenant)}`, text: t.tenant }) : el("span", { text: t.tenant || "all tenants" })),
        el("td", { text: s.req }), el("td", { text: s.err }), el("td", { class: s.rate >= 5 ? "error" : "", text: `${s.rate.toFixed(1)} %` }),
        el("td", { text: s.throttled }), el("td", { class: s.server ? "error" : "", text: s.server }),
        el("td", { class: "queries", text: s.queries }), el("td", { text: s.p50 ? s.p50.toFixed(1) : "–" }), el("td", { text: s.p99 ? s.p99.toFixed(1) : "–" }))))))
      : el("p", { class: "empty", text: `No tenant requests on this node in the last ${minutes} minutes.` }),
    rows.slice(0, 8).map(({ t }) => el("section", { class: "tenant-charts", "data-tenant": t.tenant }, el("h2", { text: t.tenant || "all tenants" }), statsCharts(t, from, to))));
}

async function queuePage() {
  show(el("h1", { text: "Ingestion queue" }), el("p", { class: "muted", text: "Loading…" }));
  const head = el("div"), chart = el("div");
  let first = true;
  const list = pagedJobs(async (before) => {
    const q = await api("GET", `/v1/queue?limit=100${before ? `&before=${encodeURIComponent(before)}` : ""}`);
    if (first) {
      first = false;
      head.replaceChildren(el("h2", { text: `Queued and running: ${q.unfinished.length}` }),
        q.unfinished.length ? jobTable(q.unfinished, true, "unfinished") : el("p", { class: "empty", text: "Nothing queued or running." }));
      head.dataset.unfinished = q.unfinished.length;
    }
    return { jobs: q.recent, next_before: q.next_before };
  }, true, "recent");
  show(el("h1", { text: "Ingestion queue" }),
    el("p", { class: "muted", text: "Every tenant's jobs, on every node (the queue is shared). Failures carry their stable code." }),
    head, el("h2", { text: "Outcomes of recent jobs" }), chart, el("h2", { text: "Recent jobs" }), list.node);
  await list.first();
  chart.replaceChildren(list.all.length ? outcomeChart(list.all, "Outcomes of the recent jobs shown") : el("p", { class: "empty", text: "No jobs yet." }));
  // While jobs run, look again at the unfinished ones (the recent list stays as loaded).
  const poll = () => later(2000, async () => {
    try {
      const q = await api("GET", "/v1/queue?limit=1");
      head.replaceChildren(el("h2", { text: `Queued and running: ${q.unfinished.length}` }),
        q.unfinished.length ? jobTable(q.unfinished, true, "unfinished") : el("p", { class: "empty", text: "Nothing queued or running." }));
      if (q.unfinished.length) poll();
    } catch (e) { head.replaceChildren(errorBox(e)); }
  });
  if (Number(head.dataset.unfinished) > 0) poll();
}

const LIMIT_FIELDS = [
  ["query_per_sec", "Queries per second", "number", "0.1"], ["query_burst", "Query burst", "number", "1"],
  ["ingest_per_sec", "Uploads per second", "number", "0.1"], ["ingest_burst", "Upload burst", "number", "1"],
  ["max_documents", "Max documents", "number", "1"], ["max_chunks", "Max chunks", "number", "1"], ["max_bytes", "Max bytes", "number", "1"],
];

function limitsForm(tenant, lim) {
  const inputs = LIMIT_FIELDS.map(([k, label, type, step]) => [k, el("input", { type, step, min: 0, id: `limit-${k}`, name: k, value: lim.overrides[k] ?? "", placeholder: `default ${lim.effective[k] ?? ""}`, "aria-label": label })]);
  const status = el("div", { role: "status" });
  return el("form", { class: "limits", id: "limits", on: { submit: async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [k, i] of inputs) if (i.value.trim() !== "") body[k] = Number(i.value);
    try { const r = await api("PUT", `/v1/tenants/${encodeURIComponent(tenant)}/limits`, body); status.replaceChildren(el("p", { class: "ok", id: "limits-saved", text: `Saved. In force now: ${LIMIT_FIELDS.map(([k, label]) => `${label.toLowerCase()} ${r.effective[k] ?? "–"}`).join(", ")}.` })); }
    catch (e) { status.replaceChildren(errorBox(e)); }
  } } },
    el("p", { class: "muted", text: "Empty: the deployment's default (shown as placeholder); 0: unlimited." }),
    el("div", { class: "grid" }, inputs.map(([k, i]) => el("label", {}, LIMIT_FIELDS.find((f) => f[0] === k)[1], i))),
    el("button", { type: "submit", id: "save-limits" }, "Save limits"), status);
}

async function tenantPage(id) {
  const tenant = decodeURIComponent(id);
  const title = `Tenant ${tenant}`;
  show(el("h1", { text: title }), el("p", { class: "muted", text: "Loading…" }));
  const enc = encodeURIComponent(tenant);
  let u, lim, st;
  try {
    [u, lim, st] = await Promise.all([api("GET", `/v1/tenants/${enc}/usage?${last30Days().query}`), api("GET", `/v1/tenants/${enc}/limits`), api("GET", "/v1/stats?minutes=60")]);
  } catch (e) { return show(el("h1", { text: title }), errorBox(e)); }
  const mine = st.tenants.find((t) => t.tenant === tenant);
  const now = Math.floor(Date.now() / 60000) * 60;
  show(el("h1", { text: title }),
    el("h2", { text: "Limits" }), limitsForm(tenant, lim),
    el("h2", { text: "Last hour" }), mine ? statsCharts(mine, now - 59 * 60, now) : el("p", { class: "empty", text: `No requests from ${tenant} on node ${st.node} in the last hour.` }),
    el("h2", { text: "Last 30 days" }), usageCharts(u));
}

// A report is fetched with the key, then shown from a blob: URL in a sandbox without scripts
// (reports have none; the sandbox makes sure). The URL is revoked when the page changes.
async function reportsPage(name) {
  show(el("h1", { text: "Reports" }), el("p", { class: "muted", text: "Loading…" }));
  let list;
  try { list = (await api("GET", "/v1/reports")).reports; } catch (e) { return show(el("h1", { text: "Reports" }), errorBox(e)); }
  if (!list.length) {
    return show(el("h1", { text: "Reports" }), el("p", { class: "empty", text: "No reports yet. `tenantry bench --report FILE.html` and `tenantry eval --report FILE.html` write them; put them in the server's reports folder (console.reports_dir, by default <data dir>/reports). `make demo` leaves one there." }));
  }
  const current = name ? decodeURIComponent(name) : list[0].name;
  let url;
  try {
    const r = await api("GET", `/v1/reports/${encodeURIComponent(current)}`, undefined, { raw: true });
    url = URL.createObjectURL(new Blob([await r.text()], { type: "text/html" }));
    state.blobs.push(url);
  } catch (e) { return show(el("h1", { text: "Reports" }), errorBox(e)); }
  show(el("h1", { text: "Reports" }),
    el("div", { class: "table-wrap" }, el("table", { id: "reports" },
      el("thead", {}, el("tr", {}, ["Report", "Written", "Size"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, list.map((r) => el("tr", { "data-report": r.name },
        el("td", {}, el("a", { href: `#/reports/${encodeURIComponent(r.name)}`, "aria-current": r.name === current ? "page" : false, text: r.name })),
        el("td", { title: when(r.modified_at), text: ago(r.modified_at) }),
        el("td", { text: bytes(r.bytes) })))))),
    el("div", { class: "row" }, el("h2", { text: current }), el("a", { href: url, download: current, class: "button", text: "Download" })),
    el("iframe", { sandbox: true, src: url, title: `Report ${current}`, class: "report", id: "report-frame" }));
}

// ---------- router ----------
const ROUTES = {
  signin: signInPage, documents: documentsPage, upload: uploadPage, jobs: jobsPage, search: searchPage,
  answer: answerPage, threads: threadsPage, usage: () => usagePage(), keys: keysPage, tenants: tenantsPage,
  tenant: tenantPage, activity: activityPage, queue: queuePage, reports: reportsPage,
  doc: (id) => docPage(id, location.hash.split("/")[3]),
};

async function route() {
  state.view++;
  for (const u of state.blobs.splice(0)) URL.revokeObjectURL(u);
  if (!state.who && sessionStorage.getItem(KEY)) {
    try { state.who = await api("GET", "/v1/whoami"); } catch (_) { sessionStorage.removeItem(KEY); }
  }
  let page, arg;
  try {
    [page, arg] = (location.hash.slice(2) || "").split("/");
    if (arg !== undefined) decodeURIComponent(arg);
  } catch (_) { page = ""; arg = undefined; }
  renderChrome();
  if (!state.who) return signInPage();
  const allowed = pagesFor(state.who).map(([id]) => id);
  const hidden = state.who.kind === "admin" ? ["tenant"] : ["doc"];
  const target = ROUTES[page] && (allowed.includes(page) || hidden.includes(page)) ? page : allowed[0];
  if (target !== page) { location.hash = `#/${target}`; return; }
  await ROUTES[target](arg);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  route();
});
