// An input form built from a graph's input JSON schema (GET /assistants/{id}/schemas):
// one field per top-level property (text, number, checkbox, a choice for enums, JSON for
// the rest; a chat box for a `messages` list), and a switch to edit the whole input as JSON.

import { h, parseJson } from "./dom.js";

function resolve(schema, root) {
  if (schema && schema.$ref && root) {
    const name = schema.$ref.split("/").pop();
    return (root.$defs || root.definitions || {})[name] || schema;
  }
  if (schema && Array.isArray(schema.anyOf)) {
    const concrete = schema.anyOf.filter((s) => s.type !== "null");
    if (concrete.length === 1) return resolve(concrete[0], root);
  }
  return schema || {};
}

function kind(name, schema) {
  if (name === "messages") return "messages";
  if (Array.isArray(schema.enum)) return "enum";
  return { string: "string", integer: "number", number: "number", boolean: "boolean" }[schema.type] || "json";
}

/** buildForm(inputSchema) -> {element, value(): the input object (throws on bad JSON)} */
export function buildForm(inputSchema) {
  const root = inputSchema || {};
  const props = root.properties || {};
  const required = new Set(root.required || []);
  const fields = [];
  const grid = h("div.form-grid");
  for (const [name, raw] of Object.entries(props)) {
    const schema = resolve(raw, root);
    const k = kind(name, schema);
    const id = `field-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    let input;
    if (k === "string") input = h("input", { id, type: "text", name, placeholder: schema.description || "" });
    else if (k === "number") input = h("input", { id, type: "number", name, step: schema.type === "integer" ? "1" : "any" });
    else if (k === "boolean") input = h("input", { id, type: "checkbox", name });
    else if (k === "enum") input = h("select", { id, name }, h("option", { value: "" }, "–"), schema.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    else if (k === "messages") input = h("textarea", { id, name, rows: 2, placeholder: "A message from the user" });
    else input = h("textarea.mono", { id, name, rows: 2, placeholder: "JSON" });
    fields.push({ name, k, input });
    grid.append(h("label", { for: id }, name, required.has(name) ? " *" : "", h("span.hint", {}, k === "json" ? " (JSON)" : k === "messages" ? " (a user message)" : "")), input);
  }
  const raw = h("textarea.mono.raw-input", { rows: 6, name: "__raw__", placeholder: "{}", hidden: true });
  const toggle = h("input", { type: "checkbox", name: "__as_json__" });
  toggle.addEventListener("change", () => {
    if (toggle.checked) {
      try { raw.value = JSON.stringify(fromFields(), null, 2); } catch { raw.value = "{}"; }
    }
    raw.hidden = !toggle.checked;
    grid.hidden = toggle.checked;
  });
  function fromFields() {
    const value = {};
    for (const { name, k, input } of fields) {
      if (k === "boolean") { if (input.checked) value[name] = true; continue; }
      const text = input.value;
      if (text === "") continue;
      if (k === "string") value[name] = text;
      else if (k === "number") value[name] = Number(text);
      else if (k === "enum") value[name] = JSON.parse(text);
      else if (k === "messages") value[name] = [{ role: "user", content: text }];
      else value[name] = parseJson(text, name);
    }
    return value;
  }
  if (!fields.length) { toggle.checked = true; raw.hidden = false; grid.hidden = true; }
  const element = h("div.run-form", {}, grid, h("label.inline", {}, toggle, " edit the input as JSON"), raw);
  return {
    element,
    value: () => (toggle.checked ? parseJson(raw.value || "{}", "the input") : fromFields()),
  };
}
