// The chart's data: one GET /v1/session-starts/series answer, kept current by the live feed until the next refresh.
"use strict";

const STEP_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

// How live starts for countries outside the chart's keys are counted, to match what the endpoint will say.
//   "named": only the chosen countries are in the answer; others are not counted at all.
//   "top":   the top `top` plus "other"; a new country gets a key of its own while there are fewer than `top`
//            (the endpoint would list it), else it is counted in "other". The default top is every country.
export function seriesModel(body, mode, top = Infinity) {
  const stepMs = STEP_MS[body.step];
  if (!stepMs) throw new Error(`unknown step ${JSON.stringify(body.step)}`);
  const periods = body.periods.map((period) => Date.parse(period));
  const counts = new Map(Object.entries(body.series).map(([key, values]) => [key, [...values]]));
  return { step: body.step, stepMs, periods, counts, mode, top, from: body.from, to: body.to, settled: body.settled };
}

export function isEmpty(model) {
  for (const values of model.counts.values()) if (values.some((count) => count > 0)) return false;
  return true;
}

// Count one live start; true when the chart changed. Starts older than the chart are ignored (the totals
// endpoint has them); a start past the newest period opens new periods and drops as many of the oldest,
// so the window keeps its length between refreshes.
export function addStart(model, country, tsMs) {
  const key = keyFor(model, country);
  if (key === null || !model.periods.length || !Number.isFinite(tsMs)) return false;
  const index = Math.floor((tsMs - model.periods[0]) / model.stepMs);
  if (index < 0) return false;
  const shift = index - model.periods.length + 1;
  if (shift > 0) slide(model, shift);
  model.counts.get(key)[index - Math.max(shift, 0)] += 1;
  return true;
}

function keyFor(model, country) {
  if (model.counts.has(country)) return country;
  if (model.mode === "named") return null;
  const full = model.counts.has("other") || model.counts.size >= model.top;
  const key = full ? "other" : country;
  if (!model.counts.has(key)) model.counts.set(key, model.periods.map(() => 0));
  return key;
}

function slide(model, shift) {
  const length = model.periods.length;
  const first = model.periods[0] + shift * model.stepMs;
  model.periods = Array.from({ length }, (_, i) => first + i * model.stepMs);
  for (const [key, values] of model.counts) {
    const kept = values.slice(shift); // empty when the start is a whole window ahead
    model.counts.set(key, [...kept, ...new Array(length - kept.length).fill(0)]);
  }
}

// Keys in a stable order for colours and the legend: by total, largest first; "other" always last.
export function orderedKeys(model) {
  const total = (key) => model.counts.get(key).reduce((sum, count) => sum + count, 0);
  const keys = [...model.counts.keys()].filter((key) => key !== "other");
  keys.sort((a, b) => total(b) - total(a) || a.localeCompare(b));
  return model.counts.has("other") ? [...keys, "other"] : keys;
}

export function totalOf(model, key) {
  return model.counts.get(key).reduce((sum, count) => sum + count, 0);
}
