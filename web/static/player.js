// The "A player's sessions" card: a player id in, their last 20 complete sessions out.
"use strict";

import { describe, getJson } from "./api.js";
import { $, countryName, element, showState, utcText } from "./dom.js";

const LIMIT = 20;
let current = null; // the player id on show, so a new key can load it again
let controller = null;

export function setupPlayer() {
  $("player-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("player-id").value.trim(); // pasted ids often carry a stray space or newline
    if (id) loadPlayer(id);
  });
}

export function reloadPlayer() {
  if (current !== null) loadPlayer(current);
}

async function loadPlayer(id) {
  if (controller) controller.abort(); // only the newest lookup may fill the table
  controller = new AbortController();
  current = id;
  const state = $("player-state");
  showState(state, "loading", "Loading…");
  $("player-box").hidden = true;
  const path = `/v1/players/${encodeURIComponent(id)}/sessions?limit=${LIMIT}`;
  let body;
  try {
    body = await getJson(path, { signal: controller.signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    showState(state, error.kind, describe(error, `player ${id}'s sessions`).replace(" Retrying…", " Try again."));
    return;
  }
  if (!body.sessions.length) {
    showState(state, "empty", `Player ${id} has no complete sessions in the retention period.`);
    return;
  }
  showState(state, "ready");
  $("player-sessions").replaceChildren(...body.sessions.map(sessionRow));
  $("player-box").hidden = false;
}

function sessionRow(session) {
  const row = element("tr");
  row.dataset.sessionId = session.session_id;
  const country = element("td");
  country.append(element("strong", "", session.country), ` ${countryName(session.country)}`);
  row.append(
    element("td", "", utcText(session.start)),
    element("td", "", utcText(session.end)),
    element("td", "num", duration(session.duration_seconds)),
    country,
  );
  return row;
}

// 3725 -> "1 h 02 min 05 s": long sessions stay readable, short ones stay short.
export function duration(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min ${String(s).padStart(2, "0")} s`;
  if (m) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}
