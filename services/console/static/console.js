/* Tapewatch approval desk. Plain JS, no build step. Untrusted text (stories, rationales) only ever goes
   into textContent, never into HTML. */
"use strict";

const state = {
  me: null, csrf: "", caps: null, expiryS: 120, offsetMs: 0,
  pending: new Map(),      // id -> signal view, in arrival order
  history: [],             // newest first
  quotes: new Map(),       // asset -> quote view
  quoteStart: new Map(),   // asset -> {until, start} for the decay bar
  quoting: { up: false, error: "" },
  selected: null,
  busy: new Set(),
};

const $ = (id) => document.getElementById(id);
const now = () => Date.now() + state.offsetMs;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");
const signed = (x, d = 1) => (x > 0 ? "+" : x < 0 ? "−" : "") + fmt(Math.abs(x), d);
const hhmmss = (ms) => new Date(ms).toISOString().slice(11, 19);
const ARROW = { BEARISH: "▼", BULLISH: "▲", UNCLEAR: "◆", UNSPECIFIED: "·" };

function mainDirection(sig) {
  const dirs = new Set(sig.adjustments.map((a) => a.direction).concat(sig.impact.assets.map((a) => a.direction)));
  if (dirs.has("BEARISH") && !dirs.has("BULLISH")) return "bearish";
  if (dirs.has("BULLISH") && !dirs.has("BEARISH")) return "bullish";
  return "";
}

function toast(text, kind = "") {
  const t = el("div", { class: `toast ${kind}`, text });
  $("toasts").append(t);
  setTimeout(() => t.remove(), kind === "bad" ? 8000 : 4000);
}

/* ---------- pending signals ---------- */

function signalCard(sig) {
  const vol = new Map(sig.impact.assets.map((a) => [a.asset, a]));
  const rows = sig.adjustments.map((a) => {
    const p = (vol.get(a.asset) || {}).vol_burst_probability;
    return el("tr", {},
      el("td", {}, el("span", { class: "asset", text: a.asset }), " ",
        el("span", { class: `dir ${a.direction.toLowerCase()}`, text: ARROW[a.direction] || "·" })),
      el("td", { class: `prob ${p >= 0.6 ? "hot" : ""}`, text: p === undefined ? "–" : fmt(p * 100, 0) + "%" }),
      el("td", { text: "+" + fmt(a.widening_bps) }),
      el("td", { text: signed(a.skew_bps) }),
      el("td", { text: "×" + fmt(a.vol_multiplier || 1, 2) }),
      el("td", { text: a.horizon_minutes + "m" }));
  });
  const im = sig.impact;
  const story = sig.story;
  const sources = story.sources.length ? story.sources.join(", ") : story.source;
  const card = el("article", {
      class: `signal ${mainDirection(sig)}`, "data-id": sig.id, role: "option",
      onclick: () => select(sig.id),
    },
    el("div", { class: "timer" }, el("div", { class: "secs", text: "–" }), el("div", { class: "unit", text: "sec" }),
      el("div", { class: "label", text: "expires" })),
    el("div", { class: "sig-main" },
      el("div", { class: "tags" },
        el("span", { class: `tag ${im.materiality.toLowerCase()}`, text: im.materiality }),
        el("span", { class: "tag", text: im.event_type.replaceAll("_", " ") }),
        im.urgency === "IMMEDIATE" ? el("span", { class: "tag immediate", text: "IMMEDIATE" }) : null,
        el("span", { class: "tag", text: `conf ${fmt(im.confidence * 100, 0)}%` }),
        im.judged_by === "RULES_FALLBACK" ? el("span", { class: "tag fallback", text: "RULES FALLBACK" }) : null),
      el("div", { class: "story", text: story.text, title: story.text }),
      el("div", { class: "meta" },
        el("b", { text: story.author ? "@" + story.author : story.source }), ` · ${story.platform.toLowerCase()} · `,
        el("b", { text: String(story.echo_count) }), ` echo${story.echo_count === 1 ? "" : "es"} · ${sources}`),
      im.rationale ? el("div", { class: "rationale", text: im.rationale }) : null,
      el("div", { class: "trace", text: `${sig.id} · trace ${sig.trace_id || "–"}` })),
    el("table", { class: "adj" },
      el("thead", {}, el("tr", {}, ["Asset", "Vol p", "Wide", "Skew", "Mult", "Hor"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)),
    el("div", { class: "bar" }, el("span", {})));
  return card;
}

function renderPending(freshId) {
  const list = $("pending-list");
  const ids = [...state.pending.keys()];
  const existing = new Map([...list.children].map((c) => [c.dataset.id, c]));
  for (const [id, node] of existing) if (!state.pending.has(id)) node.remove();
  ids.forEach((id, i) => {
    let node = existing.get(id);
    if (!node) {
      node = signalCard(state.pending.get(id));
      if (id === freshId) node.classList.add("fresh");
    }
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
  });
  if (!state.pending.has(state.selected)) state.selected = ids[0] || null;
  for (const node of list.children) node.classList.toggle("selected", node.dataset.id === state.selected);
  $("pending-count").textContent = ids.length;
  $("pending-count").classList.toggle("live", ids.length > 0);
  $("pending-empty").classList.toggle("hidden", ids.length > 0);
  tick();
  if (freshId && state.pending.has(freshId)) performance.mark("signal-visible:" + freshId);
}

function select(id) {
  state.selected = id;
  for (const node of $("pending-list").children) node.classList.toggle("selected", node.dataset.id === id);
  const node = document.querySelector(`.signal[data-id="${CSS.escape(id)}"]`);
  if (node) node.scrollIntoView({ block: "nearest" });
}

function move(step) {
  const ids = [...state.pending.keys()];
  if (!ids.length) return;
  const i = Math.max(0, ids.indexOf(state.selected));
  select(ids[Math.min(ids.length - 1, Math.max(0, i + step))]);
}

/* ---------- history ---------- */

function label(sig) {
  if (sig.state === "EXPIRED") return "expired";
  const a = sig.decision ? sig.decision.action : "";
  return { APPROVE: "approved", MODIFY: "modified", REJECT: "rejected", MARK_DUPLICATE: "duplicate",
    MARK_WRONG_DIRECTION: "wrong_direction" }[a] || sig.state.toLowerCase();
}

function renderHistory() {
  const list = $("history-list");
  list.replaceChildren(...state.history.slice(0, 60).map((sig) => {
    const l = label(sig);
    const at = sig.decision ? sig.decision.decided_at_ms : sig.expires_at_ms;
    const who = sig.decision ? sig.decision.trader : "nobody";
    const took = sig.decision ? ` in ${fmt((at - sig.created_at_ms) / 1000, 1)}s` : "";
    const assets = sig.adjustments.map((a) => `${a.asset} +${fmt(a.widening_bps)}`).join(" ");
    return el("li", { "data-id": sig.id, title: `${sig.story.text}\n${sig.decision && sig.decision.reason ? "reason: " + sig.decision.reason : ""}` },
      el("span", { class: "t", text: hhmmss(at) }),
      el("span", { class: `badge ${l}`, text: l.replace("_", " ").toUpperCase() }),
      el("span", { class: "who", text: who + took }),
      el("span", { class: "what" }, el("span", { class: "mono", text: assets }), sig.story.text));
  }));
  $("history-empty").classList.toggle("hidden", state.history.length > 0);
  $("history-note").textContent = state.history.length ? `last ${Math.min(60, state.history.length)}` : "";
}

/* ---------- quotes ---------- */

function renderQuotes(freshAsset) {
  const body = $("quotes-body");
  const rows = [...state.quotes.values()]
    .filter((q) => !(q.spread_multiplier === 1 && !q.bid_widening_bps && !q.ask_widening_bps && !q.skew_bps) || q.kill_switch || q.override_active)
    .sort((a, b) => a.asset.localeCompare(b.asset));
  body.replaceChildren(...rows.map((q) => {
    const skewClass = q.skew_bps < 0 ? "neg" : q.skew_bps > 0 ? "pos" : "";
    return el("tr", { class: q.asset === freshAsset ? "new" : "", "data-asset": q.asset },
      el("td", {}, el("span", { class: "asset", text: q.asset }),
        q.kill_switch ? el("span", { class: "flag kill", text: "KILL" }) : null,
        q.override_active ? el("span", { class: "flag ovr", text: "OVR" }) : null),
      el("td", { class: "num", text: fmt(q.bid_widening_bps) }),
      el("td", { class: "num", text: fmt(q.ask_widening_bps) }),
      el("td", { class: `num ${skewClass}`, text: signed(q.skew_bps) }),
      el("td", { class: "num", text: "×" + fmt(q.spread_multiplier, 2) }),
      el("td", {}, el("div", { class: "decay" }, el("div", { class: "track" }, el("span", {})), el("span", { class: "left" }))));
  }));
  $("quotes-empty").classList.toggle("hidden", rows.length > 0);
  tick();
}

function updateQuote(q) {
  const prev = state.quoteStart.get(q.asset);
  if (!prev || prev.until !== q.valid_until_ms) state.quoteStart.set(q.asset, { until: q.valid_until_ms, start: q.as_of_ms || now() });
  const isNew = !state.quotes.has(q.asset) || state.quotes.get(q.asset).valid_until_ms !== q.valid_until_ms;
  state.quotes.set(q.asset, q);
  renderQuotes(isNew ? q.asset : null);
}

function renderQuoting() {
  const s = $("quoting-status");
  s.className = `pill ${state.quoting.up ? "ok" : "bad"}`;
  s.textContent = state.quoting.up ? "QUOTING live" : "QUOTING down";
  s.title = state.quoting.error || "connected to the quoting adapter";
  $("quotes-note").textContent = state.quoting.up ? "per asset, decaying" : "quoting adapter unreachable: retrying";
  document.querySelector(".quotes").classList.toggle("down", !state.quoting.up);
  $("quotes-empty").textContent = state.quoting.up
    ? "Every asset at base quoting." : "Current adjustments unknown: the quoting adapter is unreachable.";
}

/* ---------- clocks ---------- */

function tick() {
  const t = now();
  $("clock").textContent = hhmmss(t) + " UTC";
  for (const node of $("pending-list").children) {
    const sig = state.pending.get(node.dataset.id);
    if (!sig) continue;
    const total = Math.max(1, sig.expires_at_ms - sig.created_at_ms);
    const left = Math.min(total, Math.max(0, sig.expires_at_ms - t));
    const secs = Math.ceil(left / 1000);
    const timer = node.querySelector(".timer");
    timer.querySelector(".secs").textContent = secs;
    timer.classList.toggle("warn", secs <= 30 && secs > 10);
    timer.classList.toggle("urgent", secs <= 10);
    const bar = node.querySelector(".bar");
    bar.classList.toggle("warn", secs <= 30 && secs > 10);
    bar.classList.toggle("urgent", secs <= 10);
    bar.firstChild.style.width = (100 * left / total).toFixed(1) + "%";
  }
  for (const row of $("quotes-body").children) {
    const q = state.quotes.get(row.dataset.asset);
    const span = state.quoteStart.get(row.dataset.asset);
    if (!q || !span) continue;
    const left = Math.max(0, q.valid_until_ms - t);
    const total = Math.max(1, span.until - span.start);
    row.querySelector(".track > span").style.width = (q.valid_until_ms ? Math.min(100, 100 * left / total) : 0).toFixed(1) + "%";
    const m = Math.floor(left / 60000), s = Math.floor((left % 60000) / 1000);
    row.querySelector(".left").textContent = q.valid_until_ms ? `${m}:${String(s).padStart(2, "0")}` : "–";
  }
}

/* ---------- server calls ---------- */

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf }, body: JSON.stringify(body),
  });
  let doc = {};
  try { doc = await res.json(); } catch (e) { doc = {}; }
  if (res.status === 401) location.href = "/login";
  if (!res.ok) throw new Error(doc.error || `HTTP ${res.status}`);
  return doc;
}

const ACTION_TEXT = { APPROVE: "Approved", REJECT: "Rejected", MODIFY: "Approved (modified)",
  MARK_DUPLICATE: "Marked duplicate", MARK_WRONG_DIRECTION: "Marked wrong direction" };

async function decide(action, extra = {}) {
  const id = state.selected;
  if (!id || state.busy.has(id)) return;
  if (state.me && state.me.role !== "trader") { toast("Read-only viewer: only traders decide.", "warn"); return; }
  state.busy.add(id);
  const node = document.querySelector(`.signal[data-id="${CSS.escape(id)}"]`);
  if (node) node.classList.add("leaving");
  try {
    const { signal } = await post("/api/decide", { signal_id: id, action, ...extra });
    applyDecided(signal);
    toast(`${ACTION_TEXT[action]}: ${signal.adjustments.map((a) => a.asset).join(", ") || id}`, action === "APPROVE" || action === "MODIFY" ? "ok" : "");
    return signal;
  } catch (err) {
    if (node) node.classList.remove("leaving");
    toast(err.message, "bad");
    throw err;
  } finally {
    state.busy.delete(id);
  }
}

function applyDecided(sig) {
  const wasSelected = state.selected === sig.id;
  if (wasSelected) {
    const ids = [...state.pending.keys()];
    const i = ids.indexOf(sig.id);
    state.selected = ids[i + 1] || ids[i - 1] || null;
  }
  state.pending.delete(sig.id);
  if (!state.history.some((h) => h.id === sig.id)) state.history.unshift(sig);
  renderPending();
  renderHistory();
}

/* ---------- dialogs ---------- */

function openModify() {
  const sig = state.pending.get(state.selected);
  if (!sig) return;
  if (state.me.role !== "trader") { toast("Read-only viewer: only traders decide.", "warn"); return; }
  const c = state.caps;
  $("modify-id").textContent = sig.id;
  $("modify-caps").textContent = `Caps: widening 0–${c.max_widening_bps} bps · skew ±${c.max_skew_bps} bps · horizon 1–${c.max_horizon_minutes} min · vol ×1–${c.max_vol_multiplier}`;
  $("modify-rows").replaceChildren(...sig.adjustments.map((a) => el("tr", { "data-asset": a.asset },
    el("td", {}, el("span", { class: "asset", text: a.asset }), " ", el("span", { class: `dir ${a.direction.toLowerCase()}`, text: ARROW[a.direction] || "" })),
    el("td", {}, el("input", { name: "widening_bps", type: "number", step: "0.5", min: 0, max: c.max_widening_bps, value: a.widening_bps })),
    el("td", {}, el("input", { name: "skew_bps", type: "number", step: "0.5", min: -c.max_skew_bps, max: c.max_skew_bps, value: a.skew_bps })),
    el("td", {}, el("input", { name: "horizon_minutes", type: "number", step: "1", min: 1, max: c.max_horizon_minutes, value: a.horizon_minutes })),
    el("td", {}, el("input", { name: "vol_multiplier", type: "number", step: "0.05", min: 1, max: c.max_vol_multiplier, value: a.vol_multiplier || 1 })))));
  $("modify-reason").value = "";
  $("modify-error").textContent = "";
  $("modify-dialog").showModal();
  const first = $("modify-rows").querySelector("input");
  if (first) { first.focus(); first.select(); }
}

async function submitModify(ev) {
  ev.preventDefault();
  const modified = [...$("modify-rows").children].map((row) => {
    const v = (n) => Number(row.querySelector(`input[name=${n}]`).value);
    return { asset: row.dataset.asset, widening_bps: v("widening_bps"), skew_bps: v("skew_bps"),
      horizon_minutes: Math.round(v("horizon_minutes")), vol_multiplier: v("vol_multiplier") };
  });
  try {
    await decide("MODIFY", { modified, reason: $("modify-reason").value });
    $("modify-dialog").close();
  } catch (err) {
    $("modify-error").textContent = err.message;
  }
}

function openKill() {
  if (state.me.role !== "trader") { toast("Read-only viewer: only traders may use the kill switch.", "warn"); return; }
  $("kill-reason").value = "";
  $("kill-error").textContent = "";
  $("kill-dialog").showModal();
  $("kill-reason").focus();
}

async function submitKill(ev) {
  ev.preventDefault();
  $("kill-confirm").disabled = true;
  try {
    const { cleared } = await post("/api/kill-switch", { reason: $("kill-reason").value });
    $("kill-dialog").close();
    toast(`Kill switch: ${cleared} asset${cleared === 1 ? "" : "s"} back to base quoting`, "warn");
  } catch (err) {
    $("kill-error").textContent = err.message;
  } finally {
    $("kill-confirm").disabled = false;
  }
}

async function ask(question) {
  $("ask-question").textContent = question;
  const answer = $("ask-answer");
  answer.textContent = "Searching…";
  answer.classList.remove("error");
  $("ask-citations").replaceChildren();
  $("ask-dialog").showModal();
  let text = "";
  try {
    const res = await fetch("/api/ask", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf }, body: JSON.stringify({ question }),
    });
    if (!res.ok) throw new Error((await res.json()).error || `HTTP ${res.status}`);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.error) throw new Error(line.error);
        text += line.text;
        answer.textContent = text;
        for (const c of line.citations || []) {
          $("ask-citations").append(el("li", {}, el("span", { class: "mono", text: `${hhmmss(c.published_at_ms)} @${c.author} ` }), c.text));
        }
      }
    }
    if (!text) answer.textContent = "No answer.";
  } catch (err) {
    answer.textContent = err.message;
    answer.classList.add("error");
  }
}

/* ---------- live updates ---------- */

function applySnapshot(snap) {
  state.me = snap.me;
  state.csrf = snap.me.csrf;
  state.caps = snap.caps;
  state.expiryS = snap.expiry_s;
  const skew = snap.server_time_ms - Date.now();
  state.offsetMs = Math.abs(skew) > 1000 ? skew : 0;  // correct a wrong desk clock, not network latency
  state.pending = new Map(snap.pending.map((s) => [s.id, s]));
  state.history = snap.history;
  state.quotes = new Map();
  for (const q of snap.quotes) updateQuote(q);
  state.quoting = snap.quoting;
  $("me").replaceChildren(el("span", { text: snap.me.name }), el("span", { class: "role", text: snap.me.role }));
  $("role-note").textContent = snap.me.role === "trader" ? `signals expire after ${snap.expiry_s}s` : "read-only viewer";
  $("kill").disabled = snap.me.role !== "trader";
  $("expiry-note").textContent = `expire after ${snap.expiry_s}s unless decided`;
  renderPending();
  renderHistory();
  renderQuotes();
  renderQuoting();
}

function connect() {
  const feed = $("feed-status");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { feed.className = "pill ok"; feed.textContent = "FEED live"; });
  es.addEventListener("error", () => { feed.className = "pill bad"; feed.textContent = "FEED reconnecting"; });
  es.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  es.addEventListener("signal", (e) => {
    const { kind, signal } = JSON.parse(e.data);
    if (kind === "new") {
      if (!state.pending.has(signal.id) && !state.history.some((h) => h.id === signal.id)) {
        state.pending.set(signal.id, signal);
        renderPending(signal.id);
      }
    } else {
      applyDecided(signal);
    }
  });
  es.addEventListener("quote", (e) => updateQuote(JSON.parse(e.data)));
  es.addEventListener("quoting", (e) => {
    state.quoting = JSON.parse(e.data);
    if (state.quoting.up) { state.quotes.clear(); renderQuotes(); }
    renderQuoting();
  });
  es.addEventListener("audit", (e) => {
    const a = JSON.parse(e.data);
    if (a.event === "quoting.kill_switch") toast(`Kill switch by ${a.actor}: ${a.ok ? "all assets at base" : a.error}`, a.ok ? "warn" : "bad");
  });
  es.addEventListener("logout", () => { location.href = "/login"; });
}

/* ---------- keyboard ---------- */

const KEYS = {
  j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
  a: () => decide("APPROVE").catch(() => {}), r: () => decide("REJECT").catch(() => {}),
  d: () => decide("MARK_DUPLICATE").catch(() => {}), w: () => decide("MARK_WRONG_DIRECTION").catch(() => {}),
  m: openModify, "/": () => { $("search-input").focus(); $("search-input").select(); },
};

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (document.querySelector("dialog[open]")) return;  // dialogs handle their own keys (esc closes)
  if (e.target.matches("input, textarea")) {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  const run = KEYS[e.key];
  if (run) { e.preventDefault(); run(); }
});

document.addEventListener("DOMContentLoaded", () => {
  $("modify-form").addEventListener("submit", submitModify);
  $("modify-cancel").addEventListener("click", () => $("modify-dialog").close());
  $("kill").addEventListener("click", openKill);
  $("kill-form").addEventListener("submit", submitKill);
  $("kill-cancel").addEventListener("click", () => $("kill-dialog").close());
  $("ask-close").addEventListener("click", () => $("ask-dialog").close());
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search-input").value.trim();
    if (q) { $("search-input").blur(); ask(q); }
  });
  $("logout").addEventListener("click", async () => {
    try { await post("/logout", {}); } finally { location.href = "/login"; }
  });
  setInterval(tick, 250);
  connect();
});
