// Threads: search by status, graph and metadata, newest activity first, a page at a time.

import { api } from "../api.js";
import { badge, errorBox, h, mount, parseJson, shortId, when } from "../dom.js";
import { threadInterrupts } from "../interrupts.js";

const PAGE = 25;

export async function render(main, { query }) {
  const status = query.get("status") || "";
  const graph = query.get("graph") || "";
  const metadataText = query.get("metadata") || "";
  const page = Math.max(0, Number(query.get("page") || 0));
  const assistants = await api.assistants().catch(() => []);
  const graphIds = [...new Set(assistants.map((a) => a.graph_id))];
  const form = h("form.filters", { "data-testid": "thread-filters" },
    h("label", {}, "Status ", h("select", { name: "status" },
      ["", "idle", "busy", "interrupted", "error"].map((s) => h("option", { value: s, selected: s === status || undefined }, s || "any")))),
    h("label", {}, "Graph ", h("select", { name: "graph" },
      h("option", { value: "" }, "any"), graphIds.map((g) => h("option", { value: g, selected: g === graph || undefined }, g)))),
    h("label.grow", {}, "Metadata ", h("input", { name: "metadata", value: metadataText, placeholder: '{"user": "ada"}' })),
    h("button.primary", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const key of ["status", "graph", "metadata"]) if (data.get(key)) q.set(key, data.get(key));
    location.hash = `#/threads?${q}`;
  });
  const results = h("div");
  mount(main, h("h2", {}, "Threads"), form, results);
  let metadata;
  try {
    metadata = parseJson(metadataText, "the metadata filter") || {};
  } catch (err) {
    mount(results, errorBox(err));
    return null;
  }
  if (graph) metadata = { ...metadata, graph_id: graph };
  const filter = { status, metadata: Object.keys(metadata).length ? metadata : undefined };
  const [found, total] = await Promise.all([
    api.searchThreads({ ...filter, limit: PAGE, offset: page * PAGE }),
    api.countThreads(filter).catch(() => null),
  ]);
  const rows = found.map((t) => h("tr", { "data-thread": t.thread_id },
    h("td", {}, h("a", { href: `#/threads/${encodeURIComponent(t.thread_id)}`, title: t.thread_id }, h("code", {}, shortId(t.thread_id)))),
    h("td", {}, badge(t.status)),
    h("td", {}, (t.metadata || {}).graph_id || ""),
    h("td", {}, threadInterrupts(t).length || ""),
    h("td", {}, when(t.updated_at)),
    h("td.meta", {}, JSON.stringify(t.metadata || {}))));
  const nav = (p, text) => {
    const q = new URLSearchParams(query);
    q.set("page", String(p));
    return h("a.button", { href: `#/threads?${q}` }, text);
  };
  mount(results,
    h("p.muted", {}, total === null ? "" : `${total} thread(s)`, total !== null && total > PAGE ? ` · page ${page + 1} of ${Math.ceil(total / PAGE)}` : ""),
    found.length ? h("table.list", {}, h("thead", {}, h("tr", {}, ["thread", "status", "graph", "interrupts", "updated", "metadata"].map((c) => h("th", {}, c)))), h("tbody", {}, rows))
      : h("p", {}, "No thread matches."),
    h("div.pager", {}, page > 0 ? nav(page - 1, "← newer") : null, found.length === PAGE ? nav(page + 1, "older →") : null));
  return null;
}
