// faultline console: plain JavaScript, no dependencies. Everything it shows comes from the
// API with the key the user entered (kept for this tab only, in sessionStorage). Text from
// the API is always set as textContent, never as HTML.
"use strict";

const state = { key: null, faults: [], selected: null, tiles: "", view: null, timer: {} };
const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function say(text) { $("#message").textContent = text || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (options.body) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { ...options, headers });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.message || `${resp.status}`);
  return body;
}

// Debounced: a storm sends many documents a second; redraw at most twice a second.
function soon(name, fn, ms = 500) {
  if (state.timer[name]) return;
  state.timer[name] = setTimeout(() => { state.timer[name] = null; fn().catch((e) => say(e.message)); }, ms);
}

// ---- map: Web Mercator, fitted to the customers' bounding box --------------------------

function mercator(lon, lat) {
  const x = (lon + 180) / 360;
  const s = Math.sin((lat * Math.PI) / 180);
  const y = 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
  return [x, y];
}

function fit(bbox) {
  const svg = $("#map");
  const w = svg.clientWidth || 600, h = svg.clientHeight || 500;
  const [x0, y1] = mercator(bbox[0], bbox[1]);
  const [x1, y0] = mercator(bbox[2], bbox[3]);
  const scale = Math.min(w / (x1 - x0), h / (y1 - y0)) * 0.95;
  const ox = (w - (x1 - x0) * scale) / 2 - x0 * scale;
  const oy = (h - (y1 - y0) * scale) / 2 - y0 * scale;
  state.view = { scale, ox, oy, w, h };
}

function project(lon, lat) {
  const [x, y] = mercator(lon, lat);
  return [x * state.view.scale + state.view.ox, y * state.view.scale + state.view.oy];
}

function ringPath(ring) {
  return ring.map(([lon, lat], i) => { const [x, y] = project(lon, lat); return `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`; }).join("") + "Z";
}

function circlePath(lon, lat, radius) {
  const ring = [];
  for (let i = 0; i <= 48; i++) {
    const a = (i / 48) * 2 * Math.PI;
    const dlat = (radius * Math.sin(a)) / 111320;
    const dlon = (radius * Math.cos(a)) / (111320 * Math.cos((lat * Math.PI) / 180));
    ring.push([lon + dlon, lat + dlat]);
  }
  return ringPath(ring);
}

function drawTiles(layer) {
  if (!state.tiles) return;
  const { scale, ox, oy, w, h } = state.view;
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(scale / 256))));
  const n = 2 ** z, size = scale / n;
  for (let tx = Math.floor(-ox / size); tx * size + ox < w; tx++) {
    for (let ty = Math.floor(-oy / size); ty * size + oy < h; ty++) {
      if (tx < 0 || ty < 0 || tx >= n || ty >= n) continue;
      const href = state.tiles.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
      layer.appendChild(el("svg:image", { href, x: tx * size + ox, y: ty * size + oy, width: size, height: size }));
    }
  }
}

async function drawMap() {
  const [density, areas, people] = await Promise.all([api("/api/v1/map/density?cells=96"), api("/api/v1/map/faults"), api("/api/v1/staff")]);
  const svg = $("#map");
  svg.replaceChildren();
  if (!density.bbox) return;
  fit(density.bbox);
  const tiles = el("svg:g"), cells = el("svg:g"), faults = el("svg:g", { id: "fault-layer" }), crews = el("svg:g", { id: "staff-layer" });
  svg.append(tiles, cells, faults, crews);
  drawTiles(tiles);
  const [bx0, by0, bx1, by1] = density.bbox;
  const dx = (bx1 - bx0) / density.cols, dy = (by1 - by0) / density.rows;
  const most = Math.max(1, ...density.cells.map((c) => c[2]));
  for (const [c, r, total, out] of density.cells) {
    const [x0, y0] = project(bx0 + c * dx, by0 + (r + 1) * dy);
    const [x1, y1] = project(bx0 + (c + 1) * dx, by0 + r * dy);
    const share = out / total;
    const fill = share > 0 ? `rgba(216,67,21,${0.35 + 0.65 * share})` : `rgba(120,135,155,${0.25 + 0.6 * Math.sqrt(total / most)})`;
    cells.appendChild(el("svg:rect", { class: "cell", x: x0, y: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0), fill }));
  }
  for (const f of areas.features) {
    const p = f.properties, g = f.geometry;
    let d = "";
    if (g.type === "Polygon") d = g.coordinates.map(ringPath).join("");
    else if (g.type === "MultiPolygon") d = g.coordinates.flat().map(ringPath).join("");
    else if (g.type === "Point") d = circlePath(g.coordinates[0], g.coordinates[1], p.radius_m || 150);
    const path = el("svg:path", { d, class: `fault ${p.state}`, "data-fault-id": p.fault_id, "fill-rule": "evenodd" });
    if (p.fault_id === state.selected) path.classList.add("selected");
    path.appendChild(el("svg:title", {}, `${p.fault_id}: ${p.affected} out`));
    path.addEventListener("click", () => showFault(p.fault_id));
    faults.appendChild(path);
  }
  // Who is where: staff on assignment stand out; the rest are small grey dots.
  for (const p of people.staff) {
    if (p.status === "off_duty") continue;
    const [x, y] = project(p.lon, p.lat);
    const dot = el("svg:circle", { cx: x, cy: y, r: p.assignment ? 4 : 2, class: p.assignment ? "staff busy" : "staff", "data-staff-id": p.staff_id });
    dot.appendChild(el("svg:title", {}, `${p.staff_id} ${p.name}: ${p.assignment ? `${p.assignment.skill} at ${p.assignment.fault_id} (${p.assignment.state})` : p.status}`));
    crews.appendChild(dot);
  }
}

// ---- faults table and one fault ----------------------------------------------------------

const time = (t) => (t ? new Date(t).toLocaleString() : "—");

async function drawFaults() {
  const { faults } = await api("/api/v1/faults?state=pending,active,planned");
  state.faults = faults;
  const body = $("#faults tbody");
  body.replaceChildren();
  let out = 0;
  for (const f of faults) {
    out += f.affected;
    const unfilled = Object.values(f.crew_unfilled).reduce((a, b) => a + b, 0);
    const row = el("tr", { "data-fault-id": f.fault_id, class: f.severity === "critical" ? "critical" : "" });
    for (const v of [f.fault_id, f.state, f.severity, f.cause, f.affected, f.restored, time(f.etr),
      `${f.crew.length}${unfilled ? ` (+${unfilled} unfilled)` : ""}`, f.notices.sent]) row.appendChild(el("td", {}, v));
    row.addEventListener("click", () => showFault(f.fault_id));
    body.appendChild(row);
  }
  $("#summary").textContent = `${faults.length} open faults · ${out.toLocaleString()} customers out`;
}

async function showFault(id) {
  state.selected = id;
  tab("fault");
  const f = await api(`/api/v1/faults/${encodeURIComponent(id)}`);
  const pane = $("#tab-fault");
  pane.replaceChildren(el("h2", {}, `${f.fault_id} · ${f.state} · ${f.severity}`),
    el("p", {}, `${f.cause} — ${f.affected} out, ${f.restored} restored, ETR ${time(f.etr)}; ${f.customer_reports} customer reports`));
  const notices = el("table", { id: "fault-notices" });
  notices.appendChild(el("tr")).append(el("th", {}, "Channel"), el("th", {}, "State"), el("th", {}, "Notices"));
  for (const [channel, states] of Object.entries(f.notices_by_channel)) {
    for (const [st, n] of Object.entries(states)) notices.appendChild(el("tr")).append(el("td", {}, channel), el("td", {}, st), el("td", {}, n));
  }
  const crew = el("table", { id: "fault-crew" });
  crew.appendChild(el("tr")).append(el("th", {}, "Slot"), el("th", {}, "Person"), el("th", {}, "State"), el("th", {}, "Travel km"));
  for (const a of f.assignments) {
    crew.appendChild(el("tr")).append(el("td", {}, `${a.skill} #${a.index}`), el("td", {}, a.staff_id || "— unfilled —"),
      el("td", {}, a.pinned ? `${a.state} (pinned)` : a.state), el("td", {}, (a.terms.travel_m / 1000).toFixed(1)));
  }
  pane.append(el("h3", {}, "Notices"), notices, el("h3", {}, "Crew"), crew);
  document.querySelectorAll(".fault").forEach((p) => p.classList.toggle("selected", p.dataset.faultId === id));
}

// ---- staffing board -----------------------------------------------------------------------

async function drawBoard() {
  const [{ assignments }, { staff }] = await Promise.all([api("/api/v1/assignments"), api("/api/v1/staff")]);
  const faults = [...new Set(assignments.map((a) => a.fault_id))];
  const board = $("#board");
  board.replaceChildren();
  for (const fault of faults) {
    const col = el("div", { class: "column", "data-fault-id": fault });
    col.appendChild(el("h3", {}, fault));
    for (const a of assignments.filter((x) => x.fault_id === fault)) {
      const slot = el("div", { class: "slot", "data-staff-id": a.staff_id || "" });
      slot.append(el("span", {}, `${a.skill} #${a.index}`), el("b", {}, a.staff_id || "— unfilled —"),
        el("span", { class: `state ${a.state}` }, a.state));
      if (a.pinned) slot.appendChild(el("span", { class: "pin" }, "pinned"));
      if (a.staff_id) {
        const to = el("select", { "aria-label": `move ${a.staff_id} to` });
        for (const other of faults.filter((x) => x !== fault)) to.appendChild(el("option", { value: other }, other));
        const move = el("button", { class: "move" }, "Move");
        move.addEventListener("click", () => act("/api/v1/assignments/move", { staff_id: a.staff_id, fault_id: to.value, why: "moved on the console board" }));
        if (to.options.length) slot.append(to, move);
        if (!a.pinned) {
          const pin = el("button", { class: "pin-here" }, "Pin");
          pin.addEventListener("click", () => act("/api/v1/assignments/pin", { fault_id: a.fault_id, skill: a.skill, index: a.index, staff_id: a.staff_id, why: "pinned on the console board" }));
          slot.appendChild(pin);
        }
        if (a.pinned) {
          const release = el("button", { class: "release" }, "Release");
          release.addEventListener("click", () => act(`/api/v1/staff/${encodeURIComponent(a.staff_id)}/release`, { why: "released on the console board" }));
          slot.appendChild(release);
        }
      }
      col.appendChild(slot);
    }
    board.appendChild(col);
  }
  const idle = staff.filter((p) => !p.assignment && p.status !== "off_duty").length;
  board.appendChild(el("p", {}, `${staff.length} staff, ${idle} available and unassigned.`));
}

async function act(path, body) {
  try {
    await api(path, { method: "POST", body: JSON.stringify(body) });
    say("");
    soon("board", drawBoard, 300);
  } catch (e) { say(e.message); }
}

// ---- live updates over server-sent events (read with fetch, so the key is a header) ---------

async function live() {
  for (;;) {
    try {
      const resp = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${state.key}` } });
      if (!resp.ok) throw new Error(`stream ${resp.status}`);
      $("#live").textContent = "live"; $("#live").classList.remove("off");
      const reader = resp.body.getReader(), text = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += text.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          const kind = (block.match(/^event: (.*)$/m) || [])[1];
          if (kind === "fault" || kind === "resync") { soon("faults", drawFaults); soon("map", drawMap, 1000); soon("board", drawBoard, 1000); }
          if (kind === "staffing") soon("board", drawBoard, 300);
          if (kind === "fault" && state.selected && block.includes(`"${state.selected}"`)) soon("fault", () => showFault(state.selected), 1000);
        }
      }
    } catch (e) { say(e.message); }
    $("#live").textContent = "offline"; $("#live").classList.add("off");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function tab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("hidden", t.id !== `tab-${name}`));
  if (name === "board") drawBoard().catch((e) => say(e.message));
}

async function start(key) {
  state.key = key;
  sessionStorage.setItem("faultline-key", key);
  try {
    await Promise.all([drawFaults(), drawMap(), drawBoard()]);
    say("");
    live();
  } catch (e) { say(`Cannot load: ${e.message}`); }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => tab(b.dataset.tab)));
  $("#login").addEventListener("submit", (e) => { e.preventDefault(); start($("#key").value.trim()); });
  state.tiles = (await fetch("/console/config").then((r) => r.json()).catch(() => ({}))).tile_url || "";
  // A key in the fragment (#key=…) is never sent to the server; the demo prints such a link.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) history.replaceState(null, "", location.pathname);
  const key = fromHash || sessionStorage.getItem("faultline-key");
  if (key) start(key);
  window.addEventListener("resize", () => soon("map", drawMap, 300));
});
