// A pending interrupt and what a person can do about it: approve, reject, edit the resume
// value, or edit the thread's state first. Conventions (docs/console.md):
//  - an interrupt whose value has `action_requests` (LangChain's human-in-the-loop
//    middleware) is answered with `{"decisions": [...]}`: one {"type": "approve"} or
//    {"type": "reject", "message"} per request;
//  - any other interrupt: approve resumes with `true`, reject with `false` (LangGraph's
//    approve-or-reject pattern); "Resume with…" sends the JSON typed in the box.
// The server decides who may: with built-in auth, resuming needs the approver role; a
// refusal is shown on the card and the thread keeps waiting.

import { api, STREAM_MODES } from "./api.js";
import { errorBox, h, jsonBlock, parseJson } from "./dom.js";

function isActionRequest(value) {
  return value && typeof value === "object" && Array.isArray(value.action_requests);
}

function approveValue(value) {
  return isActionRequest(value) ? { decisions: value.action_requests.map(() => ({ type: "approve" })) } : true;
}

function rejectValue(value, message) {
  return isActionRequest(value)
    ? { decisions: value.action_requests.map(() => ({ type: "reject", message: message || "rejected" })) }
    : false;
}

/** The run body that resumes `interrupt` of `thread` with `value`. */
function resumeBody(thread, interrupt, value, pendingCount) {
  const md = thread.metadata || {};
  const resume = pendingCount > 1 && interrupt.id ? { [interrupt.id]: value } : value;
  return { assistant_id: md.assistant_id || md.graph_id, command: { resume }, stream_mode: STREAM_MODES };
}

/** A card for `interrupt`; `onResume(body)` starts the run (it may throw an ApiError). */
export function interruptCard(thread, interrupt, pendingCount, onResume) {
  const problems = h("div.problems");
  const box = h("textarea.mono", { rows: 3, name: "resume", "aria-label": "resume value (JSON)" },
    JSON.stringify(approveValue(interrupt.value), null, 2));
  const stateBox = h("textarea.mono", { rows: 6, name: "state", "aria-label": "state values (JSON)", hidden: true });
  const buttons = [];
  async function act(fn) {
    problems.replaceChildren();
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await fn();
    } catch (err) {
      problems.append(errorBox(err));
      if (err.status === 403) {
        problems.append(h("p.muted", {}, "The server refused: your credential may not resume this thread "
          + "(with built-in auth, resuming needs the approver role). The thread keeps waiting."));
      }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
  const resume = (value) => act(() => onResume(resumeBody(thread, interrupt, value, pendingCount)));
  const approve = h("button.primary", { type: "button", "data-action": "approve" }, "Approve");
  approve.addEventListener("click", () => resume(approveValue(interrupt.value)));
  const reject = h("button.danger", { type: "button", "data-action": "reject" }, "Reject");
  reject.addEventListener("click", () => resume(rejectValue(interrupt.value)));
  const custom = h("button", { type: "button", "data-action": "resume" }, "Resume with this value");
  custom.addEventListener("click", () => act(async () => onResume(resumeBody(thread, interrupt, parseJson(box.value, "the resume value"), pendingCount))));
  const editState = h("button", { type: "button", "data-action": "edit-state" }, "Edit state…");
  const saveState = h("button", { type: "button", "data-action": "save-state", hidden: true }, "Save state");
  editState.addEventListener("click", () => act(async () => {
    const state = await api.state(thread.thread_id);
    stateBox.value = JSON.stringify(state.values, null, 2);
    stateBox.hidden = false;
    saveState.hidden = false;
  }));
  saveState.addEventListener("click", () => act(async () => {
    await api.updateState(thread.thread_id, { values: parseJson(stateBox.value, "the state") });
    stateBox.hidden = true;
    saveState.hidden = true;
    problems.append(h("div.ok", {}, "State saved: approve or resume to go on."));
  }));
  buttons.push(approve, reject, custom, editState, saveState);
  return h("div.interrupt", { "data-interrupt": interrupt.id || "" },
    jsonBlock(interrupt.value, { label: "Interrupt value", open: true }),
    h("div.actions", {}, approve, reject, custom, editState),
    h("details", {}, h("summary", {}, "Resume value (JSON)"), box),
    stateBox, saveState, problems);
}

/** The interrupts of a thread object (its `interrupts`: {task id: [interrupt, ...]}). */
export function threadInterrupts(thread) {
  const map = thread.interrupts || {};
  return Object.values(map).flat().filter(Boolean);
}
