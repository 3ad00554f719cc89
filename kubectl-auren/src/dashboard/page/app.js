// The AUREN dashboard page: renders the board the server pushes as Server-Sent Events.
// Everything is built with DOM calls and textContent, so no value from the cluster is parsed
// as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_HEADER = "x-auren-dashboard-token";
// The token the dashboard printed in its URL (?token=...): every action carries it. It is kept
// for this tab (a reload still works) and taken out of the address bar.
const TOKEN = (() => {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) {
    sessionStorage.setItem("auren-dashboard-token", fromUrl);
    history.replaceState(null, "", location.pathname);
  }
  return fromUrl || sessionStorage.getItem("auren-dashboard-token") || "";
})();
// Actions that move traffic or throw a release away are confirmed first.
const CONFIRM = {
  promote: rt => `Promote the candidate of ${rt.namespace}/${rt.name}? Traffic moves to it.`,
  abort: rt => `Abort the rollout of ${rt.namespace}/${rt.name}? The candidate is rolled back.`,
};
// Results of actions, kept across re-renders: "namespace/name" -> {text, error}.
const results = {};
let updates = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function short(hash) { return hash && hash.length > 10 ? hash.slice(0, 10) : (hash || "-"); }
function clock(iso) { return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "-"; }

function releasesTable(rt) {
  const rows = rt.releases.map(r => el("tr", { "data-role": r.role },
    el("td", { class: "role " + r.role }, r.role),
    el("td", {}, el("code", { class: "hash" }, short(r.hash))),
    el("td", { class: "image" }, r.image),
    el("td", {}, r.scaleDownAt ? "scaled down " + clock(r.scaleDownAt) : "")));
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 4, class: "empty" }, "no release yet")));
  return el("table", { class: "releases" }, el("tbody", {}, ...rows));
}

function trafficBlock(rt) {
  const t = rt.traffic;
  const box = el("div", { class: "traffic", "data-strategy": t.strategy });
  box.append(el("div", {}, "strategy: ", el("b", {}, t.strategy === "canary" ? "canary" : "blue/green")));
  box.append(el("div", {}, "active Service → ", el("code", { class: "active" }, t.active === "*" ? "every release (canary)" : short(t.active))));
  box.append(el("div", {}, "preview Service → ", el("code", { class: "preview" }, short(t.preview))));
  if (t.canary) {
    const c = t.canary;
    box.append(el("div", { class: "weight" }, `step ${Math.min(c.step, c.steps)}/${c.steps}: candidate weight ${c.actualWeight}% (asked ${c.requestedWeight}%)`));
    const bar = el("div", { class: "bar" }, el("div", { style: `width:${Math.max(0, Math.min(100, c.actualWeight))}%` }));
    box.append(bar);
  }
  if (rt.ready) box.append(el("div", {}, "ready API pods: ", el("b", { class: "ready" }, rt.ready)));
  if (rt.analysis) {
    const a = rt.analysis;
    box.append(el("div", { class: "analysis" },
      `analysis of ${short(a.revision)}: ${a.successes} passed, ${a.failures} failed, ` +
      `${a.inconclusive} inconclusive, ${a.dependencyOutages} not counted` + (a.passed ? " — passed" : "")));
  }
  return box;
}

// One small chart per check, all on the same time axis.
function charts(rt) {
  const box = el("div", { class: "charts" });
  const all = rt.series.flatMap(s => s.points);
  if (all.length === 0) { box.append(el("p", { class: "empty" }, "no measurement yet")); return box; }
  const t0 = Math.min(...all.map(p => p.t)), t1 = Math.max(...all.map(p => p.t));
  for (const s of rt.series) box.append(chart(s, t0, t1));
  return box;
}

function chart(series, t0, t1) {
  const W = 420, H = 96, L = 46, R = 8, T = 16, B = 18;
  const values = series.points.map(p => p.value).filter(v => v !== null && v !== undefined);
  const lo = Math.min(0, ...values), top = Math.max(lo, ...values);
  const hi = top > lo ? top : lo + 1; // all zero: a 0..1 axis, not 0..1e-9
  const x = t => L + (t1 === t0 ? (W - L - R) / 2 : (t - t0) / (t1 - t0) * (W - L - R));
  const y = v => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const root = svg("svg", { class: "chart", "data-check": series.check, width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  root.append(svg("text", { x: L, y: 11 }, series.check));
  root.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  root.append(svg("text", { x: 2, y: T + 8 }, fmt(hi)));
  root.append(svg("text", { x: 2, y: H - B }, fmt(lo)));
  root.append(svg("text", { x: L, y: H - 4 }, clock(new Date(t0).toISOString())));
  root.append(svg("text", { x: W - R - 48, y: H - 4 }, clock(new Date(t1).toISOString())));
  const withValue = series.points.filter(p => p.value !== null && p.value !== undefined);
  if (withValue.length > 1) {
    root.append(svg("polyline", { class: "line", points: withValue.map(p => `${x(p.t)},${y(p.value)}`).join(" ") }));
  }
  for (const p of series.points) {
    const has = p.value !== null && p.value !== undefined;
    const dot = svg("circle", { class: "point " + p.verdict + (has ? "" : " nodata"), "data-verdict": p.verdict,
      cx: x(p.t), cy: has ? y(p.value) : H - B, r: 3.5 });
    dot.append(svg("title", {}, `${series.check} ${has ? fmt(p.value) : "no data"} (${p.threshold}) ${p.verdict}` +
      ` — ${short(p.revision)} at ${clock(p.at)}` + (p.reason ? ` — ${p.reason}` : "")));
    root.append(dot);
  }
  return root;
}

function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
}

function historyTable(rt) {
  const head = el("thead", {}, el("tr", {}, el("th", {}, "when"), el("th", {}, "release"),
    el("th", {}, "image"), el("th", {}, "outcome"), el("th", {}, "reason")));
  const rows = rt.history.map(h => el("tr", {},
    el("td", {}, clock(h.at)), el("td", {}, el("code", {}, short(h.hash))), el("td", {}, h.image),
    el("td", { class: "outcome " + h.outcome }, h.outcome), el("td", {}, h.reason)));
  return el("table", { class: "history" }, head, el("tbody", {}, ...rows));
}

function actionsBlock(rt) {
  const key = rt.namespace + "/" + rt.name;
  const box = el("div", { class: "actions" });
  for (const action of ["promote", "abort", "retry"]) {
    const button = el("button", { type: "button", "data-action": action }, action);
    button.addEventListener("click", () => act(rt, action));
    box.append(button);
  }
  const r = results[key];
  box.append(el("span", { class: "action-result" + (r && r.error ? " error" : "") }, r ? r.text : ""));
  return box;
}

async function act(rt, action) {
  const key = rt.namespace + "/" + rt.name;
  const url = `/api/runtimes/${encodeURIComponent(rt.namespace)}/${encodeURIComponent(rt.name)}/${action}`;
  if (CONFIRM[action] && !window.confirm(CONFIRM[action](rt))) return;
  try {
    const resp = await fetch(url, { method: "POST", headers: { [TOKEN_HEADER]: TOKEN } });
    const body = await resp.json();
    results[key] = resp.ok ? { text: `${action} requested (${body.annotation})` }
                           : { text: `${action} refused: ${body.detail}`, error: true };
  } catch (e) {
    results[key] = { text: `${action} failed: ${e}`, error: true };
  }
  if (lastBoard) render(lastBoard);
}

function card(rt, actions) {
  const key = rt.namespace + "/" + rt.name;
  const section = el("section", { class: "runtime", "data-key": key });
  section.append(el("h2", {}, el("span", { class: "ns" }, rt.namespace + " /"), el("span", { class: "name" }, rt.name),
    el("span", { class: "phase " + rt.phase }, rt.phase), el("span", { class: "reason" }, rt.reason || "")));
  section.append(el("p", { class: "message" }, rt.message || ""));
  const left = el("div", {}, el("h3", {}, "Releases"), releasesTable(rt), el("h3", {}, "Traffic"), trafficBlock(rt));
  const right = el("div", {}, el("h3", {}, "Analysis measurements"), charts(rt));
  section.append(el("div", { class: "grid" }, left, right));
  section.append(el("h3", {}, "History"), historyTable(rt));
  if (actions) section.append(actionsBlock(rt));
  return section;
}

let lastBoard = null;

function render(board) {
  lastBoard = board;
  document.getElementById("scope").textContent = board.scope;
  document.getElementById("mode").textContent = board.actions ? "actions allowed" : "read-only";
  const main = document.getElementById("runtimes");
  const cards = board.runtimes.map(rt => card(rt, board.actions));
  if (cards.length === 0) cards.push(el("p", { class: "empty" }, "No AurenRuntime here yet."));
  main.replaceChildren(...cards);
  document.body.dataset.updates = String(updates);
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("board", ev => { updates += 1; render(JSON.parse(ev.data)); });
  source.onopen = () => { live.className = "on"; live.textContent = "live"; };
  source.onerror = () => { live.className = "off"; live.textContent = "reconnecting"; };
}

connect();
