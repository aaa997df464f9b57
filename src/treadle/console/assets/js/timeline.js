// A thread's history as a timeline, newest first, a page at a time (POST /history with
// `before`): for each checkpoint, the step, what made it (the tasks of the checkpoint
// before it, with their errors and interrupts) and the diff of the state it made; replay
// from it (a run from that checkpoint) or fork it (edit its state: a new checkpoint on a
// branch, then run from there).

import { api } from "./api.js";
import { diff, pathText } from "./diff.js";
import { badge, errorBox, h, jsonBlock, mount, parseJson, shortId, when } from "./dom.js";

const PAGE = 20;

function diffTable(before, after) {
  const changes = diff(before === undefined ? {} : before, after);
  if (!changes.length) return h("p.muted.no-change", {}, "no change to the state");
  const show = (v) => (v === undefined ? "" : JSON.stringify(v, null, 1));
  return h("table.diff", {}, h("tbody", {}, changes.map((c) => h(`tr.${c.kind}`, {},
    h("td.kind", {}, c.kind === "added" ? "+" : c.kind === "removed" ? "−" : "~"),
    h("td.path", {}, pathText(c.path)),
    h("td.before", {}, h("pre", {}, show(c.before))),
    h("td.after", {}, h("pre", {}, show(c.after)))))));
}

function madeBy(parent) {
  if (!parent) return h("span.muted", {}, "the input (the first checkpoint)");
  const tasks = parent.tasks || [];
  if (!tasks.length) return h("span.muted", {}, (parent.metadata || {}).source === "update" ? "a state update" : "–");
  return tasks.map((t) => h("span.task", { "data-task": t.name, class: t.error ? "task failed" : "task" },
    t.name, t.error ? ` ✗ ${t.error}` : "", (t.interrupts || []).length ? " ⏸ interrupted" : ""));
}

/** The tasks that ran from `state` and failed (their error is stored with it). */
function failedFrom(state) {
  const failed = (state.tasks || []).filter((t) => t.error);
  if (!failed.length) return null;
  return h("div.failed-from", {}, h("span.muted", {}, "failed from here: "),
    failed.map((t) => h("span.task.failed", { "data-task": t.name }, `${t.name} ✗ ${t.error}`)));
}

/** timeline(container, threadId, {onRun(body)}): the history, paged. */
export function timeline(container, threadId, { assistantId, onRun }) {
  const list = h("ol.timeline", { "data-testid": "timeline" });
  const more = h("button", { type: "button", "data-action": "older" }, "Load older checkpoints");
  const problems = h("div.problems");
  mount(container, list, problems, more);
  let carry = null; // the newest state of the next page (the parent of this page's last)
  let cursor = null;

  function entry(state, parent) {
    const md = state.metadata || {};
    const cp = (state.checkpoint || {}).checkpoint_id;
    const replay = h("button", { type: "button", "data-action": "replay" }, "Replay from here");
    const fork = h("button", { type: "button", "data-action": "fork" }, "Fork…");
    const editor = h("div.fork", { hidden: true });
    replay.addEventListener("click", () => onRun({ assistant_id: assistantId, input: null, checkpoint_id: cp }));
    fork.addEventListener("click", () => {
      const box = h("textarea.mono", { rows: 8, name: "fork-values" }, JSON.stringify(state.values, null, 2));
      const save = h("button.primary", { type: "button", "data-action": "fork-run" }, "Save as a fork and run from it");
      const err = h("div.problems");
      save.addEventListener("click", async () => {
        err.replaceChildren();
        try {
          const made = await api.updateState(threadId, { values: parseJson(box.value, "the state"), checkpointId: cp });
          await onRun({ assistant_id: assistantId, input: null, checkpoint_id: made.checkpoint.checkpoint_id });
        } catch (e) {
          err.append(errorBox(e));
        }
      });
      mount(editor, h("p.muted", {}, "The edited values are written as a new checkpoint branching from this one; the run goes on from it."), box, save, err);
      editor.hidden = !editor.hidden;
    });
    return h("li.checkpoint", { "data-checkpoint": cp || "", "data-step": md.step },
      h("div.cp-head", {},
        h("span.step", {}, `step ${md.step ?? "?"}`), " ", badge(md.source || ""), " ",
        h("code", { title: cp }, shortId(cp)), " ", h("span.muted", {}, when(state.created_at)),
        (state.next || []).length ? h("span.next", {}, ` next: ${state.next.join(", ")}`) : null),
      h("div.made-by", {}, h("span.muted", {}, "made by "), madeBy(parent)),
      failedFrom(state),
      (state.interrupts || []).length ? jsonBlock(state.interrupts, { label: "interrupts", open: false }) : null,
      h("details.cp-diff", { open: true }, h("summary", {}, "diff"), diffTable(parent ? parent.values : undefined, state.values)),
      h("details", {}, h("summary", {}, "state"), jsonBlock(state.values)),
      h("div.actions", {}, replay, fork), editor);
  }

  async function load() {
    more.disabled = true;
    problems.replaceChildren();
    try {
      const page = await api.history(threadId, { limit: PAGE + 1, before: cursor });
      // `carry` (fetched last time, not shown yet) is the newest; one more than a page is
      // kept so the last one shown has its parent for its diff. The first not shown is
      // carried to the next page, which asks for what is older than it.
      const states = carry ? [carry, ...page] : page;
      const shown = states.slice(0, PAGE);
      shown.forEach((state, i) => list.append(entry(state, states[i + 1])));
      carry = states.length > PAGE ? states[PAGE] : null;
      cursor = carry ? carry.checkpoint.checkpoint_id : null;
      more.hidden = !carry;
    } catch (err) {
      problems.append(errorBox(err));
    }
    more.disabled = false;
  }
  more.addEventListener("click", load);
  return load();
}
