// A thread: its status, graph (the running node highlighted while a run streams), pending
// interrupts, runs (watch / cancel), a form for a new run, the state now, its storage, and
// the history timeline.

import { api, STREAM_MODES } from "../api.js";
import { badge, bytes, errorBox, h, jsonBlock, mount, shortId, when } from "../dom.js";
import { buildForm } from "../form.js";
import { drawGraph } from "../graph.js";
import { interruptCard, threadInterrupts } from "../interrupts.js";
import { livePanel } from "../live.js";
import { takeHandOff } from "../session.js";
import { timeline } from "../timeline.js";

export async function render(main, { threadId }) {
  const handed = takeHandOff(threadId);
  const thread = await api.thread(threadId);
  const md = thread.metadata || {};
  const assistantId = md.assistant_id || md.graph_id;
  const head = h("div.thread-head");
  const graphBox = h("div.graph-box", { "data-testid": "graph" });
  const liveBox = h("div.live-box");
  const interruptsBox = h("div.interrupts-box", { "data-testid": "interrupts" });
  const runsBox = h("div.runs-box");
  const formBox = h("div");
  const stateBox = h("div");
  const storageBox = h("div.storage");
  const historyBox = h("div");
  mount(main,
    head,
    h("div.split.thread", {},
      h("section.grow", {}, graphBox, h("h3", {}, "State now"), stateBox),
      h("section.side", {}, interruptsBox, liveBox, h("h3", {}, "Runs"), runsBox,
        h("h3", {}, "New run on this thread"), formBox, h("h3", {}, "Storage"), storageBox)),
    h("h3", {}, "History"), historyBox);

  let graphView = null;
  let live = null;
  let alive = true;

  async function refresh() {
    const [t, state] = await Promise.all([api.thread(threadId), api.state(threadId).catch(() => null)]);
    mount(head, h("h2", {}, "Thread ", h("code", { title: t.thread_id }, t.thread_id), " ", badge(t.status)),
      h("p.muted", {}, `graph ${(t.metadata || {}).graph_id || "–"} · created ${when(t.created_at)} · updated ${when(t.updated_at)}`),
      jsonBlock(t.metadata || {}, { label: "metadata", open: false }));
    if (state) {
      mount(stateBox, (state.next || []).length ? h("p", {}, "next: ", h("strong.next", {}, state.next.join(", "))) : null,
        jsonBlock(state.values));
      if (graphView && !live) {
        graphView.clear();
        for (const task of state.tasks || []) graphView.mark(task.name, (task.interrupts || []).length ? "interrupted" : task.error ? "error" : null);
      }
    }
    const pending = threadInterrupts(t);
    mount(interruptsBox, pending.length ? [h("h3", {}, "Waiting for you"), pending.map((i) => interruptCard(t, i, pending.length, resume))] : null);
    const runs = await api.runs(threadId, 20).catch(() => []);
    mount(runsBox, runs.length ? h("table.list.runs", {}, h("tbody", {}, runs.map((r) => h("tr", { "data-run": r.run_id },
      h("td", {}, h("code", { title: r.run_id }, shortId(r.run_id))), h("td", {}, badge(r.status)), h("td.muted", {}, when(r.created_at)),
      h("td", {}, ["pending", "running"].includes(r.status) ? [
        h("button", { type: "button", "data-action": "watch", onclick: () => watch(r.run_id) }, "Watch"),
        h("button.danger", { type: "button", "data-action": "cancel", onclick: () => api.cancelRun(threadId, r.run_id).then(refresh, (e) => runsBox.prepend(errorBox(e))) }, "Cancel"),
      ] : null))))) : h("p.muted", {}, "No runs yet."));
    api.storage(threadId).then((s) => mount(storageBox,
      h("p", {}, h("strong", {}, bytes(s.bytes)), ` in the store · ${s.checkpoints} checkpoint(s)`),
      h("table.list", {}, h("tbody", {}, Object.entries(s.tables || {}).map(([name, t]) =>
        h("tr", {}, h("td", {}, name), h("td", {}, `${t.rows} rows`), h("td", {}, bytes(t.bytes))))))),
    (e) => mount(storageBox, errorBox(e)));
  }

  function ended() {
    live = null;
    if (!alive) return;
    refresh().catch((err) => head.append(errorBox(err)));
    mount(historyBox);
    timeline(historyBox, threadId, { assistantId, onRun: follow });
  }

  /** A new live panel in place of the current one (which stops). */
  function panel() {
    if (live) live.stop();
    const made = livePanel(liveBox, { threadId, graphView, onEnd: () => { if (live === made) ended(); } });
    live = made;
    return made;
  }

  function follow(body) {
    return panel().start(body);
  }

  /** An approval: the run is queued here, so a refusal (403) shows on its card. */
  async function resume(body) {
    const run = await api.createRun(threadId, body);
    watch(run.run_id);
  }

  function watch(runId) {
    return panel().join(runId);
  }

  if (assistantId) {
    try {
      graphView = drawGraph(graphBox, await api.graph(assistantId));
    } catch (err) {
      mount(graphBox, errorBox(err));
    }
    api.schemas(assistantId).then((schemas) => {
      const form = buildForm(schemas.input_schema);
      const problems = h("div.problems");
      const element = h("form.start", {}, form.element, h("div.actions", {}, h("button.primary", { type: "submit", "data-action": "start-run" }, "Run")), problems);
      element.addEventListener("submit", (event) => {
        event.preventDefault();
        problems.replaceChildren();
        try {
          follow({ assistant_id: assistantId, input: form.value(), stream_mode: STREAM_MODES });
        } catch (err) {
          problems.append(errorBox(err));
        }
      });
      mount(formBox, element);
    }, (err) => mount(formBox, errorBox(err)));
  } else {
    mount(graphBox, h("p.muted", {}, "This thread has no graph yet (no run)."));
  }
  await refresh();
  if (handed) watch(handed);
  else {
    const active = (await api.runs(threadId, 5).catch(() => [])).find((r) => ["pending", "running"].includes(r.status));
    if (active) watch(active.run_id);
  }
  timeline(historyBox, threadId, { assistantId, onRun: follow });
  return () => {
    alive = false;
    if (live) live.stop();
  };
}
