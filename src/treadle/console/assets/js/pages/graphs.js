// Graphs: every assistant, its graph drawn from GET /assistants/{id}/graph (xray: subgraphs
// as clusters), its schemas, and a form that starts a run on a new thread.

import { api, STREAM_MODES } from "../api.js";
import { errorBox, h, jsonBlock, mount, uuid } from "../dom.js";
import { buildForm } from "../form.js";
import { drawGraph } from "../graph.js";
import { handOff } from "../session.js";

export async function render(main, { assistantId }) {
  const assistants = await api.assistants();
  if (!assistants.length) {
    mount(main, h("p", {}, "This server has no assistants: add graphs to langgraph.json."));
    return null;
  }
  const current = assistants.find((a) => a.assistant_id === assistantId || a.graph_id === assistantId) || assistants[0];
  const list = h("ul.side-list", {}, assistants.map((a) => h("li", { class: a === current ? "current" : "" },
    h("a", { href: `#/graphs/${encodeURIComponent(a.assistant_id)}` }, a.name || a.graph_id),
    h("span.muted", {}, ` ${a.graph_id}`))));
  const drawing = h("div.graph-box", { "data-testid": "graph" });
  const schemaBox = h("div.schemas");
  const formBox = h("div");
  mount(main, h("div.split", {},
    h("aside", {}, h("h3", {}, "Assistants"), list),
    h("section.grow", {},
      h("h2", {}, current.name || current.graph_id, h("span.muted", {}, `  graph ${current.graph_id} · assistant ${current.assistant_id}`)),
      current.description ? h("p", {}, current.description) : null,
      drawing,
      h("h3", {}, "Start a run"), formBox,
      h("h3", {}, "Schemas"), schemaBox)));
  const [graph, schemas] = await Promise.all([
    api.graph(current.assistant_id).catch((err) => ({ error: err })),
    api.schemas(current.assistant_id).catch((err) => ({ error: err })),
  ]);
  if (graph.error) mount(drawing, errorBox(graph.error));
  else drawGraph(drawing, graph);
  if (schemas.error) {
    mount(schemaBox, errorBox(schemas.error));
    mount(formBox, errorBox(schemas.error));
    return null;
  }
  mount(schemaBox,
    jsonBlock(schemas.input_schema, { label: "Input schema", open: false }),
    jsonBlock(schemas.output_schema, { label: "Output schema", open: false }),
    jsonBlock(schemas.config_schema, { label: "Config schema", open: false }),
    schemas.context_schema ? jsonBlock(schemas.context_schema, { label: "Context schema", open: false }) : null,
    jsonBlock(schemas.state_schema, { label: "State schema", open: false }));
  const form = buildForm(schemas.input_schema);
  const problems = h("div.problems");
  const start = h("button.primary", { type: "submit", "data-action": "start-run" }, "Start run");
  const element = h("form.start", {}, form.element, h("div.actions", {}, start), problems);
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    problems.replaceChildren();
    start.disabled = true;
    try {
      const input = form.value();
      // A new thread made with its first run: bad input leaves no empty thread behind.
      const threadId = uuid();
      const run = await api.createRun(threadId, { assistant_id: current.assistant_id, input,
        stream_mode: STREAM_MODES, if_not_exists: "create" });
      handOff(threadId, run.run_id);
      location.hash = `#/threads/${encodeURIComponent(threadId)}`;
    } catch (err) {
      problems.append(errorBox(err));
      start.disabled = false;
    }
  });
  mount(formBox, element);
  return null;
}
