// Tenantry console: a client of the public HTTP API, same origin. Every string from the server
// is tenant data (titles, snippets, answers): it is only ever set as text (textContent, or text
// nodes), never parsed as HTML. The API key lives in this tab's sessionStorage only.
"use strict";

const KEY = "tenantry.key";
const state = { who: null };

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
  m.replaceChildren(...nodes);
  m.focus();
}

function toast(msg) {
  const t = el("div", { text: msg });
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 5000);
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
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
  if (opts && opts.raw) return r;
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
  ["search", "Search", "reader"],
  ["answer", "Answer", "reader"],
  ["usage", "Usage", "tenant_admin"],
  ["keys", "Keys", "tenant_admin"],
];
const ADMIN_PAGES = [["tenants", "Tenants", null]];
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
      el("td", { class: "title", text: d.title }),
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
          el("details", {}, el("summary", { text: "Open the chunk" }), el("p", { class: "snippet", text: h.text })))));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } } },
    el("label", {}, "Query", q), el("label", {}, "Mode", mode), el("label", {}, "Fusion", fusion),
    el("label", {}, "Top k", topk), el("label", {}, "Documents", docs), el("button", { type: "submit", id: "search" }, "Search"));
  show(el("h1", { text: "Search" }), form, out);
  q.focus();
}

function answerPage() {
  const q = el("input", { type: "search", id: "question", required: true, "aria-label": "Question", placeholder: "A question about your documents" });
  const text = el("div", { class: "text", id: "answer-text", "aria-live": "polite" });
  const cites = el("div", { id: "citations" });
  const status = el("div");
  const form = el("form", { class: "row", on: { submit: async (ev) => {
    ev.preventDefault();
    text.textContent = ""; cites.replaceChildren(); status.replaceChildren(el("p", { class: "muted", text: "Answering…" }));
    try {
      const r = await api("POST", "/v1/answer", { question: q.value, stream: true }, { raw: true });
      if (!r.ok) { const j = await r.json().catch(() => ({})); throw new ApiError(r.status, (j.error || {}).code, (j.error || {}).message || r.statusText); }
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
  } } }, el("label", {}, "Question", q), el("button", { type: "submit", id: "ask" }, "Ask"));
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

async function usagePage(tenant) {
  const title = tenant ? `Usage of ${tenant}` : "Usage";
  show(el("h1", { text: title }), el("p", { class: "muted", text: "Loading…" }));
  const to = new Date(), from = new Date(Date.now() - 29 * 86400000);
  const day = (d) => d.toISOString().slice(0, 10);
  const path = tenant ? `/v1/tenants/${encodeURIComponent(tenant)}/usage` : "/v1/usage";
  try {
    const u = await api("GET", `${path}?from=${day(from)}&to=${day(to)}`);
    const byDay = new Map(u.days.map((d) => [d.day, d]));
    const days = [];
    for (let t = from.getTime(); t <= to.getTime(); t += 86400000) { const k = day(new Date(t)); days.push(byDay.get(k) || { day: k, counters: {} }); }
    const total = (c) => days.reduce((s, d) => s + (d.counters[c] || 0), 0);
    show(el("h1", { text: title }),
      el("p", {}, `Stored: ${u.stored.documents} documents, ${u.stored.chunks} chunks, ${bytes(u.stored.bytes)}. Last 30 days: ${total("queries")} queries, ${total("answers")} answers, ${total("chunks_ingested")} chunks ingested.`),
      barChart(days, "queries", "Queries"), barChart(days, "chunks_ingested", "Chunks ingested"));
  } catch (e) { show(el("h1", { text: title }), errorBox(e)); }
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

// ---------- operator pages ----------
async function tenantsPage() {
  show(el("h1", { text: "Tenants" }), el("p", { class: "muted", text: "Loading…" }));
  let tenants;
  try { tenants = (await api("GET", "/v1/tenants")).tenants; } catch (e) { return show(el("h1", { text: "Tenants" }), errorBox(e)); }
  const to = new Date(), from = new Date(Date.now() - 29 * 86400000);
  const day = (d) => d.toISOString().slice(0, 10);
  const usage = await Promise.all(tenants.map((t) => api("GET", `/v1/tenants/${encodeURIComponent(t.id)}/usage?from=${day(from)}&to=${day(to)}`).catch(() => null)));
  const id = el("input", { type: "text", id: "new-tenant", required: true, pattern: "[a-z0-9][a-z0-9_-]{0,62}", "aria-label": "New tenant id" });
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

// ---------- router ----------
const ROUTES = {
  signin: signInPage, documents: documentsPage, upload: uploadPage, search: searchPage,
  answer: answerPage, usage: () => usagePage(), keys: keysPage, tenants: tenantsPage,
  tenant: (id) => usagePage(decodeURIComponent(id)),
};

async function route() {
  if (!state.who && sessionStorage.getItem(KEY)) {
    try { state.who = await api("GET", "/v1/whoami"); } catch (_) { sessionStorage.removeItem(KEY); }
  }
  const [page, arg] = (location.hash.slice(2) || "").split("/");
  renderChrome();
  if (!state.who) return signInPage();
  const allowed = pagesFor(state.who).map(([id]) => id);
  const target = ROUTES[page] && (allowed.includes(page) || (page === "tenant" && state.who.kind === "admin")) ? page : allowed[0];
  if (target !== page) { location.hash = `#/${target}`; return; }
  await ROUTES[target](arg);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  route();
});
