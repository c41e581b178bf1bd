// A small SVG line chart: one polyline per key over evenly spaced periods, a y grid, a few x labels, a hover guide.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 260;
const PAD = { top: 14, right: 16, bottom: 30, left: 48 };
const Y_TICKS = 4;
const MIN_LABEL_GAP_PX = 80; // x labels closer than this overlap on a phone
// Colours picked to stay apart for the common colour-vision deficiencies; "other" is a neutral grey.
const PALETTE = ["#2f6fde", "#e07b00", "#0f8a6a", "#c8322f", "#7b4fd6", "#8a6d00", "#d6459b", "#1b9bb5"];
const OTHER_COLOUR = "#98a2b3";

export function colourOf(keys, key) {
  return key === "other" ? OTHER_COLOUR : PALETTE[keys.indexOf(key) % PALETTE.length];
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// The smallest 1, 2 or 5 x 10^k step that splits `max` into at most Y_TICKS intervals.
function niceStep(max) {
  const rough = Math.max(max, 1) / Y_TICKS;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= rough);
  return Math.max(1, step); // counts are whole: never a tick between two integers
}

// Where everything goes, from the data and the width the chart has on screen.
export function layout(model, keys, width) {
  const n = model.periods.length;
  const highest = Math.max(0, ...keys.map((key) => Math.max(0, ...model.counts.get(key))));
  const step = niceStep(highest);
  const top = Math.max(step, Math.ceil(highest / step) * step);
  const plotWidth = Math.max(width - PAD.left - PAD.right, 10);
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const dx = n > 1 ? plotWidth / (n - 1) : 0;
  return {
    width, n, step, top, dx, plotWidth, plotHeight,
    x: (i) => PAD.left + (n > 1 ? i * dx : plotWidth / 2),
    y: (count) => PAD.top + plotHeight - (count * plotHeight) / top,
  };
}

export function drawChart(svg, model, keys, width, labelOf) {
  const geometry = layout(model, keys, width);
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", HEIGHT);
  svg.replaceChildren(yGrid(geometry), xLabels(model, geometry, labelOf), ...keys.map((key) => line(model, keys, key, geometry)));
  svg.append(svgNode("g", { class: "hover", visibility: "hidden" }));
  // The scale, so a reader (the browser tests) can turn a drawn point back into a count.
  svg.dataset.yZero = geometry.y(0);
  svg.dataset.pxPerStart = geometry.plotHeight / geometry.top;
  return geometry;
}

function yGrid(geometry) {
  const group = svgNode("g", { class: "grid-y" });
  for (let value = 0; value <= geometry.top; value += geometry.step) {
    const y = geometry.y(value);
    group.append(svgNode("line", { x1: PAD.left, x2: PAD.left + geometry.plotWidth, y1: y, y2: y }));
    group.append(svgNode("text", { x: PAD.left - 8, y: y + 4, "text-anchor": "end" }, value.toLocaleString("en")));
  }
  return group;
}

function xLabels(model, geometry, labelOf) {
  const group = svgNode("g", { class: "labels-x" });
  const every = Math.max(1, Math.ceil(MIN_LABEL_GAP_PX / Math.max(geometry.dx, 1)));
  // Count back from the newest period so "now" always has a label.
  for (let i = geometry.n - 1; i >= 0; i -= every) {
    const x = geometry.x(i);
    group.append(svgNode("line", { x1: x, x2: x, y1: PAD.top + geometry.plotHeight, y2: PAD.top + geometry.plotHeight + 4 }));
    group.append(svgNode("text", { x, y: HEIGHT - 8, "text-anchor": "middle" }, labelOf(model.periods[i], model.step)));
  }
  return group;
}

function line(model, keys, key, geometry) {
  const points = model.counts.get(key).map((count, i) => `${geometry.x(i).toFixed(2)},${geometry.y(count).toFixed(2)}`);
  return svgNode("polyline", {
    class: "series", "data-key": key, points: points.join(" "), stroke: colourOf(keys, key), fill: "none",
  });
}

// The period nearest a pointer's x (in client pixels), or -1 outside the data.
export function periodAt(svg, geometry, clientX) {
  if (!geometry || !geometry.n) return -1;
  const box = svg.getBoundingClientRect();
  const x = ((clientX - box.left) * geometry.width) / box.width;
  if (geometry.n === 1) return 0;
  return Math.min(geometry.n - 1, Math.max(0, Math.round((x - PAD.left) / geometry.dx)));
}

// A vertical guide and one dot per series at period `index`; index -1 hides them.
export function highlight(svg, model, keys, geometry, index) {
  const group = svg.querySelector("g.hover");
  if (!group) return;
  group.setAttribute("visibility", index < 0 ? "hidden" : "visible");
  if (index < 0) return;
  const x = geometry.x(index);
  group.replaceChildren(svgNode("line", { x1: x, x2: x, y1: PAD.top, y2: PAD.top + geometry.plotHeight }));
  for (const key of keys) {
    const y = geometry.y(model.counts.get(key)[index]);
    group.append(svgNode("circle", { cx: x, cy: y, r: 4, fill: colourOf(keys, key) }));
  }
}
