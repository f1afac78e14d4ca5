// ssl-cyto serve: the map (a canvas). Zoom with the wheel, pan by dragging, reset with a double click;
// hover names the nearest point within a few pixels; a click on a point (not empty space) picks it.
"use strict";

const MAP_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
  "#31a354", "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6"];
const PICK_RADIUS = 8;  // css px

class CellMap {
  constructor(canvas, tip, { onPick, nameOf }) {
    this.canvas = canvas; this.tip = tip; this.onPick = onPick; this.nameOf = nameOf;
    this.data = null; this.answer = null; this.view = { zoom: 1, cx: 0.5, cy: 0.5 };
    this.drag = null; this.frame = 0;
    canvas.addEventListener("wheel", (ev) => this.wheel(ev), { passive: false });
    canvas.addEventListener("mousedown", (ev) => { this.drag = { x: ev.clientX, y: ev.clientY, moved: false, view: { ...this.view } }; });
    window.addEventListener("mouseup", (ev) => this.mouseup(ev));
    canvas.addEventListener("mousemove", (ev) => this.mousemove(ev));
    canvas.addEventListener("mouseleave", () => { this.tip.hidden = true; });
    canvas.addEventListener("dblclick", () => { this.view = { zoom: 1, cx: 0.5, cy: 0.5 }; this.draw(); });
    window.addEventListener("resize", () => this.draw());
  }

  colour(code) { return code < 0 ? "#999" : MAP_PALETTE[code % MAP_PALETTE.length]; }

  setData(data) {
    this.data = data;
    const [x0, x1, y0, y1] = data.bounds;
    const sx = x1 - x0 || 1, sy = y1 - y0 || 1;
    // unit coordinates in [0, 1], y up
    this.unit = (x, y) => [(x - x0) / sx, (y - y0) / sy];
    this.ux = new Float32Array(data.x.length); this.uy = new Float32Array(data.x.length);
    for (let i = 0; i < data.x.length; i++) { const [u, v] = this.unit(data.x[i], data.y[i]); this.ux[i] = u; this.uy[i] = v; }
    this.draw();
  }

  setAnswer(answer) { this.answer = answer; this.draw(); }

  toScreen(u, v) {  // unit -> canvas px
    const W = this.canvas.width, H = this.canvas.height, pad = 10 * this.scale;
    const s = Math.min(W, H) - 2 * pad;
    return [W / 2 + (u - this.view.cx) * s * this.view.zoom, H / 2 - (v - this.view.cy) * s * this.view.zoom];
  }

  toUnit(px, py) {
    const W = this.canvas.width, H = this.canvas.height, pad = 10 * this.scale;
    const s = Math.min(W, H) - 2 * pad;
    return [this.view.cx + (px - W / 2) / (s * this.view.zoom), this.view.cy - (py - H / 2) / (s * this.view.zoom)];
  }

  eventPx(ev) {
    const rect = this.canvas.getBoundingClientRect();
    return [(ev.clientX - rect.left) * (this.canvas.width / rect.width), (ev.clientY - rect.top) * (this.canvas.height / rect.height)];
  }

  draw() {
    if (!this.data) return;
    const c = this.canvas;
    this.scale = window.devicePixelRatio || 1;
    if (c.clientWidth) { c.width = Math.round(c.clientWidth * this.scale); c.height = Math.round(c.clientHeight * this.scale); }
    const ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    const n = this.ux.length;
    const r = Math.max(1, (n > 20000 ? 1.2 : n > 3000 ? 1.8 : 2.6) * Math.sqrt(this.view.zoom)) * this.scale;
    ctx.globalAlpha = this.answer ? 0.4 : 0.8;
    for (let i = 0; i < n; i++) {
      const [x, y] = this.toScreen(this.ux[i], this.uy[i]);
      if (x < -r || y < -r || x > c.width + r || y > c.height + r) continue;
      ctx.fillStyle = this.colour(this.data.label[i]);
      ctx.fillRect(x - r, y - r, 2 * r, 2 * r);
    }
    ctx.globalAlpha = 1;
    const m = this.answer && this.answer.map;
    if (!m) return;
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5 * this.scale;
    for (const p of m.neighbours) {
      if (!p) continue;
      const [x, y] = this.toScreen(...this.unit(p[0], p[1]));
      ctx.beginPath(); ctx.arc(x, y, r + 4 * this.scale, 0, 2 * Math.PI); ctx.stroke();
    }
    if (m.query) {
      const [x, y] = this.toScreen(...this.unit(m.query[0], m.query[1]));
      ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(x, y, r + 5 * this.scale, 0, 2 * Math.PI); ctx.fill();
      if (m.placed === "neighbours") {  // an upload: a white cross marks a placed, not a mapped, point
        ctx.strokeStyle = "#fff"; ctx.beginPath();
        ctx.moveTo(x - 4 * this.scale, y); ctx.lineTo(x + 4 * this.scale, y);
        ctx.moveTo(x, y - 4 * this.scale); ctx.lineTo(x, y + 4 * this.scale); ctx.stroke();
      }
    }
  }

  nearest(px, py) {  // index of the nearest shown point within PICK_RADIUS css px, or -1
    let best = -1, bestD = (PICK_RADIUS * this.scale) ** 2;
    for (let i = 0; i < this.ux.length; i++) {
      const [x, y] = this.toScreen(this.ux[i], this.uy[i]);
      const d = (x - px) ** 2 + (y - py) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }

  wheel(ev) {
    if (!this.data) return;
    ev.preventDefault();
    const [px, py] = this.eventPx(ev);
    const [u, v] = this.toUnit(px, py);
    const zoom = Math.min(200, Math.max(1, this.view.zoom * (ev.deltaY < 0 ? 1.25 : 0.8)));
    const k = this.view.zoom / zoom;  // keep the point under the cursor in place
    this.view = { zoom, cx: u - (u - this.view.cx) * k, cy: v - (v - this.view.cy) * k };
    this.draw();
  }

  zoomBy(factor) { this.view.zoom = Math.min(200, Math.max(1, this.view.zoom * factor)); this.draw(); }

  mousemove(ev) {
    if (!this.data) return;
    if (this.drag && (ev.buttons & 1)) {
      const dx = ev.clientX - this.drag.x, dy = ev.clientY - this.drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) this.drag.moved = true;
      const s = (Math.min(this.canvas.width, this.canvas.height) - 20 * this.scale) * this.view.zoom / this.scale;
      this.view = { ...this.view, cx: this.drag.view.cx - dx / s, cy: this.drag.view.cy + dy / s };
      this.draw();
      return;
    }
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => {
      const [px, py] = this.eventPx(ev);
      const i = this.nearest(px, py);
      if (i < 0) { this.tip.hidden = true; this.canvas.style.cursor = "crosshair"; return; }
      const code = this.data.label[i];
      const label = code < 0 ? "no label" : this.nameOf(this.data.classes[code]);
      this.tip.textContent = `${label} · ${this.data.cell_id[i]}`;
      const rect = this.canvas.getBoundingClientRect();
      this.tip.style.left = `${Math.min(ev.clientX - rect.left + 12, rect.width - 120)}px`;
      this.tip.style.top = `${ev.clientY - rect.top + 12}px`;
      this.tip.hidden = false;
      this.canvas.style.cursor = "pointer";
    });
  }

  mouseup(ev) {
    const drag = this.drag;
    this.drag = null;
    if (!drag || drag.moved || ev.target !== this.canvas || !this.data) return;
    const [px, py] = this.eventPx(ev);
    const i = this.nearest(px, py);
    if (i >= 0) this.onPick(this.data.cell_id[i]);
  }
}
