// Small DOM helpers shared by the cards. All data reaches the page through textContent; nothing is parsed as HTML.
"use strict";

export const $ = (id) => document.getElementById(id);
export const number = new Intl.NumberFormat("en");

const regions = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function countryName(code) {
  if (code === "other") return "other countries";
  try {
    return (regions && regions.of(code)) || code;
  } catch {
    return code; // not a region Intl knows
  }
}

// "2016-11-30T23:30:00Z" -> "2016-11-30 23:30:00": the API's UTC instants, readable, still unambiguous.
export function utcText(iso) {
  return String(iso).replace("T", " ").replace("Z", "");
}

// A card's one state line: loading, empty, unavailable, unauthorized... Hidden once the card has data to show.
export function showState(node, state, text) {
  node.dataset.state = state;
  node.textContent = text || "";
  node.hidden = state === "ready";
}

// Radio groups of buttons: arrow keys move the choice, only the chosen button is in the tab order (WAI-ARIA radio).
export function radioGroup(group, onChoose) {
  const buttons = () => [...group.querySelectorAll('[role="radio"]')];
  const choose = (button) => {
    for (const other of buttons()) {
      const chosen = other === button;
      other.setAttribute("aria-checked", String(chosen));
      other.tabIndex = chosen ? 0 : -1;
    }
    onChoose(button);
  };
  group.addEventListener("click", (event) => {
    const button = event.target.closest('[role="radio"]');
    if (button) choose(button);
  });
  group.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const all = buttons();
    const next = all[(all.indexOf(document.activeElement) + step + all.length) % all.length];
    next.focus();
    choose(next);
  });
}
