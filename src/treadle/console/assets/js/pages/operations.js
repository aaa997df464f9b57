// Operations: the queue (depth, oldest pending age), runs by status, the live workers and
// their slots, and runs taken back from lost workers (failovers), from GET /operations
// (the same store reads as /metrics), refreshed every few seconds.

import { api } from "../api.js";
import { ago, badge, errorBox, h, mount, shortId, when } from "../dom.js";

const EVERY_MS = 3000;

function stat(label, value, testid) {
  return h("div.stat", { "data-stat": testid }, h("div.value", {}, value), h("div.label", {}, label));
}

function workersTable(ops) {
  const workers = ops.workers || [];
  if (!workers.length) return h("p.muted", {}, "No live worker.");
  const head = ["worker", "graphs", "slots", "running", "last heartbeat", "up since"];
  const rows = workers.map((w) => h("tr", {},
    h("td", {}, h("code", {}, w.name)),
    h("td", {}, (w.graphs || []).join(", ") + (w.allow_pickled ? " + pickled" : "")),
    h("td.num", {}, String(w.slots)),
    h("td.num", {}, String(w.running)),
    h("td", {}, `${ago((ops.generated_at || 0) - (w.heartbeat_at || 0))} ago`),
    h("td", {}, when(w.started_at))));
  return h("table.list", { "data-testid": "workers" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows));
}

function show(box, ops) {
  const q = ops.queue || {};
  const slots = (ops.workers || []).reduce((n, w) => n + (w.slots || 0), 0);
  const busy = (ops.workers || []).reduce((n, w) => n + (w.running || 0), 0);
  mount(box,
    h("div.stats", {},
      stat("runs waiting (queue depth)", String(q.pending ?? "–"), "pending"),
      stat("oldest waiting", ago(q.oldest_pending_age), "oldest"),
      stat("runs running", String(q.running ?? "–"), "running"),
      stat("workers", String((ops.workers || []).length), "workers"),
      stat("slots busy / total", `${busy} / ${slots}`, "slots")),
    h("div.split", {},
      h("section", {}, h("h3", {}, "Runs by status"),
        h("table.list", { "data-testid": "runs-by-status" }, h("tbody", {}, Object.entries(ops.runs_by_status || {}).map(([s, n]) =>
          h("tr", { "data-status": s }, h("td", {}, badge(s)), h("td.num", {}, String(n))))))),
      h("section.grow", {}, h("h3", {}, "Workers"), workersTable(ops))),
    h("h3", {}, `Failovers (runs taken back from a lost worker: ${ops.failovers_total ?? 0})`),
    (ops.failovers || []).length ? h("table.list", { "data-testid": "failovers" },
      h("thead", {}, h("tr", {}, ["run", "thread", "graph", "status", "losses", "last worker", "created"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ops.failovers.map((f) => h("tr", {},
        h("td", {}, h("code", { title: f.run_id }, shortId(f.run_id))),
        h("td", {}, h("a", { href: `#/threads/${encodeURIComponent(f.thread_id)}` }, h("code", {}, shortId(f.thread_id)))),
        h("td", {}, f.graph_id || ""), h("td", {}, badge(f.status)), h("td.num", {}, String(f.lost)),
        h("td", {}, f.worker || ""), h("td", {}, when(f.created_at))))))
      : h("p.muted", {}, "None."),
    h("p.muted", {}, `Read ${when(ops.generated_at)}. Per-thread storage is on each thread's page.`));
}

export async function render(main) {
  const box = h("div.ops", { "data-testid": "operations" });
  mount(main, h("h2", {}, "Operations"), box);
  let timer = null;
  let stopped = false;
  async function tick() {
    try {
      show(box, await api.operations());
    } catch (err) {
      mount(box, errorBox(err));
    }
    if (!stopped) timer = setTimeout(tick, EVERY_MS);
  }
  await tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
