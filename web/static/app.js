// Live dashboard: session starts from the websocket feed (/v1/live), stored totals (/v1/session-starts), starts over
// time (chartcard.js) and a player's sessions (player.js). All data reaches the page through textContent.
"use strict";

import { describe, feedUrl, getJson, onUnauthorized, readKey, saveReadKey } from "./api.js";
import { chartStart, refreshChart, setChartCountries, setupChart } from "./chartcard.js";
import { $, countryName, element, number, radioGroup, showState } from "./dom.js";
import { reloadPlayer, setupPlayer } from "./player.js";

const LATEST_LIMIT = 100;
const TOP_BARS = 8;
const TOTALS_REFRESH_MS = 5000;
const RATE_WINDOW_S = 10;
const BACKOFF_FIRST_S = 1;
const BACKOFF_MAX_S = 30;
const CODE = /^[A-Z]{2}$/;
const CLOSE_REASONS = { 1001: "server restarting", 1006: "connection lost", 4000: "fell too far behind" };

const rate = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

const live = { counts: new Map(), total: 0, missed: 0, perSecond: new Map(), fresh: [] };
let filter = null; // null = every country, else a sorted array of codes
let socket = null;
let attempt = 0;
let retryTimer = null;
let needKey = false; // a request was refused for want of a read key: stop retrying until one is entered
let renderQueued = false;
let totalsHours = 1;
let totalsTimer = null;
let totalsRequest = 0;

// --- connection --------------------------------------------------------------------------------

function setStatus(state, text, detail) {
  const status = $("status");
  status.dataset.state = state;
  status.title = detail || "";
  $("status-text").textContent = text;
}

function connect() {
  clearTimeout(retryTimer);
  setStatus("connecting", "connecting");
  const ws = new WebSocket(feedUrl("/v1/live", filter ? { countries: filter.join(",") } : {}));
  socket = ws;
  ws.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    reconnectLater(CLOSE_REASONS[event.code] || event.reason || `closed (${event.code})`);
  });
}

// Exponential backoff with jitter, so a restarted daemon is not hit by every page at once.
function reconnectLater(reason) {
  if (needKey) {
    setStatus("unauthorized", "needs a read key", reason);
    return;
  }
  const base = Math.min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** attempt);
  attempt += 1;
  const due = Date.now() + base * (0.8 + Math.random() * 0.4) * 1000;
  const tick = () => {
    const left = Math.ceil((due - Date.now()) / 1000);
    if (left <= 0) {
      connect();
      return;
    }
    setStatus("reconnecting", `reconnecting in ${left}s`, reason);
    retryTimer = setTimeout(tick, Math.min(1000, due - Date.now()));
  };
  tick();
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function onMessage(message) {
  switch (message.type) {
    case "session_start":
      countStart(message.country, 1);
      chartStart(message.country, message.ts);
      live.fresh.push(message);
      break;
    // The server dropped starts for us: count them; they miss the list, and the chart (which needs each start's
    // time) gets them at its next refresh.
    case "lagged":
      live.missed += message.dropped;
      for (const [country, count] of Object.entries(message.countries || {})) countStart(country, count);
      break;
    case "subscribed":
      attempt = 0;
      setStatus("live", "live");
      showSubscription(message.countries);
      break;
    case "error":
      showFilterError(`Server: ${message.error}`);
      break;
  }
  queueRender();
}

function countStart(country, count) {
  live.total += count;
  live.counts.set(country, (live.counts.get(country) || 0) + count);
  const second = Math.floor(Date.now() / 1000);
  live.perSecond.set(second, (live.perSecond.get(second) || 0) + count);
}

// --- country filter ----------------------------------------------------------------------------

function showSubscription(countries) {
  const text = countries === null ? "all countries" : countries.length ? countries.join(", ") : "none";
  $("subscribed").textContent = text;
  showFilterError(null);
}

function showFilterError(text) {
  const error = $("filter-error");
  error.hidden = text === null;
  error.textContent = text || "";
}

function parseFilter(text) {
  const codes = text.toUpperCase().split(/[\s,;]+/).filter(Boolean);
  const bad = codes.find((code) => !CODE.test(code));
  if (bad !== undefined) throw new Error(`“${bad}” is not a two-letter country code`);
  return codes.length ? [...new Set(codes)].sort() : null;
}

function applyFilter(event) {
  event.preventDefault();
  const input = $("countries");
  let wanted;
  try {
    wanted = parseFilter(input.value);
  } catch (error) {
    input.setAttribute("aria-invalid", "true");
    showFilterError(error.message);
    return;
  }
  input.removeAttribute("aria-invalid");
  input.value = wanted ? wanted.join(", ") : "";
  showFilterError(null);
  filter = wanted;
  setChartCountries(wanted);
  // Replace the set: clear it (null = nothing), then add; or subscribe to everything.
  if (wanted === null) {
    send({ action: "subscribe", countries: null });
  } else {
    send({ action: "unsubscribe", countries: null });
    send({ action: "subscribe", countries: wanted });
  }
}

// --- rendering ---------------------------------------------------------------------------------

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderLive();
  });
}

function renderBars(list, more, counts) {
  const entries = [...counts].filter(([, count]) => count > 0);
  entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const top = entries.slice(0, TOP_BARS);
  const max = top.length ? top[0][1] : 1;
  list.replaceChildren(
    ...top.map(([code, count]) => {
      const row = element("li");
      const name = element("span", "name");
      name.title = `${code} ${countryName(code)}`;
      name.append(element("span", "code", code), countryName(code));
      const track = element("div", "track");
      const fill = element("div", "fill");
      fill.style.width = `${(100 * count) / max}%`;
      track.append(fill);
      row.append(name, track, element("span", "count", number.format(count)));
      return row;
    }),
  );
  const rest = entries.slice(TOP_BARS);
  more.hidden = rest.length === 0;
  const restStarts = rest.reduce((sum, [, count]) => sum + count, 0);
  more.textContent = `+ ${rest.length} more ${rest.length === 1 ? "country" : "countries"} (${number.format(restStarts)} starts)`;
  return entries.length;
}

function renderLive() {
  $("live-total").textContent = number.format(live.total);
  $("live-rate").textContent = rate.format(recentRate());
  $("missed-box").hidden = live.missed === 0;
  $("live-missed").textContent = number.format(live.missed);
  const shown = renderBars($("live-bars"), $("live-more"), live.counts);
  $("live-empty").hidden = shown > 0;
  renderLatest();
}

function recentRate() {
  const now = Math.floor(Date.now() / 1000);
  let sum = 0;
  for (const [second, count] of live.perSecond) {
    if (second <= now - RATE_WINDOW_S) live.perSecond.delete(second);
    else sum += count;
  }
  return sum / RATE_WINDOW_S;
}

function renderLatest() {
  if (!live.fresh.length) return;
  const body = $("latest");
  const rows = live.fresh.slice(-LATEST_LIMIT).reverse().map(latestRow);
  live.fresh = [];
  body.prepend(...rows);
  while (body.rows.length > LATEST_LIMIT) body.lastElementChild.remove();
}

function latestRow(start) {
  const row = element("tr", "fresh");
  const when = element("td", "", String(start.ts).replace("T", " ").replace("Z", ""));
  const country = element("td");
  country.append(element("strong", "", start.country), ` ${countryName(start.country)}`);
  const player = element("td", "mono", start.player_id);
  const session = element("td", "mono", start.session_id);
  row.append(when, country, player, session);
  return row;
}

function resetLive() {
  live.counts.clear();
  live.perSecond.clear();
  live.total = 0;
  live.missed = 0;
  live.fresh = [];
  $("latest").replaceChildren();
  renderLive();
}

// --- stored totals -----------------------------------------------------------------------------

async function refreshTotals() {
  clearTimeout(totalsTimer);
  const request = ++totalsRequest;
  let delay = TOTALS_REFRESH_MS;
  try {
    const body = await getJson(`/v1/session-starts?hours=${totalsHours}`);
    if (request !== totalsRequest) return; // a newer request (another window) superseded this one
    renderTotals(body);
  } catch (error) {
    if (request !== totalsRequest) return;
    const stale = $("totals-total").textContent === "–" ? "" : " The figures above are the last answer.";
    showState($("totals-note"), error.kind, describe(error, "the stored totals") + stale);
    if (error.kind === "unauthorized") return; // the key form reloads everything
    delay = error.retryAfter ? error.retryAfter * 1000 : TOTALS_REFRESH_MS;
  }
  if (request === totalsRequest) totalsTimer = setTimeout(refreshTotals, delay);
}

function renderTotals(body) {
  const counts = new Map(Object.entries(body.countries));
  $("totals-total").textContent = number.format(body.total);
  $("totals-countries").textContent = number.format(counts.size);
  const shown = renderBars($("totals-bars"), $("totals-more"), counts);
  $("totals-empty").hidden = shown > 0;
  const text = `${body.from} → ${body.to} · refreshed ${new Date().toLocaleTimeString("en-GB")}`;
  showState($("totals-note"), "fresh", `${text} · counts settle about a second after ingest`);
}

function chooseWindow(button) {
  totalsHours = Number(button.dataset.hours);
  refreshTotals();
}

// --- read key ----------------------------------------------------------------------------------

function askForKey(reason) {
  needKey = true;
  const stored = readKey();
  $("auth-reason").textContent = stored
    ? `The read key in this tab was refused (${reason}). Enter another read key.`
    : `The daemon answered: ${reason}. Enter a read key (pss_read_…); it is kept in this tab only.`;
  if ($("auth").hidden) {
    $("auth").hidden = false;
    $("auth-key").focus();
  }
  if (socket === null) {
    clearTimeout(retryTimer); // a countdown would only be refused again
    setStatus("unauthorized", "needs a read key");
  }
}

function useKey(event) {
  event.preventDefault();
  const key = $("auth-key").value.trim();
  if (!key) return;
  saveReadKey(key);
  $("auth-key").value = "";
  $("auth").hidden = true;
  needKey = false;
  attempt = 0;
  if (socket) {
    const old = socket;
    socket = null; // so its close handler does not schedule a retry: connect now, with the key
    old.close();
  }
  connect();
  refreshTotals();
  refreshChart();
  reloadPlayer();
}

// --- start -------------------------------------------------------------------------------------

$("filter").addEventListener("submit", applyFilter);
$("reset").addEventListener("click", resetLive);
$("auth-form").addEventListener("submit", useKey);
radioGroup($("totals-window"), chooseWindow);
onUnauthorized(askForKey);
setupChart();
setupPlayer();
setInterval(queueRender, 1000); // let the rate fall back to zero when starts stop
connect();
refreshTotals();
