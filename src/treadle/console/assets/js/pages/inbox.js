// Approvals: every interrupted thread's pending interrupts, with approve / reject / edit.
// A resume starts the run here (a refusal shows on the card), then the thread's page
// streams it.

import { api } from "../api.js";
import { h, mount, shortId, when } from "../dom.js";
import { interruptCard, threadInterrupts } from "../interrupts.js";
import { handOff } from "../session.js";

const PAGE = 20;

export async function render(main, { query }) {
  const page = Math.max(0, Number(query.get("page") || 0));
  const found = await api.searchThreads({ status: "interrupted", limit: PAGE, offset: page * PAGE });
  const cards = found.map((thread) => {
    const pending = threadInterrupts(thread);
    return h("article.card.inbox-item", { "data-thread": thread.thread_id },
      h("header", {}, h("a", { href: `#/threads/${encodeURIComponent(thread.thread_id)}` }, h("code", {}, shortId(thread.thread_id))),
        h("span.muted", {}, ` ${(thread.metadata || {}).graph_id || ""} · waiting since ${when(thread.updated_at)}`)),
      pending.length ? pending.map((i) => interruptCard(thread, i, pending.length, async (body) => {
        const run = await api.createRun(thread.thread_id, body);  // a refusal shows on the card
        handOff(thread.thread_id, run.run_id);
        location.hash = `#/threads/${encodeURIComponent(thread.thread_id)}`;
      })) : h("p.muted", {}, "Interrupted before a node (interrupt_before): open the thread to go on."));
  });
  const q = (p) => `#/inbox?page=${p}`;
  mount(main, h("h2", {}, "Approvals"),
    h("p.muted", {}, "Threads waiting for a person (status interrupted), most recent first."),
    cards.length ? cards : h("p", { "data-testid": "inbox-empty" }, "Nothing is waiting."),
    h("div.pager", {}, page > 0 ? h("a.button", { href: q(page - 1) }, "← newer") : null,
      found.length === PAGE ? h("a.button", { href: q(page + 1) }, "older →") : null));
  return null;
}
