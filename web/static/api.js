// Talking to the daemon: the read key, JSON fetches, and failures sorted into states a card can show.
"use strict";

const KEY_STORAGE = "pss.readKey";

// sessionStorage, not localStorage: the key lives as long as this tab, and is not left behind on the machine.
export function readKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode policies): the page still works where no key is needed
  }
}

export function saveReadKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

// A failure a card can explain: `kind` picks the wording and the styling of its state line.
export class ApiError extends Error {
  constructor(kind, status, message, retryAfter) {
    super(message);
    this.kind = kind; // "unauthorized" | "unavailable" | "failed" | "network"
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

const listeners = new Set();

// Cards call this when a request was refused for want of a key; the page shows the key form once.
export function onUnauthorized(listener) {
  listeners.add(listener);
}

export async function getJson(path, { signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = readKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { headers, cache: "no-store", signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("network", 0, "the daemon did not answer (is it running?)");
  }
  const body = await response.json().catch(() => null); // an error page from a proxy is not JSON
  if (response.ok && body !== null) return body;
  throw failure(response, body);
}

function failure(response, body) {
  const reason = (body && body.error) || `HTTP ${response.status} ${response.statusText}`.trim();
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  // 401: no key or an unknown one; 403: a key of another scope (an ingest key). Either way: ask for a read key.
  if (response.status === 401 || response.status === 403) {
    for (const listener of listeners) listener(reason);
    return new ApiError("unauthorized", response.status, reason, null);
  }
  if (response.status === 503) return new ApiError("unavailable", 503, reason, retryAfter);
  return new ApiError("failed", response.status, reason, retryAfter); // a 429 says when to come back, too
}

// Browsers cannot set headers on a websocket handshake, so the feed takes the key in the query string.
export function feedUrl(path, params) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams(params);
  const key = readKey();
  if (key) query.set("token", key);
  const text = query.toString();
  return `${scheme}//${location.host}${path}${text ? "?" + text : ""}`;
}

// One sentence per failure kind, for a card's state line.
export function describe(error, what) {
  switch (error.kind) {
    case "unauthorized":
      return `Not authorized to read ${what}: enter a read key above.`;
    case "unavailable":
      return `Cassandra is unavailable, so ${what} cannot be read right now. Retrying…`;
    case "network":
      return `Could not reach the daemon for ${what}: ${error.message}. Retrying…`;
    default:
      return `Could not load ${what}: ${error.message}`;
  }
}
