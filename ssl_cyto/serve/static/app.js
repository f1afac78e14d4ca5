// ssl-cyto serve: the page. Plain JavaScript, no build step, no network access beyond this server.
// The results panel always shows the answer to the query on screen: it is cleared when a query starts
// and on every error; label, source and k re-run the current query (an upload is kept).
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 48;
const state = { info: null, current: null, answer: null, page: 0, seq: 0, map: null, objectUrl: null };

class ApiError extends Error {
  constructor(status, body) { super((body && body.detail) || `HTTP ${status}`); this.status = status; this.body = body; }
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text.slice(0, 200) }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

const cellPath = (id) => "/api/cells/" + encodeURIComponent(id);

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function nameOf(label) {  // "Promyelocyte (PMO)"; the code alone where the vocabulary has no name
  if (!label) return "no label";
  const c = state.info && state.info.classes.find((x) => x.label === label);
  return c && c.name && c.name !== label ? `${c.name} (${label})` : label;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = "status" + (isError ? " error" : "");
}

// ------------------------------------------------------------------------------------- token login
function showLogin(message) {
  $("login-error").textContent = message && state.triedLogin ? message : "";
  if (!$("login").open) $("login").showModal();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.triedLogin = true;
  try {
    await api("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("login-token").value }) });
    $("login").close();
    await start();
  } catch (err) { $("login-error").textContent = err.message; }
});

// ------------------------------------------------------------------------------------------ start
function fillSelect(select, items, key, text) {
  for (const item of items) {
    const opt = document.createElement("option");
    opt.value = item[key];
    opt.textContent = text(item);
    select.appendChild(opt);
  }
}

async function start() {
  let info;
  try { info = await api("/api/info"); } catch (err) { fail(err); return; }
  state.info = info;
  const idx = info.index;
  const imgs = info.images || {};
  const where = imgs.original ? "original images" : imgs.shard ? "images from the shards (the originals are not reachable)" : "no images";
  $("info").textContent = `${info.cells.toLocaleString()} cells · ${info.model.architecture}` +
    `${info.model.random_init ? " (random weights)" : ""} · ${idx.kind} index, ${idx.dim}-d, cosine · ` +
    info.sources.map((s) => `${s.source} ${s.count.toLocaleString()}`).join(", ") + ` · ${where}`;
  $("k").max = info.limits.k_max;
  if (info.example_cell) $("cell-id").placeholder = `or a cell id, e.g. ${info.example_cell}`;
  fillSelect($("label"), info.classes, "label", (c) => `${nameOf(c.label)} · ${c.count}`);
  fillSelect($("source"), info.sources, "source", (s) => `${s.source} · ${s.count}`);
  loadMap();
}

// ---------------------------------------------------------------------------------------- queries
function params() {
  const p = new URLSearchParams({ k: $("k").value || "12" });
  if ($("label").value) p.set("label", $("label").value);
  if ($("source").value) p.set("source", $("source").value);
  return p.toString();
}

function clearResults() {
  state.answer = null;
  state.page = 0;
  $("grid").textContent = "";
  for (const id of ["exact-match", "warnings", "scale", "summary", "downloads", "pager"]) $(id).hidden = true;
  $("result-count").textContent = "";
  $("legend-note").textContent = "Click a cell to see it at full size.";
  if (state.map) state.map.setAnswer(null);
}

function fail(err) {
  clearResults();
  $("query-view").hidden = true;
  if (err instanceof ApiError && err.status === 401) { showLogin(err.message); return; }
  setStatus(err.message || String(err), true);
}

async function run() {
  const q = state.current;
  if (!q) return;
  const seq = ++state.seq;
  state.lastParams = params();
  clearResults();
  try {
    let answer;
    if (q.kind === "upload") {
      setStatus(`embedding ${q.file.name}…`);
      const form = new FormData();
      form.append("image", q.file, q.file.name);
      // a TIFF (or an unknown type) cannot be shown by browsers: ask the server for a JPEG preview
      const shown = ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif"].includes(q.file.type);
      answer = await api(`/api/query?${params()}${shown ? "" : "&preview=true"}`, { method: "POST", body: form });
    } else {
      setStatus("searching…");
      answer = await api(`${cellPath(q.cellId)}/neighbours?${params()}`);
    }
    if (seq !== state.seq) return;  // a newer query started meanwhile
    showQuery(q, answer);
    render(answer);
  } catch (err) {
    if (seq === state.seq) fail(err);
  }
}

function queryFile(file) {
  if (!file) return;
  $("cell-id").value = "";
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);
  state.current = { kind: "upload", file };
  run();
}

function queryCell(cellId) {
  cellId = (cellId || "").trim();
  if (!cellId) return;
  $("cell-id").value = cellId;
  state.current = { kind: "cell", cellId };
  if ($("viewer").open) $("viewer").close();
  run();
}

function showQuery(q, answer) {
  $("query-view").hidden = false;
  const img = $("query-img");
  img.hidden = false;
  img.onerror = () => { img.hidden = true; };
  if (q.kind === "upload") {
    const u = answer.upload;
    img.src = u.preview || state.objectUrl;  // a TIFF: the server's JPEG preview
    $("query-text").innerHTML = `<b>uploaded image</b><br>${escapeHtml(q.file.name)}<br>` +
      `<small>${escapeHtml(u.format)}, ${u.width}×${u.height} px</small>`;
  } else {
    img.src = `${cellPath(q.cellId)}/image`;
    $("query-text").innerHTML = `<b>${escapeHtml(nameOf(answer.query_label))}</b> · ${escapeHtml(answer.query_source)}` +
      `<br><small>${escapeHtml(q.cellId)}</small>`;
  }
}

// ---------------------------------------------------------------------------------------- results
function referenceLabel(answer) {
  if (answer.query_label) return answer.query_label;
  return answer.exact_match ? answer.exact_match.label : null;
}

function render(answer) {
  state.answer = answer;
  state.page = 0;
  const ref = referenceLabel(answer);
  const exact = $("exact-match");
  if (answer.exact_match) {
    const m = answer.exact_match;
    exact.innerHTML = `This is indexed cell <b>${escapeHtml(m.cell_id)}</b>, label <b>${escapeHtml(nameOf(m.label))}</b>` +
      ` <span class="muted">(found by ${escapeHtml(m.by)})</span>. Tiles are framed against its label.`;
    exact.hidden = false;
  }
  if (answer.warnings && answer.warnings.length) {
    $("warnings").innerHTML = answer.warnings.map((w) => `<li data-code="${escapeHtml(w.code)}">${escapeHtml(w.detail)}</li>`).join("");
    $("warnings").hidden = false;
  }
  if (answer.scale) {
    const s = answer.scale;
    $("scale").textContent = `Best similarity ${s.best_similarity.toFixed(4)}: percentile ${s.percentile} of the ` +
      `indexed cells' own nearest-neighbour similarities (1st percentile ${s.p1.toFixed(4)}, median ${s.p50.toFixed(4)}, ` +
      `${s.sample.toLocaleString()} cells sampled).`;
    $("scale").hidden = false;
  }
  renderSummary(answer.neighbours);
  $("legend-note").textContent = ref
    ? `Framed against ${nameOf(ref)}. Click a cell to see it at full size.`
    : "The upload has no label and is not an indexed cell: no frame is green. Click a cell to see it at full size.";
  const filters = [answer.label && `label ${answer.label}`, answer.source && `source ${answer.source}`].filter(Boolean);
  $("result-count").textContent = `(${answer.neighbours.length}${filters.length ? ", " + filters.join(", ") : ""})`;
  setDownloads(answer);
  renderPage();
  setStatus(answer.neighbours.length ? "" : "no cell matches these filters");
  if (state.map) state.map.setAnswer(answer);
}

function renderSummary(neighbours) {
  const counts = new Map();
  for (const n of neighbours) { const key = n.label || ""; counts.set(key, (counts.get(key) || 0) + 1); }
  const rows = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const el = $("summary");
  el.textContent = "";
  for (const [label, count] of rows) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.label = label;
    chip.innerHTML = `<b>${escapeHtml(label || "no label")}</b>${count}`;
    chip.title = nameOf(label);
    el.appendChild(chip);
  }
  el.dataset.text = rows.map(([l, c]) => `${l || "none"} ${c}`).join(" · ");
  el.hidden = !rows.length;
}

const CSV_FIELDS = ["rank", "cell_id", "label", "label_name", "source", "similarity", "path"];

function csvOf(answer) {
  const cell = (v) => { const s = v === null || v === undefined ? "" : String(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  const head = [`# query: ${answer.query}`, ...(answer.exact_match ? [`# exact match: ${answer.exact_match.cell_id}`] : [])];
  return [...head, CSV_FIELDS.join(","), ...answer.neighbours.map((n) => CSV_FIELDS.map((f) => cell(n[f])).join(","))].join("\n") + "\n";
}

function setDownloads(answer) {
  for (const [id, text, type] of [["download-csv", csvOf(answer), "text/csv"],
    ["download-json", JSON.stringify({ ...answer, upload: answer.upload && { ...answer.upload, preview: undefined } }, null, 1), "application/json"]]) {
    const a = $(id);
    if (a.href && a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(new Blob([text], { type }));
  }
  $("downloads").hidden = !answer.neighbours.length;
}

function renderPage() {
  const answer = state.answer;
  const grid = $("grid");
  if (document.activeElement && grid.contains(document.activeElement)) document.activeElement.blur();
  grid.textContent = "";
  const ref = referenceLabel(answer);
  const self = answer.exact_match ? answer.exact_match.cell_id : null;
  const pages = Math.max(1, Math.ceil(answer.neighbours.length / PAGE_SIZE));
  const shown = answer.neighbours.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  for (const n of shown) grid.appendChild(tile(n, ref, self));
  $("pager").hidden = pages < 2;
  $("page-text").textContent = `${state.page * PAGE_SIZE + 1}–${state.page * PAGE_SIZE + shown.length} of ${answer.neighbours.length}`;
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
}

function tile(n, ref, self) {
  const el = document.createElement("div");
  el.className = "tile" + (ref && n.label === ref ? " same" : "") + (n.cell_id === self ? " self" : "");
  el.dataset.cellId = n.cell_id;
  el.title = n.cell_id;
  const view = document.createElement("button");
  view.type = "button";
  view.className = "view";
  view.title = "see this cell at full size";
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = n.cell_id;
  img.src = `${cellPath(n.cell_id)}/image`;
  view.appendChild(img);
  view.addEventListener("click", () => openViewer(n));
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = nameOf(n.label) + (n.cell_id === self ? " · this cell" : "");
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.innerHTML = `<span>#${n.rank} · ${escapeHtml(n.source)}</span><span>sim ${n.similarity.toFixed(4)}</span>`;
  const search = document.createElement("button");
  search.type = "button";
  search.className = "search";
  search.textContent = "search from this cell";
  search.addEventListener("click", () => queryCell(n.cell_id));
  el.append(view, name, meta, search);
  return el;
}

// ------------------------------------------------------------------------------ full-size viewer
async function openViewer(n) {
  const dlg = $("viewer");
  const url = `${cellPath(n.cell_id)}/image`;
  $("viewer-title").textContent = `${nameOf(n.label)} · #${n.rank} · sim ${n.similarity.toFixed(4)}`;
  $("viewer-open").href = url;
  $("viewer-size").textContent = "loading…";
  $("viewer-search").onclick = () => queryCell(n.cell_id);
  const img = $("viewer-img");
  img.removeAttribute("src");
  if (!dlg.open) dlg.showModal();
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`the image is not available (HTTP ${response.status})`);
    const origin = response.headers.get("X-Image-Origin");
    const blob = await response.blob();
    img.onload = () => {
      $("viewer-size").textContent = `${img.naturalWidth} × ${img.naturalHeight} px · ` +
        (origin === "original" ? "the original file" : "the copy held in the shards (the original is not reachable from this server)") +
        ` · ${n.cell_id}`;
    };
    img.src = URL.createObjectURL(blob);
  } catch (err) { $("viewer-size").textContent = err.message; }
}

$("viewer-close").addEventListener("click", () => $("viewer").close());
$("viewer").addEventListener("click", (ev) => { if (ev.target === $("viewer")) $("viewer").close(); });

// -------------------------------------------------------------------------------------------- map
async function loadMap() {
  let data;
  try { data = await api("/api/umap"); } catch (err) { fail(err); return; }
  if (!data.available) {
    $("map").hidden = true;
    $("map-hint").hidden = false;
    $("map-hint").innerHTML = "No map yet: run <code>ssl-cyto umap EMB_DIR</code> on this embedding folder (it writes " +
      "<code>EMB_DIR/umap/</code>) and restart the server.";
    return;
  }
  $("map-count").textContent = data.shown < data.total
    ? `${data.shown.toLocaleString()} of ${data.total.toLocaleString()} cells shown` : `${data.total.toLocaleString()} cells`;
  state.map = new CellMap($("map"), $("map-tip"), { onPick: queryCell, nameOf });
  const legend = $("map-legend");
  data.classes.forEach((label, i) => {
    const span = document.createElement("span");
    span.innerHTML = `<i style="background:${state.map.colour(i)}"></i>${escapeHtml(label)}`;
    span.title = nameOf(label);
    legend.appendChild(span);
  });
  state.map.setData(data);
  if (state.answer) state.map.setAnswer(state.answer);
}

// --------------------------------------------------------------------------------------- wiring
$("file").addEventListener("change", (ev) => { queryFile(ev.target.files[0]); ev.target.value = ""; });
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  queryFile(ev.dataTransfer.files[0]);
});
drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
$("cell-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("cell-id").value.trim();
  if (id) queryCell(id); else run();  // an empty box re-runs the current query (an upload is kept)
});
// a filter or k that differs from what the shown answer used re-runs the query (k's change event also
// fires on blur, after the value was already used: then nothing happens)
for (const id of ["label", "source", "k"]) $(id).addEventListener("change", () => { if (params() !== state.lastParams) run(); });
$("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); renderPage(); });
$("next").addEventListener("click", () => { state.page += 1; renderPage(); });
start();
