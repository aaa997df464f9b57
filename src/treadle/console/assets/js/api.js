// Every call the console makes to the HTTP API, in one place (tests/integration/test_console_api.py
// checks each against the server's routes). The page is served by the API it calls:
// requests go to the same origin, under the API's base path (http.mount_prefix), with the
// credential the user typed in (kept in this tab's sessionStorage only).

import { readEvents } from "./sse.js";

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute("content") ?? "";
export const API_BASE = meta("treadle-api-base");
const AUTH_KEY = "treadle.console.auth";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The credential sent with each call: {header: "Authorization"|"X-Api-Key", value} or null. */
export function credential() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(AUTH_KEY) || "null");
    return saved && saved.value ? saved : null;
  } catch {
    return null;
  }
}

export function setCredential(header, value) {
  if (!value) sessionStorage.removeItem(AUTH_KEY);
  else sessionStorage.setItem(AUTH_KEY, JSON.stringify({ header, value }));
}

function headers(extra = {}) {
  const out = { accept: "application/json", ...extra };
  const cred = credential();
  if (cred) out[cred.header] = cred.value;
  return out;
}

function url(path, query) {
  const u = new URL(API_BASE + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u.toString();
}

async function failure(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
  } catch {
    /* not JSON */
  }
  const hint = response.status === 401 ? " (set a credential: the key button, top right)" : "";
  return new ApiError(response.status, `${detail}${hint}`);
}

/** One JSON call: resolves to the parsed answer (null for 204), throws ApiError. */
export async function call(method, path, { body, query, signal } = {}) {
  const init = { method, headers: headers(body !== undefined ? { "content-type": "application/json" } : {}), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(url(path, query), init);
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A streaming call (SSE): yields {event, data, id} until the stream ends. */
export async function* stream(method, path, { body, query, signal } = {}) {
  const extra = { accept: "text/event-stream" };
  if (body !== undefined) extra["content-type"] = "application/json";
  const init = { method, headers: headers(extra), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(url(path, query), init);
  if (!response.ok) throw await failure(response);
  yield* readEvents(response.body);
}

const enc = encodeURIComponent;

// --- the calls ---------------------------------------------------------------------------
export const api = {
  info: () => call("GET", "/info"),
  assistants: () => call("POST", "/assistants/search", { body: { limit: 100, offset: 0 } }),
  assistant: (id) => call("GET", `/assistants/${enc(id)}`),
  graph: (id) => call("GET", `/assistants/${enc(id)}/graph`, { query: { xray: "true" } }),
  schemas: (id) => call("GET", `/assistants/${enc(id)}/schemas`),

  searchThreads: ({ status, metadata, limit, offset }) => call("POST", "/threads/search", {
    body: { status: status || undefined, metadata: metadata || undefined, limit, offset,
      sort_by: "updated_at", sort_order: "desc" },
  }),
  countThreads: ({ status, metadata }) => call("POST", "/threads/count", {
    body: { status: status || undefined, metadata: metadata || undefined },
  }),
  thread: (id) => call("GET", `/threads/${enc(id)}`),
  state: (id) => call("GET", `/threads/${enc(id)}/state`),
  /** A page of checkpoints, newest first, older than `before` (a checkpoint id). */
  history: (id, { limit, before }) => call("POST", `/threads/${enc(id)}/history`, {
    body: { limit, before: before ? { configurable: { checkpoint_id: before } } : undefined },
  }),
  /** Write `values` as a new checkpoint (a fork when `checkpointId` is not the latest). */
  updateState: (id, { values, checkpointId, asNode }) => call("POST", `/threads/${enc(id)}/state`, {
    body: { values, checkpoint_id: checkpointId || undefined, as_node: asNode || undefined },
  }),
  copyThread: (id) => call("POST", `/threads/${enc(id)}/copy`),
  storage: (id) => call("GET", `/threads/${enc(id)}/storage`),

  runs: (threadId, limit = 20) => call("GET", `/threads/${enc(threadId)}/runs`, { query: { limit } }),
  cancelRun: (threadId, runId) => call("POST", `/threads/${enc(threadId)}/runs/${enc(runId)}/cancel`, {
    query: { action: "interrupt" },
  }),
  /** Queue a run (the caller joins its stream). */
  createRun: (threadId, body) => call("POST", `/threads/${enc(threadId)}/runs`, { body }),
  /** Start a run and stream it. body: {assistant_id, input?, command?, checkpoint_id?, stream_mode}. */
  streamRun: (threadId, body, signal) => stream("POST", `/threads/${enc(threadId)}/runs/stream`, { body, signal }),
  /** Join a run started elsewhere (its own stream modes). */
  joinRun: (threadId, runId, signal) => stream("GET", `/threads/${enc(threadId)}/runs/${enc(runId)}/stream`, { signal }),

  operations: () => call("GET", "/operations"),
};

/** The stream modes a run started from the console asks for. */
export const STREAM_MODES = ["values", "updates", "messages-tuple", "custom", "tasks"];
