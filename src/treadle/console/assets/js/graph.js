// graph.js: draws a LangGraph graph (the JSON of GET /assistants/{id}/graph?xray=true) as SVG.
//
//   import { drawGraph } from "./graph.js";
//   const view = drawGraph(container, graphJson, { onNodeClick: (id) => ... });
//   view.highlight(["agent"]);        // the running nodes: class tg-running (their clusters too)
//   view.mark("tools", "done");       // 'done' | 'error' | 'interrupted' | null: class tg-<state>
//   view.clear();                     // no running node, no marks
//
// Loading: the layout is dagre (vendor/dagre.min.js, MIT, see vendor/README.md), whose browser
// build is a classic script that defines the global `dagre`. This module loads it itself: when
// `globalThis.dagre` is not already there, it injects <script src="../vendor/dagre.min.js">
// (resolved against import.meta.url) and waits for it with a top-level await, so importers
// need nothing else. A page may also load it first with its own <script> tag. If it cannot
// be loaded, importing still succeeds and drawGraph throws an Error saying so.
//
// Styles: the page links assets/graph.css (every class is prefixed tg-). drawGraph replaces
// the container's children with <div class="tg-graph"> (which scrolls horizontally when the
// graph is wider than the container at the smallest readable scale) holding the <svg>.
//
// Node ids and labels come from the user's graph: they only ever reach the DOM through
// textContent and setAttribute, never as markup.

const SVG_NS = "http://www.w3.org/2000/svg";
const DAGRE_URL = new URL("../vendor/dagre.min.js", import.meta.url);
const SEP = ":"; // LangGraph's namespace separator: "parent:child" with xray
const TERMINALS = { __start__: "start", __end__: "end" };
const STATES = ["done", "error", "interrupted"];

// Geometry, in SVG user units (= CSS px at scale 1). graph.css sets the same font sizes.
const NODE_H = 34;
const NODE_PAD_X = 16;
const NODE_MIN_W = 64;
const TERMINAL_H = 22;
const TERMINAL_PAD_X = 12;
const EDGE_LABEL_PAD = 4;
const CLUSTER_LABEL_H = 20; // the cluster's title band, above its members
const CLUSTER_PAD = 12;
// The drawing never scales up (scale 1 = graph.css's 13px text) and never shrinks text
// below ~10px: past that, the container scrolls horizontally instead.
const MIN_SCALE = 10 / 13;

let dagre = globalThis.dagre ?? null;
let loadError = null;
if (!dagre && typeof document !== "undefined") {
  try {
    dagre = await loadClassicScript(DAGRE_URL, "dagre");
  } catch (err) {
    loadError = err;
    console.error(err.message);
  }
}

function loadClassicScript(url, globalName) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url.href;
    script.async = true;
    script.onload = () => {
      const lib = globalThis[globalName];
      if (lib) resolve(lib);
      else reject(new Error(`graph.js: ${url.href} loaded but defined no ${globalName}`));
    };
    script.onerror = () => reject(new Error(`graph.js: could not load the layout library ${url.href}`));
    document.head.append(script);
  });
}

let drawings = 0; // makes marker ids unique when a page holds several graphs

function svgEl(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

/** The clusters (subgraphs) an xray id sits in, outermost first: "a:b:c" -> ["a", "a:b"]. */
function clustersOf(id) {
  const parts = id.split(SEP);
  const out = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join(SEP));
  return out;
}

function lastSegment(id) {
  const parts = id.split(SEP);
  return parts[parts.length - 1] || id;
}

/** Normalises the graph JSON: node ids in order (plus any an edge names but nodes lack). */
function readGraph(graphJson) {
  const ids = [];
  const seen = new Set();
  const add = (id) => {
    if (!seen.has(id)) {
      seen.add(id);
      ids.push(id);
    }
  };
  for (const node of graphJson?.nodes ?? []) add(String(node.id));
  const edges = (graphJson?.edges ?? []).map((edge) => ({
    source: String(edge.source),
    target: String(edge.target),
    conditional: edge.conditional === true,
    label: edge.data === undefined || edge.data === null || edge.data === "" ? null : String(edge.data),
  }));
  for (const edge of edges) {
    add(edge.source);
    add(edge.target);
  }
  return { ids, edges };
}

/** Measures text widths with the real styles: a hidden SVG carrying the drawing's classes. */
function measureTexts(items) {
  const probe = svgEl("svg", { class: "tg-svg", width: 0, height: 0, "aria-hidden": "true" });
  probe.style.cssText = "position:absolute;left:-10000px;top:0;visibility:hidden";
  const texts = items.map(({ text, className }) => {
    const el = svgEl("text", { class: className });
    el.textContent = text;
    probe.append(el);
    return el;
  });
  document.body.append(probe);
  const widths = texts.map((el, i) => {
    const measured = el.getComputedTextLength();
    // 0 when nothing renders (no layout yet): an estimate keeps the boxes usable
    return measured > 0 ? measured : items[i].text.length * 7.5;
  });
  probe.remove();
  return widths;
}

/** text, cut with an ellipsis to about room units when it measures measured (the full
 * text stays in the element's <title>). */
function fit(text, measured, room) {
  if (measured <= room || text.length < 2) return text;
  const keep = Math.max(1, Math.floor((text.length * room) / measured) - 1);
  return text.slice(0, keep) + "\u2026";
}

/** A smooth path through dagre's points (a uniform cubic B-spline, ends pinned). */
function curve(points) {
  if (points.length < 3) return "M" + points.map((p) => `${p.x},${p.y}`).join("L");
  const f = (n) => Math.round(n * 100) / 100;
  let d = `M${f(points[0].x)},${f(points[0].y)}`;
  const p = points;
  d += `L${f((5 * p[0].x + p[1].x) / 6)},${f((5 * p[0].y + p[1].y) / 6)}`;
  for (let i = 1; i < p.length - 1; i++) {
    const a = p[i - 1], b = p[i], c = p[i + 1];
    d += `C${f((2 * a.x + b.x) / 3)},${f((2 * a.y + b.y) / 3)} ` +
      `${f((a.x + 2 * b.x) / 3)},${f((a.y + 2 * b.y) / 3)} ` +
      `${f((a.x + 4 * b.x + c.x) / 6)},${f((a.y + 4 * b.y + c.y) / 6)}`;
  }
  const a = p[p.length - 2], b = p[p.length - 1];
  d += `C${f((2 * a.x + b.x) / 3)},${f((2 * a.y + b.y) / 3)} ` +
    `${f((a.x + 2 * b.x) / 3)},${f((a.y + 2 * b.y) / 3)} ${f(b.x)},${f(b.y)}`;
  return d;
}

/** A node's edge to itself: a loop out of its right side and back (dagre's own points for
 * self-edges do not make a closed curve). */
function selfLoop(box) {
  const x = box.x + box.width / 2;
  const f = (n) => Math.round(n * 100) / 100;
  return `M${f(x)},${f(box.y - 7)}C${f(x + 34)},${f(box.y - 26)} ${f(x + 34)},${f(box.y + 26)} ` +
    `${f(x + 2)},${f(box.y + 8)}`;
}

function layout(ids, edges, clusterIds) {
  const nodeKey = (id) => "n" + id;
  const clusterKey = (id) => "c" + id;
  const labels = ids.map((id) => {
    const terminal = TERMINALS[lastSegment(id)];
    return terminal
      ? { text: terminal, className: "tg-label tg-terminal-label" }
      : { text: lastSegment(id), className: "tg-label" };
  });
  const edgeLabels = edges.map((e) => ({ text: e.label ?? "", className: "tg-edge-label-text" }));
  const clusterLabels = clusterIds.map((id) => ({ text: lastSegment(id), className: "tg-cluster-label" }));
  const widths = measureTexts([...labels, ...edgeLabels, ...clusterLabels]);
  const labelW = widths.slice(0, ids.length);
  const edgeW = widths.slice(ids.length, ids.length + edges.length);
  const clusterW = widths.slice(ids.length + edges.length);

  const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
  const loops = edges.some((e) => e.source === e.target); // drawn out of the right side
  g.setGraph({ rankdir: "TB", nodesep: loops ? 48 : 28, ranksep: 44, edgesep: 14, marginx: loops ? 48 : 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const id of clusterIds) {
    g.setNode(clusterKey(id), {});
    const parents = clustersOf(id);
    if (parents.length) g.setParent(clusterKey(id), clusterKey(parents[parents.length - 1]));
  }
  ids.forEach((id, i) => {
    const terminal = TERMINALS[lastSegment(id)] !== undefined;
    const width = terminal
      ? Math.ceil(labelW[i]) + 2 * TERMINAL_PAD_X
      : Math.max(NODE_MIN_W, Math.ceil(labelW[i]) + 2 * NODE_PAD_X);
    g.setNode(nodeKey(id), { width, height: terminal ? TERMINAL_H : NODE_H });
    const parents = clustersOf(id);
    if (parents.length) g.setParent(nodeKey(id), clusterKey(parents[parents.length - 1]));
  });
  // Added last first: dagre's initial ordering then puts siblings left to right in the
  // JSON's order (worker_00 ... worker_29), which its crossing reduction keeps when it can.
  for (let i = edges.length - 1; i >= 0; i--) {
    const e = edges[i];
    const label = e.label === null ? {} : {
      width: Math.ceil(edgeW[i]) + 2 * EDGE_LABEL_PAD, height: 18, labelpos: "c",
    };
    g.setEdge(nodeKey(e.source), nodeKey(e.target), label, String(i));
  }
  dagre.layout(g);
  return {
    graph: g.graph(),
    node: (id) => g.node(nodeKey(id)),
    cluster: (id, i) => ({ ...g.node(clusterKey(id)), labelWidth: clusterW[i] }),
    edge: (e, i) => g.edge(nodeKey(e.source), nodeKey(e.target), String(i)),
    labels,
  };
}

/**
 * Draws graphJson into container (replacing its children) and returns the drawing:
 * { svg, nodes: Map<id, SVGGElement>, highlight(ids), mark(id, state), clear() }.
 * options.onNodeClick(id) is called when a node is clicked (or activated by keyboard).
 */
export function drawGraph(container, graphJson, options = {}) {
  if (!dagre) {
    throw loadError ?? new Error("graph.js: the layout library (vendor/dagre.min.js) is not loaded");
  }
  const { ids, edges } = readGraph(graphJson);
  const clusterIds = [...new Set(ids.flatMap(clustersOf))].sort(
    (a, b) => clustersOf(a).length - clustersOf(b).length,
  );
  const laid = layout(ids, edges, clusterIds);
  const uid = `tg${++drawings}`;
  // dagre leaves no room for a cluster's title: its box grows upwards by a title band, into
  // the rank gap above it (ranksep is wider than the band), and the view grows to match.
  const boxes = clusterIds.map((id, i) => {
    const box = laid.cluster(id, i);
    const x = box.x - box.width / 2;
    const y = box.y - box.height / 2 - CLUSTER_LABEL_H;
    return { id, x, y, width: box.width, height: box.height + CLUSTER_LABEL_H, labelWidth: box.labelWidth };
  });
  const top = Math.floor(Math.min(0, ...boxes.map((b) => b.y - 8)));
  const width = Math.max(1, Math.ceil(laid.graph.width) || 0);
  const height = Math.max(1, (Math.ceil(laid.graph.height) || 0) - top);

  const svg = svgEl("svg", {
    class: "tg-svg", viewBox: `0 ${top} ${width} ${height}`, width, height, role: "img",
    "aria-label": `Graph of ${ids.length} nodes`,
  });
  svg.style.maxWidth = `${width}px`;
  svg.style.minWidth = `${Math.ceil(width * MIN_SCALE)}px`;
  const defs = svgEl("defs");
  const marker = svgEl("marker", {
    id: `${uid}-arrow`, viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 9, markerHeight: 9, orient: "auto-start-reverse", markerUnits: "userSpaceOnUse",
  });
  marker.append(svgEl("path", { d: "M0,0L10,5L0,10z", class: "tg-arrow" }));
  defs.append(marker);
  svg.append(defs);

  // Clusters, outermost first, so inner boxes paint over outer ones.
  const clusterLayer = svgEl("g", { class: "tg-clusters" });
  const clusters = new Map();
  for (const box of boxes) {
    const group = svgEl("g", { class: "tg-cluster" });
    group.setAttribute("data-cluster", box.id);
    const tip = svgEl("title");
    tip.textContent = box.id;
    const rect = svgEl("rect", {
      x: box.x, y: box.y, width: box.width, height: box.height, rx: 10, class: "tg-cluster-box",
    });
    const label = svgEl("text", {
      x: box.x + CLUSTER_PAD, y: box.y + CLUSTER_LABEL_H / 2 + 3,
      class: "tg-cluster-label", "dominant-baseline": "central",
    });
    label.textContent = fit(lastSegment(box.id), box.labelWidth, box.width - 2 * CLUSTER_PAD);
    group.append(tip, rect, label);
    clusterLayer.append(group);
    clusters.set(box.id, group);
  }

  const edgeLayer = svgEl("g", { class: "tg-edges" });
  const labelLayer = svgEl("g", { class: "tg-edge-labels" });
  edges.forEach((e, i) => {
    const geo = laid.edge(e, i);
    const path = svgEl("path", {
      class: e.conditional ? "tg-edge tg-conditional" : "tg-edge",
      d: e.source === e.target ? selfLoop(laid.node(e.source)) : curve(geo.points),
      "marker-end": `url(#${uid}-arrow)`,
    });
    path.setAttribute("data-source", e.source);
    path.setAttribute("data-target", e.target);
    edgeLayer.append(path);
    if (e.label !== null) {
      const w = geo.width, h = geo.height;
      const group = svgEl("g", {
        class: "tg-edge-label", transform: `translate(${geo.x - w / 2},${geo.y - h / 2})`,
      });
      group.append(svgEl("rect", { width: w, height: h, rx: 4 }));
      const text = svgEl("text", {
        x: w / 2, y: h / 2, class: "tg-edge-label-text",
        "text-anchor": "middle", "dominant-baseline": "central",
      });
      text.textContent = e.label;
      group.append(text);
      labelLayer.append(group);
    }
  });

  const nodeLayer = svgEl("g", { class: "tg-nodes" });
  const nodes = new Map();
  ids.forEach((id, i) => {
    const box = laid.node(id);
    const terminal = TERMINALS[lastSegment(id)] !== undefined;
    const group = svgEl("g", {
      class: terminal ? "tg-node tg-terminal" : "tg-node",
      transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})`,
    });
    group.setAttribute("data-node", id);
    const tip = svgEl("title");
    tip.textContent = id;
    const rect = svgEl("rect", {
      width: box.width, height: box.height, rx: terminal ? box.height / 2 : 6, class: "tg-box",
    });
    const text = svgEl("text", {
      x: box.width / 2, y: box.height / 2, class: laid.labels[i].className,
      "text-anchor": "middle", "dominant-baseline": "central",
    });
    text.textContent = laid.labels[i].text;
    group.append(tip, rect, text);
    if (options.onNodeClick) {
      group.classList.add("tg-clickable");
      group.setAttribute("tabindex", "0");
      group.setAttribute("role", "button");
      group.setAttribute("aria-label", id);
      group.addEventListener("click", () => options.onNodeClick(id));
      group.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          options.onNodeClick(id);
        }
      });
    }
    nodeLayer.append(group);
    nodes.set(id, group);
  });

  svg.append(clusterLayer, edgeLayer, nodeLayer, labelLayer);
  const scroller = document.createElement("div");
  scroller.className = "tg-graph";
  scroller.append(svg);
  container.replaceChildren(scroller);
  // A graph wider than its container opens on its entry rather than on its left edge.
  if (ids.length && scroller.scrollWidth > scroller.clientWidth) {
    const entry = laid.node(ids.includes("__start__") ? "__start__" : ids[0]);
    const scale = svg.getBoundingClientRect().width / width;
    scroller.scrollLeft = Math.max(0, entry.x * scale - scroller.clientWidth / 2);
  }

  const elementsOf = (id) => {
    if (nodes.has(id)) return [nodes.get(id)];
    if (clusters.has(id)) return [clusters.get(id)];
    return [];
  };
  const all = () => [...nodes.values(), ...clusters.values()];

  return {
    svg,
    nodes,
    /** Marks ids as the running nodes (and the clusters they sit in); unknown ids are ignored. */
    highlight(running) {
      for (const el of all()) el.classList.remove("tg-running");
      for (const raw of running ?? []) {
        const id = String(raw);
        const found = elementsOf(id);
        if (!found.length) continue;
        for (const el of found) el.classList.add("tg-running");
        for (const parent of clustersOf(id)) clusters.get(parent)?.classList.add("tg-running");
      }
    },
    /** Sets a node's (or cluster's) outcome: 'done' | 'error' | 'interrupted', or null for none. */
    mark(id, state) {
      if (state !== null && state !== undefined && !STATES.includes(state)) {
        throw new TypeError(`mark(): state must be one of ${STATES.join(", ")} or null, not ${state}`);
      }
      for (const el of elementsOf(String(id))) {
        for (const s of STATES) el.classList.remove(`tg-${s}`);
        if (state) el.classList.add(`tg-${state}`);
      }
    },
    /** No running node and no marks. */
    clear() {
      for (const el of all()) el.classList.remove("tg-running", ...STATES.map((s) => `tg-${s}`));
    },
  };
}
