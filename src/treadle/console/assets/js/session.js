// A run just started on one page, for the next page shown to join and stream (a form on
// the graphs page or an approval starts it; the thread's page follows it). In memory only.

let pending = null;

export function handOff(threadId, runId) {
  pending = { threadId, runId };
}

/** The run handed to `threadId`'s page, once (or null). */
export function takeHandOff(threadId) {
  if (!pending || pending.threadId !== threadId) return null;
  const { runId } = pending;
  pending = null;
  return runId;
}
