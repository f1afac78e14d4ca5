// ssl-cyto serve: the page. Plain JavaScript, no build step, no network access beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, umap: null, query: null, mapPoints: [] };
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
  "#31a354", "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6"];

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

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = "status" + (isError ? " error" : "");
}

function fail(err) {
  if (err instanceof ApiError && err.status === 401) { showLogin(err.message); return; }
  setStatus(err.message || String(err), true);
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
  $("info").textContent = `${info.cells.toLocaleString()} cells · ${info.model.architecture}` +
    `${info.model.random_init ? " (random weights)" : ""} · ${idx.kind} index, ${idx.dim}-d, cosine · ` +
    info.sources.map((s) => `${s.source} ${s.count.toLocaleString()}`).join(", ");
  $("k").max = info.limits.k_max;
  fillSelect($("label"), info.classes, "label", (c) => `${c.name} (${c.label}) · ${c.count}`);
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

async function queryFile(file) {
  if (!file) return;
  setStatus(`embedding ${file.name}…`);
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const answer = await api(`/api/query?${params()}`, { method: "POST", body: form });
    showQuery(URL.createObjectURL(file), escapeHtml(`uploaded image: ${answer.upload.format}, ` +
      `${answer.upload.width}×${answer.upload.height} px`), null);
    render(answer);
  } catch (err) { fail(err); }
}

async function queryCell(cellId) {
  cellId = cellId.trim();
  if (!cellId) return;
  $("cell-id").value = cellId;
  setStatus("searching…");
  try {
    const answer = await api(`${cellPath(cellId)}/neighbours?${params()}`);
    const name = answer.query_label ? `${answer.query_label_name} (${answer.query_label})` : "no label";
    showQuery(`${cellPath(cellId)}/thumb`,
      `<b>${escapeHtml(name)}</b> · ${escapeHtml(answer.query_source)}<br><small>${escapeHtml(cellId)}</small>`, cellId);
    render(answer);
  } catch (err) { fail(err); }
}

function showQuery(src, safeHtml, cellId) {
  // safeHtml is built from escaped parts only
  $("query-view").hidden = false;
  const img = $("query-img");
  img.hidden = false;
  img.onerror = () => { img.hidden = true; };  // e.g. a TIFF upload: browsers cannot show it
  img.src = src;
  $("query-text").innerHTML = safeHtml;
  state.query = { cellId };
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function majorityLabel(neighbours) {
  const counts = new Map();
  for (const n of neighbours) if (n.label) counts.set(n.label, (counts.get(n.label) || 0) + 1);
  let best = null;
  for (const [label, c] of counts) if (best === null || c > counts.get(best)) best = label;
  return best;
}

function render(answer) {
  const grid = $("grid");
  if (document.activeElement && grid.contains(document.activeElement)) document.activeElement.blur();
  grid.textContent = "";
  const ref = answer.query_label || majorityLabel(answer.neighbours);
  $("legend-note").textContent = answer.query_label
    ? `Marked against the query's label ${answer.query_label}. Click a cell to search from it.`
    : `The upload has no label: marked against the neighbours' most frequent label` +
      `${ref ? ` (${ref})` : ""}. Click a cell to search from it.`;
  for (const n of answer.neighbours) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile" + (ref && n.label === ref ? " same" : "");
    tile.dataset.cellId = n.cell_id;
    tile.title = `${n.cell_id}\n${n.path}`;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = n.cell_id;
    img.src = `${cellPath(n.cell_id)}/thumb`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = n.label ? `${n.label_name || n.label} (${n.label})` : "no label";
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.innerHTML = `<span>#${n.rank} · ${escapeHtml(n.source)}</span><span>sim ${n.similarity.toFixed(4)}</span>`;
    tile.append(img, name, meta);
    tile.addEventListener("click", () => queryCell(n.cell_id));
    grid.appendChild(tile);
  }
  const filters = [answer.label && `label ${answer.label}`, answer.source && `source ${answer.source}`].filter(Boolean);
  $("result-count").textContent = `(${answer.neighbours.length}${filters.length ? ", " + filters.join(", ") : ""})`;
  setStatus(answer.neighbours.length ? "" : "no cell matches these filters");
  drawMap(answer);
}

// -------------------------------------------------------------------------------------------- map
function colourOf(label) {
  const labels = state.info ? state.info.classes.map((c) => c.label) : [];
  const i = labels.indexOf(label);
  return i < 0 ? "#999" : PALETTE[i % PALETTE.length];
}

async function loadMap() {
  try { state.umap = await api("/api/umap"); } catch (err) { fail(err); return; }
  if (!state.umap.available) {
    $("map").hidden = true;
    $("map-hint").hidden = false;
    $("map-hint").innerHTML = "No map yet: run <code>ssl-cyto umap EMB_DIR</code> on this embedding folder and restart the server.";
    return;
  }
  const legend = $("map-legend");
  for (const c of state.info.classes) {
    const span = document.createElement("span");
    span.innerHTML = `<i style="background:${colourOf(c.label)}"></i>${escapeHtml(c.label)}`;
    span.title = c.name;
    legend.appendChild(span);
  }
  drawMap(null);
}

function drawMap(answer) {
  const u = state.umap;
  if (!u || !u.available) return;
  const canvas = $("map");
  const scale = window.devicePixelRatio || 1;
  if (canvas.clientWidth) {  // draw at the displayed size, so points keep their pixel size
    canvas.width = Math.round(canvas.clientWidth * scale);
    canvas.height = Math.round(canvas.clientWidth * 0.75 * scale);
  }
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 10;
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < u.x.length; i++) {
    minX = Math.min(minX, u.x[i]); maxX = Math.max(maxX, u.x[i]);
    minY = Math.min(minY, u.y[i]); maxY = Math.max(maxY, u.y[i]);
  }
  const sx = (W - 2 * pad) / (maxX - minX || 1), sy = (H - 2 * pad) / (maxY - minY || 1);
  ctx.clearRect(0, 0, W, H);
  const r = (u.x.length > 20000 ? 2 : u.x.length > 3000 ? 3 : 5) * scale;
  state.mapPoints = u.x.map((x, i) => [pad + (x - minX) * sx, H - pad - (u.y[i] - minY) * sy]);
  const index = new Map(u.cell_id.map((c, i) => [c, i]));
  state.mapPoints.forEach(([x, y], i) => {
    ctx.fillStyle = colourOf(u.label[i]);
    ctx.globalAlpha = answer ? 0.45 : 0.85;
    ctx.beginPath(); ctx.arc(x, y, r / 2, 0, 2 * Math.PI); ctx.fill();
  });
  ctx.globalAlpha = 1;
  if (!answer) return;
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 1.5 * scale;
  for (const n of answer.neighbours) {
    const i = index.get(n.cell_id);
    if (i === undefined) continue;
    const [x, y] = state.mapPoints[i];
    ctx.beginPath(); ctx.arc(x, y, r / 2 + 3 * scale, 0, 2 * Math.PI); ctx.stroke();
  }
  const q = state.query && state.query.cellId ? index.get(state.query.cellId) : undefined;
  if (q !== undefined) {
    const [x, y] = state.mapPoints[q];
    ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(x, y, r / 2 + 3 * scale, 0, 2 * Math.PI); ctx.fill();
  }
}

$("map").addEventListener("click", (ev) => {
  if (!state.mapPoints.length) return;
  const rect = ev.target.getBoundingClientRect();
  const x = (ev.clientX - rect.left) * (ev.target.width / rect.width);
  const y = (ev.clientY - rect.top) * (ev.target.height / rect.height);
  let best = -1, bestD = Infinity;
  state.mapPoints.forEach(([px, py], i) => {
    const d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  if (best >= 0) queryCell(state.umap.cell_id[best]);
});

// --------------------------------------------------------------------------------------- wiring
$("file").addEventListener("change", (ev) => queryFile(ev.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  queryFile(ev.dataTransfer.files[0]);
});
drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
$("cell-form").addEventListener("submit", (ev) => { ev.preventDefault(); queryCell($("cell-id").value); });
start();
