// Station manager dashboard: reads the agent's retained live-view topics over MQTT
// WebSockets and sends manager commands through the signed-command path.
"use strict";

const V = window.SpbuVendor;
const TEXT = window.SPBU_TEXT;
const COMMAND_TTL_S = 120;

const view = { station: "", lang: localStorage.getItem("spbu.lang") || "id", state: null, heartbeat: null, pumps: {},
               totals: null, recent: [], alerts: [], client: null, key: null };

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
};

function t(key, vars = {}) {
  const table = TEXT[view.lang];
  let text = key.split(".").reduce((obj, part) => (obj == null ? undefined : obj[part]), table);
  if (text === undefined) text = key.split(".").pop();
  return String(text).replace(/\{(\w+)\}/g, (_, name) => (name in vars ? vars[name] : `{${name}}`));
}

const numberFmt = () => new Intl.NumberFormat(view.lang === "id" ? "id-ID" : "en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const litres = (ml) => numberFmt().format((ml || 0) / 1000);
const rupiah = (idr) => "Rp " + new Intl.NumberFormat(view.lang === "id" ? "id-ID" : "en-US").format(idr || 0);
const clockTime = (iso) => (iso ? new Date(iso).toLocaleTimeString(view.lang === "id" ? "id-ID" : "en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "");

function age(seconds) {
  if (seconds == null) return "?";
  if (seconds < 60) return t("ago.s", { n: Math.round(seconds) });
  if (seconds < 3600) return t("ago.m", { n: Math.round(seconds / 60) });
  if (seconds < 86400) return t("ago.h", { n: Math.round(seconds / 3600) });
  return t("ago.d", { n: Math.round(seconds / 86400) });
}

// --- rendering -------------------------------------------------------------------------

function renderStatic() {
  document.documentElement.lang = view.lang;
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  $("#lang-toggle").textContent = view.lang === "id" ? "EN" : "ID";
  document.title = t("title") + (view.station ? ` ${view.station}` : "");
}

function renderHeader() {
  const s = view.state;
  const agent = $("#agent-status");
  agent.dataset.state = s ? (s.state === "online" ? "ok" : "bad") : "unknown";
  agent.textContent = s && s.state === "online" ? t("agent_online") : t("agent_offline");
  const hq = $("#hq-status");
  const link = s && s.state === "online" && view.heartbeat ? view.heartbeat.hq_link : undefined;
  hq.dataset.state = link === true ? "ok" : link === false ? "bad" : "unknown";
  hq.textContent = link === true ? t("hq_up") : link === false ? t("hq_down") : t("hq_unknown");
  $("#station-id").textContent = view.station;
}

// Health comes from the agent's heartbeat (agent/presence.py); until the first one, from
// its retained state.
function renderHealth() {
  const s = view.state || {};
  const hb = view.heartbeat;
  const list = hb ? hb.allowlist : { version: s.allowlist_version, age_s: null };
  const sinceBeat = hb ? (Date.now() - Date.parse(hb.at)) / 1000 : 0;
  $("#allowlist").textContent = list && list.version
    ? t("version_age", { version: list.version, age: age(list.age_s == null ? null : list.age_s + Math.max(0, sinceBeat)) })
    : t("none");
  $("#outbox").textContent = t("tx_waiting", { n: hb ? hb.outbox.depth : (s.outbox_depth ?? "?") });
  const trusted = hb ? hb.clock.trusted : undefined;
  $("#clock").textContent = trusted === false ? t("clock_bad") : trusted === true ? t("clock_ok") : "?";
  $("#clock").className = trusted === false ? "error" : "";
  const update = hb && hb.update;  // fleet updates: the release on trial, or why one was refused
  $("#software").textContent = ((hb && hb.version) || s.version || "?")
    + (update && update.state !== "idle" && update.state !== "installed"
      ? " (" + update.state + (update.candidate || update.version ? " " + (update.candidate || update.version) : "") + ")"
      : "");
}

function renderPumps() {
  const box = $("#pumps");
  const numbers = Object.keys(view.pumps).map(Number).sort((a, b) => a - b);
  box.replaceChildren(...numbers.map((n) => {
    const p = view.pumps[n];
    const card = el("article", { class: "pump", "data-state": p.state, "data-pump": String(n), "aria-label": `${t("pump")} ${n}` });
    card.append(el("div", { class: "head" }, el("span", { text: `${t("pump")} ${n}` }), el("span", { text: t(`products.${p.product}`) })));
    card.append(el("div", { class: "state", text: t(`states.${p.state}`) }));
    if (p.session) {
      const s = p.session;
      const pct = s.preset_ml ? Math.min(100, (100 * s.dispensed_ml) / s.preset_ml) : 0;
      card.append(el("div", { class: "plate", text: `${s.plate_masked} · ${t(`products.${s.product}`)}` }));
      card.append(el("div", { class: "litres", text: `${litres(s.dispensed_ml)} L` }));
      const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(s.preset_ml), "aria-valuenow": String(s.dispensed_ml) });
      const fill = el("i"); fill.style.width = `${pct}%`; bar.append(fill);
      card.append(bar, el("div", { class: "muted", text: `${t("preset")} ${litres(s.preset_ml)} L` }));
    } else {
      card.append(el("div", { class: "muted", text: t("no_session") }));
    }
    const locked = p.state === "locked";
    const button = el("button", { type: "button", class: "pump-action", "data-action": locked ? "unlock" : "lock", text: locked ? t("unlock") : t("lock") });
    button.addEventListener("click", () => confirmThen(t(locked ? "confirm_unlock" : "confirm_lock", { pump: n }),
      () => sendCommand(locked ? "unlock_pump" : "lock_pump", { pump: n })));
    card.append(button);
    return card;
  }));
}

function renderAlerts() {
  const list = $("#alerts");
  list.replaceChildren(...view.alerts.map((a) => {
    const name = t(`alert_names.${a.alert}`);
    const where = a.pump ? ` — ${t("pump")} ${a.pump}` : "";
    const item = el("li", { "data-alert": a.alert, "data-severity": ["outbox_growing", "clock_untrusted", "clock_provisional", "clock_lag", "disk_low"].includes(a.alert) ? "warn" : "bad" });
    item.append(el("span", {}, el("strong", { text: name + where }), el("br"), el("small", { class: "muted", text: `${clockTime(a.last_at)} ${a.detail || ""}${a.count > 1 ? ` (×${a.count})` : ""}` })));
    const ack = el("button", { type: "button", class: "ack", text: t("acknowledge") });
    ack.addEventListener("click", () => confirmThen(t("confirm_ack", { alert: name }), () => sendCommand("ack_alert", { alert_id: a.id })));
    item.append(ack);
    return item;
  }));
  $("#alert-count").textContent = String(view.alerts.length);
  $("#no-alerts").hidden = view.alerts.length > 0;
}

function renderTotals() {
  const body = $("#totals tbody");
  const totals = view.totals || { products: {} };
  $("#totals-day").textContent = totals.day || "";
  body.replaceChildren(...Object.entries(totals.products).sort().map(([product, row]) =>
    el("tr", { "data-product": product }, el("td", { text: t(`products.${product}`) }), el("td", { text: litres(row.litres_ml) }),
      el("td", { text: rupiah(row.amount_idr) }), el("td", { text: String(row.count) }))));
}

function renderRecent() {
  const body = $("#recent tbody");
  body.replaceChildren(...view.recent.map((tx) => {
    const pay = tx.payment || {};
    const payText = pay.method ? `${t(`pay.${pay.method}`)}${pay.status ? ", " + t(`pay.${pay.status}`) : ""}` : "—";
    return el("tr", { "data-tx": tx.tx_id }, el("td", { text: clockTime(tx.closed_at) }), el("td", { text: String(tx.pump) }),
      el("td", { text: tx.plate_masked || "" }), el("td", { text: t(`products.${tx.product}`) }), el("td", { text: litres(tx.dispensed_ml) }),
      el("td", { text: rupiah(tx.amount_idr) }), el("td", { class: "payment", text: payText }));
  }));
}

function renderAll() {
  renderStatic(); renderHeader(); renderHealth(); renderPumps(); renderAlerts(); renderTotals(); renderRecent();
  renderHourly(); renderTanks(); renderTankChart(); renderReconciliation();
}

// --- manager actions ----------------------------------------------------------------------

let pendingAction = null;
function confirmThen(question, action) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = question;
  pendingAction = action;
  dialog.returnValue = "";
  dialog.showModal();
  $("#confirm-ok").focus();
}

function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 4000);
}

// agent/commands.py: signed envelopes on hq/v1/cmd/<station>, results on spbu/v1/<station>/cmd_result.
function commandTopic() { return `hq/v1/cmd/${view.station}`; }

function sendCommand(command, args) {
  if (!view.key) { toast(t("no_passphrase")); return; }  // signed in to watch only
  const now = Math.floor(Date.now() / 1000);
  const body = { command, station: view.station, nonce: V.nonce(), issued: new Date(now * 1000).toISOString(),
                 expires: new Date((now + COMMAND_TTL_S) * 1000).toISOString(), args };
  view.client.publish(commandTopic(), V.signEnvelope("command", body, view.key), { qos: 1 });
  toast(t("sent"));
}

// --- charts (uPlot, bundled in vendor/spbu-vendor.js) --------------------------------------

const PRODUCT_COLOURS = { pertalite: "#2d6cdf", solar: "#e08a00" };
const TANK_COLOURS = ["#2d6cdf", "#e08a00", "#2a9d5c", "#8e44ad"];
const charts = {};
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);  // payloads are data, not markup
const num = (v) => Number(v) || 0;

function chartWidth(el) { return Math.max(280, el.clientWidth || el.parentElement.clientWidth - 24); }

function drawChart(name, el, opts, data) {
  // uPlot keeps its series fixed: a new set of series means a new chart.
  const key = opts.series.map((s) => s.label).join("|");
  if (charts[name] && charts[name].key === key) { charts[name].plot.setData(data); return; }
  if (charts[name]) charts[name].plot.destroy();
  charts[name] = { key, plot: new V.uPlot({ width: chartWidth(el), height: 220, ...opts }, data, el) };
}

function renderHourly() {
  const el = $("#hourly-chart");
  const litres = (view.hourly && view.hourly.litres) || {};
  const products = Object.keys(litres);
  $("#no-hourly").hidden = products.length > 0;
  if (!products.length) return;
  const hours = Array.from({ length: 24 }, (_, h) => h);
  // grouped bars: each product's bar beside the hour's tick (left, right), not on top of another
  const bar = (i) => V.uPlot.paths.bars({ size: [products.length > 1 ? 0.4 : 0.8, 40],
                                          align: products.length > 1 ? (i === 0 ? -1 : 1) : 0 });
  const series = [{ label: t("hour") }, ...products.map((p, i) => ({
    label: (TEXT[view.lang] || TEXT.id).products[p] || p, stroke: PRODUCT_COLOURS[p] || TANK_COLOURS[i],
    fill: (PRODUCT_COLOURS[p] || TANK_COLOURS[i]) + "99", paths: bar(i), points: { show: false },
  }))];
  drawChart("hourly", el, {
    scales: { x: { time: false, range: [-0.5, 23.5] } },
    axes: [{ label: t("hour"), values: (u, ticks) => ticks.map((v) => `${String(v).padStart(2, "0")}`) },
           { label: "L" }],
    series,
  }, [hours, ...products.map((p) => hours.map((h) => litres[p][h] || 0))]);
}

function renderTanks() {
  const box = $("#tanks");
  const data = view.tanks;
  if (!data) return;
  const pill = $("#gauge-status");
  pill.dataset.state = data.gauge === "ok" ? "ok" : "bad";
  pill.textContent = t(data.gauge === "ok" ? "gauge_ok" : "gauge_silent");
  box.replaceChildren(...data.tanks.map((tank) => {
    const card = document.createElement("div");
    card.className = "tank";
    card.dataset.alarm = tank.alarms.length ? "1" : "0";
    const capacity = tank.volume_l + tank.ullage_l + tank.water_l;
    const pct = capacity > 0 ? Math.round(100 * tank.volume_l / capacity) : 0;
    const name = (TEXT[view.lang] || TEXT.id).products[tank.product] || tank.product;
    card.innerHTML = `<strong>${esc(t("tank"))} ${num(tank.tank)} · ${esc(name)}</strong>
      <div class="level"><span style="width:${num(pct)}%"></span></div>
      <div>${num(tank.volume_l).toLocaleString()} L (${num(pct)}%) · ${num(tank.height_mm).toFixed(0)} mm</div>
      <div class="muted">${esc(t("water"))} ${num(tank.water_mm).toFixed(0)} mm · ${num(tank.temperature_c).toFixed(1)} °C</div>`;
    if (tank.alarms.length) {
      const warn = document.createElement("div");
      warn.className = "error";
      warn.textContent = tank.alarms.join(", ");
      card.append(warn);
    }
    return card;
  }));
}

function renderTankChart() {
  const history = view.tankHistory;
  if (!history) return;
  const tanks = Object.keys(history.tanks).sort();
  const times = [...new Set(tanks.flatMap((n) => history.tanks[n].map((p) => p[0])))].sort((a, b) => a - b);
  if (!times.length) return;
  const byTank = tanks.map((n) => {
    const at = new Map(history.tanks[n].map((p) => [p[0], p[1]]));
    return times.map((time) => (at.has(time) ? at.get(time) : null));
  });
  const deliveries = history.deliveries || [];
  drawChart("tanks", $("#tank-chart"), {
    series: [{}, ...tanks.map((n, i) => ({ label: `${t("tank")} ${n}`, stroke: TANK_COLOURS[i % 4], width: 2,
                                            spanGaps: true }))],
    axes: [{}, { label: t("volume") }],
    hooks: { draw: [(u) => {  // each delivery: a dashed line where it landed
      const ctx = u.ctx;
      ctx.save();
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = "#2a9d5c";
      for (const d of deliveries) {
        const x = u.valToPos(d.at, "x", true);
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.fillStyle = "#2a9d5c";
        ctx.fillText(`${t("delivery")} ${t("tank")} ${d.tank}: ${Math.round(d.litres)} L`, x + 4, u.bbox.top + 12);
      }
      ctx.restore();
    }] },
  }, [times, ...byTank]);
  $("#tank-chart").dataset.deliveries = String(deliveries.length);
}

function renderReconciliation() {
  const rec = view.reconciliation;
  const table = $("#reconciliation");
  if (!rec) return;
  table.hidden = false;
  const fmt = (v) => num(v).toLocaleString(undefined, { maximumFractionDigits: 1 });
  table.tBodies[0].replaceChildren(...rec.products.map((row) => {
    const tr = document.createElement("tr");
    const name = (TEXT[view.lang] || TEXT.id).products[row.product] || row.product;
    tr.innerHTML = `<td>${esc(name)}</td><td>${fmt(row.opening_l)}</td><td>${fmt(row.deliveries_l)}</td>
      <td>${fmt(row.sales_l)}</td><td>${fmt(row.closing_l)}</td>
      <td class="${row.alarm ? "alarm" : ""}">${num(row.variance_l) > 0 ? "+" : ""}${fmt(row.variance_l)}</td>`;
    return tr;
  }));
}

// --- MQTT -----------------------------------------------------------------------------------

function handle(topic, payload) {
  const base = `spbu/v1/${view.station}/`;
  if (!topic.startsWith(base) || payload.length === 0) return;
  let body;
  try { body = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
  const rest = topic.slice(base.length);
  if (rest === "state") { view.state = body; renderHeader(); renderHealth(); }
  else if (rest.startsWith("pump/")) { view.pumps[body.pump] = body; renderPumps(); }
  else if (rest === "totals") { view.totals = body; renderTotals(); }
  else if (rest === "recent") { view.recent = body.transactions || []; renderRecent(); }
  else if (rest === "alerts") { view.alerts = body.active || []; renderAlerts(); }
  else if (rest === "heartbeat") { view.heartbeat = body; renderHeader(); renderHealth(); }
  else if (rest === "sales/hourly") { view.hourly = body; renderHourly(); }
  else if (rest === "tanks") { view.tanks = body; renderTanks(); }
  else if (rest === "tanks/history") { view.tankHistory = body; renderTankChart(); }
  else if (rest === "tanks/reconciliation") { view.reconciliation = body; renderReconciliation(); }
  else if (rest === "cmd_result") {
    toast(body.ok ? t("done") : t("rejected", { detail: body.detail || body.error || "" }));
  }
}

// MQTT is on the broker's WebSockets port. On a station the page comes from `spbu attendant
// serve` (HTTPS/1.1; mosquitto's own web server breaks over TLS), which says that port in
// station.json; served by the broker itself (the demo), MQTT is on the page's own port.
async function mqttUrl() {
  let port = new URLSearchParams(location.search).get("mqtt");
  if (!port) {
    try {
      const reply = await fetch("station.json", { cache: "no-store" });
      if (reply.ok) port = String((await reply.json()).mqtt_port);
    } catch (err) { console.warn("station.json", err && err.message); }
  }
  const host = port ? `${location.hostname}:${port}` : location.host;
  return `${location.protocol === "https:" ? "wss" : "ws"}://${host}/mqtt`;
}

async function login(event) {
  event.preventDefault();
  const station = $("#login-station").value.trim();
  const username = $("#login-user").value.trim();
  const password = $("#login-password").value;
  // The command key comes from a passphrase that never goes to the broker: the broker
  // password (sent at every connect) cannot sign anything (docs/dashboard.md).
  const passphrase = $("#login-passphrase").value;
  $("#login-error").textContent = "";
  const url = await mqttUrl();
  const client = V.mqtt.connect(url, { username, password, protocolVersion: 4, reconnectPeriod: 3000,
                                       clientId: `spbu-dash-${V.nonce().slice(0, 12)}`, clean: true });
  client.on("error", (err) => {
    if (!view.client) { $("#login-error").textContent = t("login_failed"); client.end(true); }
    console.warn("mqtt", err && err.message);
  });
  client.on("close", () => { if (view.state) { view.state = { ...view.state, state: "offline" }; renderHeader(); } });
  client.on("message", (topic, payload) => handle(topic, payload));
  client.on("connect", async () => {
    const first = !view.client;
    view.client = client;
    view.station = station;
    client.subscribe(`spbu/v1/${station}/#`, { qos: 1 });
    if (first) {
      localStorage.setItem("spbu.station", station);
      localStorage.setItem("spbu.user", username);
      view.key = passphrase ? await V.managerKey(station, username, passphrase) : null;
      $("#login").hidden = true;
      $("#board").hidden = false;
      renderAll();
      document.body.dataset.ready = "1";
    }
  });
}

function init() {
  const params = new URLSearchParams(location.search);
  if (params.get("lang") === "en" || params.get("lang") === "id") view.lang = params.get("lang");
  $("#login-station").value = params.get("station") || localStorage.getItem("spbu.station") || "";
  $("#login-user").value = localStorage.getItem("spbu.user") || "";
  $("#login").addEventListener("submit", login);
  $("#lang-toggle").addEventListener("click", () => {
    view.lang = view.lang === "id" ? "en" : "id";
    localStorage.setItem("spbu.lang", view.lang);
    renderAll();
  });
  $("#confirm").addEventListener("close", () => {
    const action = pendingAction;
    pendingAction = null;
    if ($("#confirm").returnValue === "ok" && action) action();
  });
  setInterval(renderHealth, 10000);  // ages move on without a message
  renderStatic();
}

init();
