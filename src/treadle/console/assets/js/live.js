// A run, live: its stream (values, updates, messages as tokens, custom, tasks) as it comes,
// the running node(s) highlighted on the graph, a cancel button. Used for runs started
// from the console and for runs joined (started elsewhere: then the stream has the modes
// the run was created with; without "tasks" the running nodes come from the thread's
// state, read after each step).

import { api } from "./api.js";
import { badge, errorBox, h, mount } from "./dom.js";

export function livePanel(container, { threadId, graphView, onEnd }) {
  const status = h("span.live-status", {}, badge("starting"));
  const runLabel = h("code.run-id", {}, "");
  const cancelBtn = h("button.danger", { type: "button", disabled: true, "data-action": "cancel" }, "Cancel run");
  const messages = h("div.messages", { "aria-live": "polite" });
  const updates = h("ol.updates");
  const custom = h("ol.custom");
  const values = h("pre.json.values", {}, "");
  const problems = h("div.problems");
  const running = h("span.running-nodes", {}, "");
  const panel = h("section.live", { "data-testid": "live" },
    h("header.live-head", {}, h("strong", {}, "Run "), runLabel, " ", status, " ", running, cancelBtn),
    problems,
    h("div.live-grid", {},
      h("div", {}, h("h4", {}, "Messages"), messages),
      h("div", {}, h("h4", {}, "Updates"), updates),
      h("div", {}, h("h4", {}, "Custom"), custom),
      h("div", {}, h("h4", {}, "Values"), values)));
  mount(container, panel);

  const controller = new AbortController();
  let runId = null;
  const active = new Map(); // task id -> node name
  let sawTasks = false;
  const messageBoxes = new Map();

  function setRunning(names) {
    running.textContent = names.length ? `running: ${names.join(", ")}` : "";
    if (graphView) graphView.highlight(names);
  }

  async function pollNext() {
    if (sawTasks) return;
    try {
      const state = await api.state(threadId);
      if (!sawTasks) setRunning(state.next || []);
    } catch { /* the stream shows errors */ }
  }

  function onMessage(data) {
    const [chunk, meta] = Array.isArray(data) ? data : [data, {}];
    if (!chunk || typeof chunk !== "object") return;
    const key = chunk.id || `m${messageBoxes.size}`;
    let box = messageBoxes.get(key);
    if (!box) {
      box = h("div.message", { "data-type": chunk.type || "" },
        h("span.who", {}, `${(meta && meta.langgraph_node) || chunk.type || "message"}: `), h("span.text", {}, ""));
      messageBoxes.set(key, box);
      messages.append(box);
    }
    const text = typeof chunk.content === "string" ? chunk.content
      : Array.isArray(chunk.content) ? chunk.content.map((c) => (typeof c === "string" ? c : c.text || "")).join("") : "";
    const span = box.querySelector(".text");
    if (String(chunk.type || "").endsWith("Chunk") || String(chunk.type || "").endsWith("_chunk")) span.textContent += text;
    else span.textContent = text || span.textContent;
  }

  function handle(event) {
    const mode = String(event.event).split("|")[0];
    const data = event.data;
    if (mode === "metadata" && data && data.run_id) {
      runId = data.run_id;
      runLabel.textContent = runId;
      cancelBtn.disabled = false;
      mount(status, badge("running"));
      pollNext();
    } else if (mode === "values") {
      values.textContent = JSON.stringify(data, null, 2);
    } else if (mode === "updates") {
      for (const [node, update] of Object.entries(data || {})) {
        updates.append(h("li", { "data-node": node }, h("details", {}, h("summary", {}, h("strong", {}, node)),
          h("pre.json", {}, JSON.stringify(update, null, 2)))));
      }
      pollNext();
    } else if (mode === "messages") {
      onMessage(data);
    } else if (mode === "custom") {
      custom.append(h("li", {}, h("pre.json", {}, JSON.stringify(data, null, 2))));
    } else if (mode === "tasks") {
      sawTasks = true;
      if (data && data.id) {
        if ("result" in data || "error" in data) {
          active.delete(data.id);
          if (graphView && data.name) graphView.mark(data.name, data.error ? "error" : (data.interrupts || []).length ? "interrupted" : "done");
          if (data.error) problems.append(errorBox(new Error(`${data.name}: ${data.error}`)));
        } else {
          active.set(data.id, data.name);
        }
        setRunning([...new Set(active.values())]);
      }
    } else if (mode === "error") {
      problems.append(errorBox(new Error(typeof data === "string" ? data : data.message || JSON.stringify(data))));
    }
  }

  cancelBtn.addEventListener("click", async () => {
    if (!runId) return;
    cancelBtn.disabled = true;
    try {
      await api.cancelRun(threadId, runId);
    } catch (err) {
      problems.append(errorBox(err));
      cancelBtn.disabled = false;
    }
  });

  async function follow(events) {
    try {
      for await (const event of events) handle(event);
    } catch (err) {
      if (err.name !== "AbortError") problems.append(errorBox(err));
    }
    // Stopped (another run followed in its place, or the page left): the new panel owns the
    // graph's highlight now, and this run's end is not the page's business.
    if (controller.signal.aborted) return null;
    setRunning([]);
    cancelBtn.disabled = true;
    let run = null;
    if (runId) {
      try {
        run = (await api.runs(threadId, 20)).find((r) => r.run_id === runId) || null;
      } catch { /* shown as unknown */ }
    }
    mount(status, badge(run ? run.status : "ended"));
    panel.dataset.status = run ? run.status : "ended";
    if (onEnd) onEnd(run);
    return run;
  }

  return {
    panel,
    /** Start a run with `body` and follow it. */
    start: (body) => follow(api.streamRun(threadId, body, controller.signal)),
    /** Follow a run started elsewhere. */
    join: (id) => {
      runId = id;
      runLabel.textContent = id;
      cancelBtn.disabled = false;
      mount(status, badge("running"));
      pollNext();
      return follow(api.joinRun(threadId, id, controller.signal));
    },
    stop: () => controller.abort(),
  };
}
