// The console's shell: the navigation, the credential box and the hash router
// (#/graphs/<assistant>, #/threads?status=…, #/threads/<id>, #/inbox, #/operations).

import { api, credential, setCredential } from "./api.js";
import { h, mount } from "./dom.js";
import * as graphs from "./pages/graphs.js";
import * as inbox from "./pages/inbox.js";
import * as operations from "./pages/operations.js";
import * as thread from "./pages/thread.js";
import * as threads from "./pages/threads.js";

const routes = [
  [/^#?\/?$/, graphs, () => ({})],
  [/^#\/graphs\/?$/, graphs, () => ({})],
  [/^#\/graphs\/(.+)$/, graphs, (m) => ({ assistantId: decodeURIComponent(m[1]) })],
  [/^#\/threads\/?$/, threads, () => ({})],
  [/^#\/threads\/([^/?]+)$/, thread, (m) => ({ threadId: decodeURIComponent(m[1]) })],
  [/^#\/inbox\/?$/, inbox, () => ({})],
  [/^#\/operations\/?$/, operations, () => ({})],
];

const main = document.getElementById("main");
let cleanup = null;

function splitHash() {
  const hash = location.hash || "#/";
  const q = hash.indexOf("?");
  return q < 0 ? [hash, new URLSearchParams()] : [hash.slice(0, q), new URLSearchParams(hash.slice(q + 1))];
}

async function route() {
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  const [path, query] = splitHash();
  for (const a of document.querySelectorAll("nav.top a[data-section]")) {
    a.classList.toggle("current", path.startsWith(`#/${a.dataset.section}`) || (a.dataset.section === "graphs" && /^#?\/?$/.test(path)));
  }
  for (const [pattern, page, params] of routes) {
    const m = path.match(pattern);
    if (m) {
      mount(main, h("p.loading", {}, "Loading…"));
      try {
        cleanup = await page.render(main, { ...params(m), query });
      } catch (err) {
        mount(main, h("div.error", { role: "alert" }, `${err.status ? err.status + ": " : ""}${err.message || err}`));
      }
      return;
    }
  }
  mount(main, h("p", {}, "No such page. "), h("a", { href: "#/" }, "Back to the graphs"));
}

function credentialBox() {
  const dialog = document.getElementById("credential");
  const header = dialog.querySelector("select[name=header]");
  const value = dialog.querySelector("input[name=value]");
  const state = document.getElementById("credential-state");
  const show = () => {
    const cred = credential();
    state.textContent = cred ? `${cred.header === "X-Api-Key" ? "API key" : "token"} set` : "no credential";
  };
  document.getElementById("credential-open").addEventListener("click", () => {
    const cred = credential();
    header.value = cred ? cred.header : "Authorization";
    value.value = "";
    dialog.showModal();
  });
  dialog.querySelector("form").addEventListener("submit", (event) => {
    const button = event.submitter;
    if (button && button.value === "save") {
      const raw = value.value.trim();
      const val = header.value === "Authorization" && raw && !/^\w+ /.test(raw) ? `Bearer ${raw}` : raw;
      setCredential(header.value, val);
    } else if (button && button.value === "forget") {
      setCredential(null, null);
    }
    show();
    if (button && button.value !== "cancel") route();
  });
  show();
}

async function serverName() {
  try {
    const info = await api.info();
    document.getElementById("server").textContent = `treadle ${info.version || ""}`;
  } catch {
    /* /info may need a credential */
  }
}

credentialBox();
serverName();
window.addEventListener("hashchange", route);
route();
