// referral-mesh dashboard: plain JavaScript, no build step, no third-party code. It reads the
// gateway's public JSON API with the bearer token the user pasted (kept in sessionStorage) and
// draws its charts as inline SVG. Every value from the API is written with textContent, never
// as HTML, because referrer ids and event bodies come from users.
"use strict";

const TOKEN_KEY = "referral-mesh.dashboard.token";
const FLOWS = ["SUPPLIER_TO_COUPLE", "COUPLE_TO_SUPPLIER", "SUPPLIER_TO_SUPPLIER", "COUPLE_TO_COUPLE"];
const FLOW_LABELS = {
  SUPPLIER_TO_COUPLE: "supplier → couple",
  COUPLE_TO_SUPPLIER: "couple → supplier",
  SUPPLIER_TO_SUPPLIER: "supplier → supplier",
  COUPLE_TO_COUPLE: "couple → couple",
};
const FEED_LIMIT = 100;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- formatting (the same rules the headless test checks against the JSON) ----

/** int64 arrive as strings, doubles as numbers; an absent field is zero. */
function num(v) {
  if (v === undefined || v === null || v === "") return 0;
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}
function fmtK(v) { return num(v).toFixed(2); }
function fmtInt(v) { return num(v).toLocaleString("en-GB"); }
function fmtRate(v) { return (num(v) * 100).toFixed(1) + "%"; }
function fmtDays(v) { return v === undefined || v === null ? "–" : num(v).toFixed(1) + " d"; }

// ---- the API ----

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(path) {
  const resp = await fetch(path, {
    headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    cache: "no-store",
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, body.message || resp.statusText || "request failed");
  return body;
}

function windowQuery() {
  const days = Number($("window").value);
  if (days === 30) return new URLSearchParams(); // the API's own default window
  const to = new Date();
  const from = new Date(to.getTime() - days * 86400000);
  return new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
}

function withQuery(path, extra) {
  const q = windowQuery();
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  const s = q.toString();
  return s ? path + "?" + s : path;
}

// ---- DOM helpers ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function setNumber(id, text, value) {
  const node = $(id);
  node.textContent = text;
  node.dataset.value = value === undefined ? "" : String(value);
}

function showError(message) {
  const node = $("error");
  node.textContent = message;
  node.hidden = !message;
}

function suppressedRow(tbody, columns) {
  tbody.replaceChildren(el("tr", {}, el("td", { colspan: columns, class: "muted" },
    "suppressed: fewer than 5 people")));
}

// ---- sections ----

function renderViral(v) {
  const suppressed = Boolean(v.suppressed);
  setNumber("loop-k", suppressed ? "suppressed" : fmtK(v.loopK), suppressed ? "" : num(v.loopK));
  setNumber("k-factor", suppressed ? "suppressed" : fmtK(v.kFactor), suppressed ? "" : num(v.kFactor));
  const status = v.growthStatus && v.growthStatus !== "GROWTH_STATUS_UNSPECIFIED" ? v.growthStatus : "–";
  const badge = $("growth-status");
  badge.textContent = status.replace("_", "-");
  badge.dataset.value = status;
  badge.className = "status " + status.toLowerCase();
  $("invites-per-referrer").textContent = num(v.invitesPerReferrer).toFixed(2);
  $("conversion-rate").textContent = fmtRate(v.conversionRate);
  $("cycle-time").textContent = fmtDays(v.cycleTimeDays);
  $("doubling-time").textContent = fmtDays(v.doublingTimeDays);
  for (const key of ["referrers", "invitations", "signups", "conversions"]) {
    setNumber("total-" + key, fmtInt(v[key]), num(v[key]));
  }
  const byFlow = new Map((v.byFlow || []).map((f) => [f.flow, f]));
  const rows = FLOWS.map((flow) => {
    const f = byFlow.get(flow) || { flow };
    const cells = f.suppressed
      ? [el("td", { colspan: 6, class: "muted" }, "suppressed: fewer than 5 people")]
      : [
        el("td", {}, fmtInt(f.referrers)),
        el("td", {}, fmtInt(f.invitations)),
        el("td", { "data-flow-signups": flow }, fmtInt(f.signups)),
        el("td", {}, fmtInt(f.conversions)),
        el("td", { class: "k", "data-flow-k": flow, "data-value": num(f.kFactor) }, fmtK(f.kFactor)),
        el("td", {}, f.cycleTimeDays === undefined ? "–" : num(f.cycleTimeDays).toFixed(1)),
      ];
    return el("tr", { "data-flow": flow }, el("th", { scope: "row" }, FLOW_LABELS[flow]), ...cells);
  });
  $("flows").replaceChildren(...rows);
}

function renderFunnel(f) {
  const box = $("funnel");
  $("bottleneck").textContent = f.bottleneck ? "bottleneck: " + f.bottleneck.replace("_", " ").toLowerCase() : "";
  if (f.suppressed) {
    box.replaceChildren(el("p", { class: "muted" }, "suppressed: fewer than 5 people"));
    return;
  }
  const stages = f.stages || [];
  const max = Math.max(1, ...stages.map((s) => num(s.count)));
  const rowH = 34, labelW = 96, width = 520, barW = width - labelW - 150;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rowH * stages.length + 4}`, class: "funnel" });
  stages.forEach((s, i) => {
    const y = i * rowH + 2;
    const w = Math.max(2, (num(s.count) / max) * barW);
    const isBottleneck = s.stage === f.bottleneck;
    const g = svg("g", { "data-stage": s.stage, "data-count": num(s.count) });
    g.append(
      svg("text", { x: 0, y: y + 21, class: "label" }, s.stage.replace("_", " ").toLowerCase()),
      svg("rect", { x: labelW, y, width: w, height: rowH - 8, rx: 4,
        class: isBottleneck ? "bar bottleneck" : "bar" }),
      svg("text", { x: labelW + w + 8, y: y + 21, class: "count" }, fmtInt(s.count)),
      svg("text", { x: width - 2, y: y + 21, class: "rate", "text-anchor": "end" },
        i === 0 ? "" : fmtRate(s.stepRate) + " of previous"),
    );
    chart.append(g);
  });
  box.replaceChildren(chart);
}

function renderTimeseries(t) {
  const box = $("timeseries");
  const points = (t.points || []).map((p) => ({
    at: new Date(p.periodStart), value: num(p.value), suppressed: Boolean(p.suppressed),
  }));
  if (points.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "no data in this window"));
    return;
  }
  const width = 520, height = 220, padL = 44, padR = 10, padT = 10, padB = 28;
  const max = Math.max(1e-9, ...points.map((p) => p.value));
  const x = (i) => padL + (points.length === 1 ? (width - padL - padR) / 2 : (i / (points.length - 1)) * (width - padL - padR));
  const y = (v) => padT + (1 - v / max) * (height - padT - padB);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "timeseries" });
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    chart.append(
      svg("line", { x1: padL, x2: width - padR, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: padL - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" },
        t.metric === "k_factor" ? v.toFixed(2) : Math.round(v).toLocaleString("en-GB")),
    );
  }
  const line = points.map((p, i) => `${i === 0 ? "M" : "L"}${x(i).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  const area = `${line} L${x(points.length - 1).toFixed(1)},${y(0)} L${x(0).toFixed(1)},${y(0)} Z`;
  chart.append(svg("path", { d: area, class: "area" }), svg("path", { d: line, class: "line" }));
  points.forEach((p, i) => {
    const dot = svg("circle", { cx: x(i), cy: y(p.value), r: 3, class: p.suppressed ? "dot suppressed" : "dot" });
    dot.append(svg("title", {}, `${p.at.toISOString().slice(0, 10)}: ${p.suppressed ? "suppressed" : p.value}`));
    chart.append(dot);
  });
  const label = (i) => points[i].at.toISOString().slice(0, 10);
  chart.append(svg("text", { x: padL, y: height - 8, class: "axis" }, label(0)));
  if (points.length > 1) {
    chart.append(svg("text", { x: width - padR, y: height - 8, "text-anchor": "end", class: "axis" }, label(points.length - 1)));
  }
  box.replaceChildren(chart);
}

function renderLeaderboard(l) {
  const tbody = $("leaderboard");
  if (l.suppressed) return suppressedRow(tbody, 6);
  const entries = l.entries || [];
  if (entries.length === 0) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "nobody yet")));
    return;
  }
  tbody.replaceChildren(...entries.map((e) => el("tr", { "data-referrer": e.referrerId },
    el("td", {}, e.rank), el("td", { class: "id" }, e.referrerId), el("td", {}, (e.referrerKind || "").toLowerCase()),
    el("td", {}, fmtInt(e.value)), el("td", {}, e.tier || "–"), el("td", {}, (e.badges || []).join(", ")))));
}

function renderSuperConnectors(s) {
  const tbody = $("super-connectors");
  const rows = s.connectors || [];
  if (rows.length === 0) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no referrer has 20 connections yet")));
    return;
  }
  tbody.replaceChildren(...rows.map((c) => el("tr", { "data-referrer": c.referrerId },
    el("td", { class: "id" }, c.referrerId), el("td", {}, el("span", { class: "tier " + (c.tier || "").toLowerCase() }, c.tier || "–")),
    el("td", {}, fmtInt(c.connections)), el("td", {}, fmtInt(c.successes)), el("td", {}, num(c.score).toFixed(1)),
    el("td", {}, fmtInt(c.secondOrderReach)))));
}

// ---- loading ----

let loading = null;

async function loadAll() {
  if (loading) return loading;
  document.body.dataset.state = "loading";
  const ts = { granularity: $("ts-granularity").value, metric: $("ts-metric").value };
  loading = Promise.all([
    api(withQuery("/v1/metrics/viral")).then(renderViral),
    api(withQuery("/v1/metrics/funnel")).then(renderFunnel),
    api(withQuery("/v1/metrics/timeseries", ts)).then(renderTimeseries),
    api("/v1/leaderboard?period=ALL&metric=REFERRALS&limit=10").then(renderLeaderboard),
    api("/v1/super-connectors?limit=10").then(renderSuperConnectors),
  ]).then(() => {
    showError("");
    document.body.dataset.state = "loaded";
  }, (e) => {
    if (e instanceof ApiError && e.status === 401) return signOut("The token was refused: " + e.message);
    document.body.dataset.state = "error";
    showError(e instanceof ApiError ? `The API answered ${e.status}: ${e.message}` : "Cannot reach the API: " + e.message);
  }).finally(() => { loading = null; });
  return loading;
}

// New events move the numbers: refresh at most every 5 s while events arrive.
let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadAll(); }, 5000);
}

// ---- the live feed: SSE read with fetch, since EventSource cannot send Authorization ----

let feedAbort = null;

function setFeedStatus(text, cls) {
  const node = $("feed-status");
  node.textContent = text;
  node.className = "status " + (cls || "");
}

function addFeedItem(kind, text, detail) {
  const list = $("feed");
  const item = el("li", { class: kind },
    el("time", {}, new Date().toLocaleTimeString("en-GB")), el("strong", {}, text));
  if (detail) item.append(el("span", { class: "muted" }, detail));
  list.prepend(item);
  while (list.children.length > FEED_LIMIT) list.lastElementChild.remove();
}

function describe(e) {
  let detail = e.source || "";
  try {
    const body = JSON.parse(e.json || "{}");
    const who = body.aggregateId || body.aggregate_id || "";
    if (who) detail += " · " + who;
  } catch (_) { /* the event's JSON is informational only */ }
  return detail;
}

function handleSse(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length === 0) return; // a keep-alive comment
  let payload = {};
  try { payload = JSON.parse(data.join("\n")); } catch (_) { payload = { message: data.join("\n") }; }
  if (event === "lagged") {
    addFeedItem("lagged", `${num(payload.lagged)} events skipped`, "more than 10 a second");
  } else if (event === "error") {
    addFeedItem("error", "the feed failed", payload.message || "");
  } else {
    addFeedItem("event", payload.type || event, describe(payload));
    refreshSoon();
  }
}

async function follow() {
  if (feedAbort) feedAbort.abort();
  const abort = new AbortController();
  feedAbort = abort;
  let delay = 1000;
  while (!abort.signal.aborted) {
    try {
      setFeedStatus("connecting…");
      const resp = await fetch("/v1/events", {
        headers: { Authorization: "Bearer " + token(), Accept: "text/event-stream" },
        signal: abort.signal,
        cache: "no-store",
      });
      if (resp.status === 401 || resp.status === 403) {
        const body = await resp.json().catch(() => ({}));
        setFeedStatus(resp.status === 403 ? "needs an admin token" : "token refused", "bad");
        if (body.message) addFeedItem("error", "live feed unavailable", body.message);
        return;
      }
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      setFeedStatus("live", "ok");
      delay = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handleSse(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      setFeedStatus("reconnecting…", "bad");
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

// ---- sign in and out ----

function signIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
  $("sign-in").hidden = true;
  $("sign-in-error").hidden = true;
  $("dashboard").hidden = false;
  $("controls").hidden = false;
  loadAll();
  follow();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (feedAbort) feedAbort.abort();
  feedAbort = null;
  $("dashboard").hidden = true;
  $("controls").hidden = true;
  $("sign-in").hidden = false;
  const err = $("sign-in-error");
  err.textContent = message || "";
  err.hidden = !message;
  document.body.dataset.state = "signed-out";
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    if (value) signIn(value);
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("refresh").addEventListener("click", () => loadAll());
  for (const id of ["window", "ts-metric", "ts-granularity"]) $(id).addEventListener("change", () => loadAll());
  if (token()) signIn(token());
});
