// The pump attendant's page: MQTT over TLS WebSockets to the station broker. The device signs
// in to the broker with its own name and key (given at enrolment); the attendant signs in to
// the agent with number and PIN. The agent decides everything: this page shows its answers,
// sends the attendant's requests and, when asked, reads QR codes with the phone's camera.
"use strict";

const V = window.SpbuAttendantVendor;
const $ = (sel, root = document) => root.querySelector(sel);
const params = new URLSearchParams(location.search);
const station = params.get("station") || localStorage.getItem("spbu.station") || "";
// MQTT is on the broker's TLS WebSockets port; the page itself may come from another port
// (agent/attendant/page_server.py says why).
const mqttPort = params.get("mqtt") || localStorage.getItem("spbu.mqtt") || location.port;
const app = {
  lang: localStorage.getItem("spbu.lang") || "id",
  client: null, device: localStorage.getItem("spbu.device") || "", key: localStorage.getItem("spbu.key") || "",
  pumps: [], products: {}, views: {}, shown: {}, shift: null, audio: null, camera: null,
};
window.spbuLatency = []; // one entry per decision shown: when the agent decided, when it was on screen

// --- words and numbers ---------------------------------------------------------------------

function t(key, vars = {}) {
  const text = WORDS[app.lang][key] ?? WORDS.id[key] ?? key;
  return String(text).replace(/\{(\w+)\}/g, (_, name) => vars[name] ?? "");
}
function litres(ml) {
  return ((ml || 0) / 1000).toLocaleString(app.lang === "id" ? "id-ID" : "en-GB",
    { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}
function rupiah(idr) { return `Rp ${Math.round(idr || 0).toLocaleString(app.lang === "id" ? "id-ID" : "en-GB")}`; }
function nowMs() { return performance.timeOrigin + performance.now(); }

function applyWords() {
  document.documentElement.lang = app.lang;
  $("#lang-toggle").textContent = app.lang === "id" ? "EN" : "ID";
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  setOnline(document.body.dataset.online === "1");
  Object.values(app.views).forEach(render);
  showWho();
}

// --- topics ----------------------------------------------------------------------------------

const root = () => `att/v1/${station}`;
const replyTopic = () => `${root()}/out/${app.device}`;
const shiftTopic = () => `${root()}/in/${app.device}/shift`;
const pumpTopic = (pump, verb) => `${root()}/in/${app.device}/${pump}/${verb}`;
const viewTopic = (pump) => `${root()}/pump/${pump}`;

function send(topic, body) {
  if (!app.client || !app.client.connected) return false;
  app.client.publish(topic, JSON.stringify(body), { qos: 1 });
  return true;
}

// --- connection ------------------------------------------------------------------------------

function setOnline(up) {
  document.body.dataset.online = up ? "1" : "0";
  const el = $("#conn");
  el.dataset.state = up ? "online" : "offline";
  el.textContent = t(up ? "online" : "offline");
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:${mqttPort}/mqtt`;
  const rand = Math.random().toString(16).slice(2, 8);
  const client = V.mqtt.connect(url, { username: app.device, password: app.key, protocolVersion: 4,
    clientId: `att-${app.device}-${rand}`, reconnectPeriod: 2000, connectTimeout: 5000, clean: true });
  app.client = client;
  client.on("connect", () => {
    setOnline(true);
    client.subscribe(replyTopic(), { qos: 1 }, () => send(shiftTopic(), { type: "hello" }));
  });
  client.on("close", () => setOnline(false));
  client.on("offline", () => setOnline(false));
  client.on("error", (err) => { document.body.dataset.error = String(err && err.message || err); });
  client.on("message", (topic, payload) => {
    let body;
    try { body = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
    if (topic === replyTopic()) onReply(body);
    else if (topic.startsWith(`${root()}/pump/`)) onView(body);
  });
}

// A phone whose screen went off may have lost the socket without noticing: check on wake.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible" || !app.client) return;
  if (!app.client.connected) app.client.reconnect();
  else send(shiftTopic(), { type: "hello" });
});

// --- replies from the agent -------------------------------------------------------------------

function onReply(msg) {
  if (msg.type === "hello") onHello(msg);
  else if (msg.type === "signin") onSignin(msg);
  else if (msg.type === "report") onReport(msg);
  else if (msg.type === "reprint") showReceipt(msg.ok ? msg.text : t("no_receipt"));
  else if (!msg.ok) document.body.dataset.lastError = msg.reason || "";
}

function onHello(msg) {
  const fresh = app.pumps.join() !== msg.pumps.join();
  app.pumps = msg.pumps;
  app.products = msg.products;
  if (fresh) buildPumps();
  app.client.subscribe(app.pumps.map(viewTopic), { qos: 0 });
  app.shift = msg.shift;
  showScreen();
  document.body.dataset.ready = "1";
}

function onSignin(msg) {
  const error = $("#signin-error");
  if (!msg.ok) {
    error.textContent = msg.reason === "rate_limited" ? t("rate_limited", { s: Math.ceil(msg.retry_after_s) })
      : t(msg.reason === "wrong_pin" ? "wrong_pin" : msg.reason);
    document.body.dataset.signin = msg.reason;
    return;
  }
  error.textContent = "";
  document.body.dataset.signin = "ok";
  $("#att-pin").value = "";
  app.shift = { attendant: msg.attendant, name: msg.name };
  showScreen();
}

function showScreen() {
  const signedIn = Boolean(app.shift);
  $("#signin").hidden = signedIn;
  $("#pumps").hidden = !signedIn;
  $("#shift-bar").hidden = !signedIn;
  $("#enrol").hidden = true;
  document.body.dataset.shift = signedIn ? app.shift.attendant : "";
  showWho();
  if (!signedIn) $("#att-number").focus();
}

function showWho() {
  if (app.shift) $("#who").textContent = t("signed_in_as", { number: app.shift.attendant, name: app.shift.name });
}

// --- the pumps -------------------------------------------------------------------------------

function buildPumps() {
  const main = $("#pumps");
  main.replaceChildren();
  for (const pump of app.pumps) {
    const card = $("#pump-template").content.firstElementChild.cloneNode(true);
    card.dataset.pump = pump;
    card.querySelectorAll(".pay button").forEach((b) => b.addEventListener("click", () => {
      unlockAudio();
      send(pumpTopic(pump, "pay"), { method: b.dataset.method });
    }));
    $(".stop", card).addEventListener("click", () => send(pumpTopic(pump, "stop"), {}));
    $(".reprint", card).addEventListener("click", () => send(pumpTopic(pump, "reprint"), {}));
    $(".scan", card).addEventListener("click", () => { unlockAudio(); openCamera(pump); });
    main.append(card);
    app.views[pump] = app.views[pump] || { pump, product: app.products[String(pump)], state: "inoperative" };
    render(app.views[pump]);
  }
  applyWordsTo(main);
}

function applyWordsTo(rootEl) {
  rootEl.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
}

function onView(view) {
  const first = !(view.pump in app.shown);
  app.views[view.pump] = view;
  render(view);
  const d = view.decision;
  const key = d ? `${d.decided_ms}:${d.code}:${d.tx_id}` : "";
  if (first) { app.shown[view.pump] = key; return; } // a retained view on arrival: not a new scan
  if (!d || app.shown[view.pump] === key) return;
  app.shown[view.pump] = key;
  // On screen at the next frame: that is when the attendant can see it.
  requestAnimationFrame(() => {
    window.spbuLatency.push({ pump: view.pump, code: d.code, ok: d.ok, decided_ms: d.decided_ms, shown_ms: nowMs() });
  });
  signal(d.ok);
}

function render(view) {
  const card = document.querySelector(`.pump[data-pump="${view.pump}"]`);
  if (!card) return;
  const product = PRODUCTS[view.product] || view.product || "";
  $(".name", card).textContent = `${t("pump")} ${view.pump} · ${product}`;
  $(".state", card).textContent = WORDS[app.lang].states[view.state] || view.state;
  card.dataset.state = view.state;
  renderDecision(card, view.decision, view);
  const fill = view.fill;
  $(".litres", card).textContent = fill ? `${litres(fill.litres_ml)} L` : "";
  $(".amount", card).textContent = fill ? rupiah(fill.amount_idr) : "";
  card.querySelectorAll(".pay button").forEach((b) => {
    b.setAttribute("aria-pressed", String(view.payment_choice === b.dataset.method));
  });
  $(".stop", card).disabled = !["authorised", "fuelling"].includes(view.state);
  const last = view.last;
  $(".last-text", card).textContent = last ? t("last", { litres: litres(last.litres_ml), amount: rupiah(last.amount_idr),
    method: `${t(last.method)}${last.status ? ` ${t(last.status)}` : ""}` }) : "";
  card.dataset.lastTx = last ? last.tx_id : "";
  card.dataset.lastMethod = last ? `${last.method}/${last.status || ""}` : "";
}

function renderDecision(card, d, view) {
  const box = $(".decision", card);
  box.dataset.ok = d ? (d.ok ? "1" : "0") : "";
  box.dataset.code = d ? d.code : "";
  box.dataset.tx = d && d.tx_id ? d.tx_id : "";
  // The fill it allowed is over: the answer stays for reference, dimmed, until the next scan.
  box.dataset.done = String(Boolean(d && d.tx_id && view.last && view.last.tx_id === d.tx_id));
  $(".verdict", box).textContent = d ? t(d.ok ? "allowed" : "refused") : "";
  $(".plate", box).textContent = d ? d.plate || "" : "";
  $(".category", box).textContent = d && d.category ? (WORDS[app.lang].categories[d.category] || d.category) : "";
  $(".allowed", box).textContent = d && d.ok ? t("allowed_line", { litres: litres(d.preset_ml), amount: rupiah(d.allowed_idr) }) : "";
  const quota = [];
  if (d && (d.ok || d.code === "quota_exhausted")) quota.push(t("quota_left", { litres: litres(d.remaining_ml) }));
  if (d && d.elsewhere_ml) quota.push(t("elsewhere", { litres: litres(d.elsewhere_ml) }));
  $(".quota", box).textContent = quota.join(" · ");
  const reasons = WORDS[app.lang].reasons;
  $(".reason", box).textContent = d && !d.ok
    ? String(reasons[d.code] || d.code).replace("{used}", litres(d.used_ml)).replace("{limit}", litres(d.limit_ml))
      .replace("{elsewhere}", litres(d.elsewhere_ml)).replace("{detail}", PRODUCTS[d.detail] || d.detail || "") : "";
}

// --- sound and vibration ------------------------------------------------------------------------

function unlockAudio() {
  if (!app.audio && window.AudioContext) app.audio = new AudioContext();
  if (app.audio && app.audio.state === "suspended") app.audio.resume();
}

function signal(ok) {
  if (navigator.vibrate) navigator.vibrate(ok ? [80] : [300, 120, 300]);
  if (!app.audio) return;
  const tones = ok ? [[1320, 0, 0.09], [1760, 0.12, 0.09]] : [[220, 0, 0.5]];
  for (const [freq, at, length] of tones) {
    const osc = app.audio.createOscillator();
    const gain = app.audio.createGain();
    osc.frequency.value = freq;
    osc.type = ok ? "sine" : "square";
    gain.gain.value = 0.3;
    osc.connect(gain).connect(app.audio.destination);
    osc.start(app.audio.currentTime + at);
    osc.stop(app.audio.currentTime + at + length);
  }
}

// --- the camera scanner (zxing-cpp, WebAssembly) ---------------------------------------------

const CAMERA_MAX_MS = 60000;
const FRAME_EVERY_MS = 150;

async function openCamera(pump) {
  closeCamera();
  $("#camera").hidden = false;
  $("#cam-hint").textContent = t("camera_hint");
  const video = $("#cam-video");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: false,
      video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } } });
  } catch (err) {
    $("#cam-hint").textContent = t("camera_error", { detail: err.name || String(err) });
    return;
  }
  video.srcObject = stream;
  await video.play().catch(() => {});
  app.camera = { pump, stream, started: Date.now(), busy: false, timer: setInterval(() => grab(video), FRAME_EVERY_MS) };
}

async function grab(video) {
  const cam = app.camera;
  if (!cam || cam.busy || !video.videoWidth) return;
  if (Date.now() - cam.started > CAMERA_MAX_MS) { closeCamera(); return; }
  cam.busy = true;
  try {
    const scale = Math.min(1, 800 / video.videoWidth);
    const canvas = cam.canvas || (cam.canvas = document.createElement("canvas"));
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const texts = await V.readQr(ctx.getImageData(0, 0, canvas.width, canvas.height));
    if (texts.length && app.camera === cam) {
      document.body.dataset.cameraRead = String(Number(document.body.dataset.cameraRead || 0) + 1);
      send(pumpTopic(cam.pump, "scan"), { text: texts[0] });
      closeCamera();
    }
  } catch (err) {
    document.body.dataset.cameraError = String(err && err.message || err);
  } finally {
    cam.busy = false;
  }
}

function closeCamera() {
  const cam = app.camera;
  app.camera = null;
  if (cam) {
    clearInterval(cam.timer);
    cam.stream.getTracks().forEach((track) => track.stop());
  }
  $("#cam-video").srcObject = null;
  $("#camera").hidden = true;
}

// --- receipt and shift report -----------------------------------------------------------------

function showReceipt(text) {
  $("#receipt-text").textContent = text;
  const dialog = $("#receipt");
  if (!dialog.open) dialog.showModal();
}

function onReport(msg) {
  if (!msg.ok) { document.body.dataset.lastError = msg.reason; alert(t(msg.reason)); return; }
  const r = msg.report;
  const rows = [[t("r_tx"), String(r.transactions)]];
  for (const [product, row] of Object.entries(r.products)) {
    rows.push([`${t("r_products")} ${PRODUCTS[product] || product}`, `${litres(row.litres_ml)} L · ${rupiah(row.amount_idr)}`]);
  }
  rows.push([t("r_cash"), rupiah(r.cash_expected_idr)], [t("r_card"), rupiah(r.card_idr)], [t("r_qris"), rupiah(r.qris_idr)]);
  if (r.pending_idr) rows.push([t("r_pending"), rupiah(r.pending_idr)]);
  for (const [pump, tot] of Object.entries(r.totalisers)) {
    rows.push([t("r_totaliser", { pump }), `${tot.start_ml == null ? "?" : litres(tot.start_ml)} → ${tot.end_ml == null ? "?" : litres(tot.end_ml)} L`]);
  }
  const table = document.createElement("table");
  for (const [label, value] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = label;
    tr.insertCell().textContent = value;
  }
  $("#report-body").replaceChildren(table);
  $("#report").hidden = false;
  $("#report").dataset.shift = r.shift_id;
  app.shift = null;
  $("#pumps").hidden = true;
  $("#shift-bar").hidden = true;
}

// --- start -----------------------------------------------------------------------------------

function enrolFromFragment() {
  // Enrolment link (or its QR): https://station:9444/?station=ID&mqtt=9443#device=NAME&key=KEY
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("device") && frag.get("key")) {
    localStorage.setItem("spbu.device", frag.get("device"));
    localStorage.setItem("spbu.key", frag.get("key"));
    app.device = frag.get("device");
    app.key = frag.get("key");
    history.replaceState(null, "", location.pathname + location.search); // the key leaves the address bar
  }
}

function start() {
  if (station) localStorage.setItem("spbu.station", station);
  if (params.get("mqtt")) localStorage.setItem("spbu.mqtt", params.get("mqtt"));
  enrolFromFragment();
  $("#lang-toggle").addEventListener("click", () => {
    app.lang = app.lang === "id" ? "en" : "id";
    localStorage.setItem("spbu.lang", app.lang);
    applyWords();
  });
  $("#enrol-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("spbu.device", $("#enrol-device").value.trim());
    localStorage.setItem("spbu.key", $("#enrol-key").value.trim());
    location.reload();
  });
  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    unlockAudio();
    send(shiftTopic(), { type: "signin", attendant: $("#att-number").value.trim(), pin: $("#att-pin").value });
  });
  $("#close-shift").addEventListener("click", () => send(shiftTopic(), { type: "close" }));
  $("#report-done").addEventListener("click", () => { $("#report").hidden = true; showScreen(); });
  $("#receipt-close").addEventListener("click", () => $("#receipt").close());
  $("#cam-cancel").addEventListener("click", closeCamera);
  V.prepareScanner(location.href);
  applyWords();
  if (!app.device || !app.key || !station) {
    $("#enrol").hidden = false;
    return;
  }
  connect();
}

start();
