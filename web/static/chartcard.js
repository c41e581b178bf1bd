// The "Starts over time" card: fetches the series for the chosen window, draws it, counts live starts in between.
"use strict";

import { describe, getJson } from "./api.js";
import { colourOf, drawChart, highlight, periodAt } from "./chart.js";
import { $, countryName, element, number, radioGroup, showState } from "./dom.js";
import { addStart, isEmpty, orderedKeys, seriesModel, totalOf } from "./series.js";

const REFRESH_MS = 15_000; // live starts keep the chart current in between; the refresh corrects lagged gaps
const RETRY_MS = 5_000;
const TOP = 6; // with no countries chosen: the six largest plus "other", which a phone can still tell apart

const view = {
  hours: 1,
  step: "minute",
  countries: null, // null = the top countries, else the chosen codes
  model: null,
  keys: [],
  geometry: null,
  hovered: -1,
  timer: null,
  controller: null,
  drawQueued: false,
};

export function setupChart() {
  radioGroup($("chart-window"), (button) => {
    view.hours = Number(button.dataset.hours);
    view.step = button.dataset.step;
    view.model = null; // another window: the old lines would mislead while the new ones load
    refreshChart();
  });
  const svg = $("chart");
  svg.addEventListener("pointermove", (event) => hover(periodAt(svg, view.geometry, event.clientX)));
  svg.addEventListener("pointerleave", () => hover(-1));
  svg.addEventListener("keydown", hoverByKey);
  svg.addEventListener("blur", () => hover(-1));
  new ResizeObserver(() => queueDraw()).observe($("chart-box"));
  refreshChart();
}

export function setChartCountries(countries) {
  view.countries = countries;
  view.model = null;
  refreshChart();
}

// A start from the live feed; the model decides whether it lands in the chart.
export function chartStart(country, ts) {
  if (view.model && addStart(view.model, country, Date.parse(ts))) queueDraw();
}

function seriesPath() {
  const query = new URLSearchParams({ hours: view.hours, step: view.step });
  if (view.countries) query.set("countries", view.countries.join(","));
  else query.set("top", TOP);
  return `/v1/session-starts/series?${query}`;
}

export async function refreshChart() {
  clearTimeout(view.timer);
  if (view.controller) view.controller.abort(); // a newer window or filter supersedes the request in flight
  const controller = (view.controller = new AbortController());
  const path = seriesPath();
  if (!view.model) {
    showState($("chart-state"), "loading", "Loading…");
    showChart(false);
  }
  let delay = REFRESH_MS;
  try {
    const body = await getJson(path, { signal: controller.signal });
    view.model = view.countries ? seriesModel(body, "named") : seriesModel(body, "top", TOP);
    $("chart").dataset.source = path;
    draw();
  } catch (error) {
    if (error.name === "AbortError") return;
    showFailure(error);
    if (error.kind === "unauthorized") return; // nothing to retry until a key is entered
    delay = error.retryAfter ? error.retryAfter * 1000 : RETRY_MS;
  }
  if (view.controller === controller) view.timer = setTimeout(refreshChart, delay);
}

function showFailure(error) {
  const stale = view.model ? " The chart shows the last answer." : "";
  showState($("chart-state"), error.kind, describe(error, "the starts over time") + stale);
}

function showChart(visible) {
  $("chart-box").hidden = !visible;
  $("chart-legend").hidden = !visible;
  $("chart-summary").hidden = !visible;
}

function queueDraw() {
  if (view.drawQueued) return;
  view.drawQueued = true;
  requestAnimationFrame(() => {
    view.drawQueued = false;
    if (view.model) draw();
  });
}

function draw() {
  const model = view.model;
  if (isEmpty(model)) {
    showState($("chart-state"), "empty", `No session starts from ${model.from} to ${model.to}.`);
    showChart(false);
    return;
  }
  showState($("chart-state"), "ready");
  showChart(true);
  view.keys = orderedKeys(model);
  const svg = $("chart");
  view.geometry = drawChart(svg, model, view.keys, $("chart-box").clientWidth, axisLabel);
  svg.dataset.step = model.step;
  renderLegend(model);
  renderSummary(model);
  if (view.hovered >= view.geometry.n) view.hovered = -1;
  hover(view.hovered);
}

function renderLegend(model) {
  $("chart-legend").replaceChildren(
    ...view.keys.map((key) => {
      const item = element("li");
      item.dataset.key = key;
      const swatch = element("span", "swatch");
      swatch.style.background = colourOf(view.keys, key);
      const label = key === "other" ? "other countries" : `${key} ${countryName(key)}`;
      item.append(swatch, element("span", "", label), element("strong", "", number.format(totalOf(model, key))));
      return item;
    }),
  );
}

function renderSummary(model) {
  const exact = model.settled ? "" : " · some periods may still change (rollups catching up)";
  const at = new Date().toLocaleTimeString("en-GB");
  $("chart-summary").textContent = `${model.from} → ${model.to} (UTC) · by ${model.step} · refreshed ${at}${exact}`;
}

// --- hover and keyboard ------------------------------------------------------------------------

function hover(index) {
  view.hovered = index;
  if (!view.model || !view.geometry) return;
  highlight($("chart"), view.model, view.keys, view.geometry, index);
  const tip = $("chart-tip");
  tip.hidden = index < 0;
  if (index < 0) return;
  tip.dataset.index = index;
  tip.replaceChildren(element("strong", "", periodText(view.model.periods[index], view.model.step)));
  for (const key of view.keys) {
    const row = element("span", "row");
    const swatch = element("span", "swatch");
    swatch.style.background = colourOf(view.keys, key);
    row.append(swatch, element("span", "", key), element("span", "count", number.format(view.model.counts.get(key)[index])));
    tip.append(row);
  }
  placeTip(tip, index);
}

// Keep the tooltip inside the card: right of the guide, or left of it near the right edge.
function placeTip(tip, index) {
  const box = $("chart-box");
  const x = (view.geometry.x(index) * box.clientWidth) / view.geometry.width;
  const flip = x + tip.offsetWidth + 16 > box.clientWidth;
  tip.style.left = `${Math.max(0, flip ? x - tip.offsetWidth - 12 : x + 12)}px`;
}

// Arrow keys walk the periods, Home/End jump, Escape hides: the chart reads out without a mouse.
function hoverByKey(event) {
  if (!view.geometry || !view.geometry.n) return;
  const last = view.geometry.n - 1;
  const current = view.hovered < 0 ? last : view.hovered;
  const moves = { ArrowLeft: current - 1, ArrowRight: current + 1, Home: 0, End: last, Escape: -1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  hover(event.key === "Escape" ? -1 : Math.min(last, Math.max(0, moves[event.key])));
}

// --- period labels (UTC, like the API) ---------------------------------------------------------

function axisLabel(ms, step) {
  const iso = new Date(ms).toISOString();
  if (step === "day") return iso.slice(5, 10);
  if (step === "hour" && iso.slice(11, 13) === "00") return iso.slice(5, 10); // midnight: say which day
  return iso.slice(11, 16);
}

export function periodText(ms, step) {
  const iso = new Date(ms).toISOString();
  if (step === "day") return `${iso.slice(0, 10)} (UTC day)`;
  const end = new Date(ms + (step === "hour" ? 3_600_000 : 60_000)).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}–${end.slice(11, 16)} UTC`;
}
