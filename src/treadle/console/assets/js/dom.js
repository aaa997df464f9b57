// Small DOM helpers. Everything from the API is user data: it goes into the page as text
// (textContent, attribute values), never as HTML.

/** h("div.card", {onclick, title}, child, "text", [more]) -> HTMLElement */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Pretty JSON in a <pre>, folded when long. */
export function jsonBlock(value, { open = true, label = null } = {}) {
  const text = value === undefined ? "undefined" : JSON.stringify(value, null, 2);
  const pre = h("pre.json", {}, text);
  if (!label) return pre;
  const details = h("details.json-fold", { open: open || undefined }, h("summary", {}, label), pre);
  return details;
}

export function when(ts) {
  if (ts === null || ts === undefined || ts === "") return "";
  const date = typeof ts === "number" ? new Date(ts * 1000) : new Date(ts);
  if (Number.isNaN(date.getTime())) return String(ts);
  return date.toLocaleString();
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function badge(status) {
  return h(`span.badge.status-${String(status || "none").replace(/[^a-z_-]/gi, "")}`, {}, status || "–");
}

/** An error line for a failed call (ApiError or anything thrown). */
export function errorBox(err) {
  const status = err && err.status ? `${err.status}: ` : "";
  return h("div.error", { role: "alert" }, status + (err && err.message ? err.message : String(err)));
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function parseJson(text, what) {
  try {
    return text.trim() === "" ? null : JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e.message}`);
  }
}

/** A random UUID (version 4); crypto.randomUUID needs a secure context, this does not. */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
